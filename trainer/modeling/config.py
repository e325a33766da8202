"""The model's settings (ModelConfig) and their choices (HEADS, RNN_TYPES).

No TensorFlow or Keras import: the flags and --help stay quick. The head
registry of `trainer.modeling.model` holds one builder per name of HEADS.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from trainer.flags import flag

HEADS = ("rnn", "mean_pool", "single_frame", "temporal_conv", "transformer")
RNN_TYPES = ("lstm", "gru")


@dataclasses.dataclass
class ModelConfig:
    """The VGG16 cut and its weights, what is trainable, and the head over the frames."""

    cut_layer: Optional[str] = flag(None, "last VGG16 layer kept, e.g. block4_pool (default: the "
                                    "features card's, else block5_pool)", group="model", parse=str)
    weights: Optional[str] = flag(None, "imagenet | none | PATH of VGG16 notop weights (default: "
                                  "the features card's, else imagenet)", group="model", parse=str)
    trainable_from: str = flag("none", "first trainable VGG16 layer | none (frozen base) | all",
                               group="model")
    head: str = flag("rnn", "what sees the frames: the recurrent layer (rnn), an order-agnostic "
                     "baseline: the frames' mean (mean_pool) or the middle frame (single_frame), "
                     "each then a Dense layer of --rnn_units, dilated 1-D convolutions over the "
                     "frames (temporal_conv) or a transformer encoder with learned frame positions "
                     "(transformer), each then the mean over the frames", group="model",
                     choices=HEADS)
    rnn: str = flag("lstm", "recurrent layer (--head=rnn)", group="model", choices=RNN_TYPES)
    rnn_units: int = flag(256, "units of the recurrent layer (the width of the other heads: their "
                          "Dense layer, convolutions, encoder)", group="model", minimum=1)
    bidirectional: bool = flag(False, "a bidirectional recurrent layer", group="model")
    dropout: float = flag(0.3, "dropout before the softmax, in [0, 1)", group="model", minimum=0)
    feature_norm: bool = flag(True, "layer-normalize the pooled frame features before the RNN",
                              group="model")
    head_layers: int = flag(2, "layers of --head=temporal_conv (convolutions of dilation 1, 2, 4, "
                            "...) and of --head=transformer (encoder layers)", group="model",
                            minimum=1)
    head_heads: int = flag(4, "attention heads of each encoder layer (--head=transformer)",
                           group="model", minimum=1)
    head_kernel_size: int = flag(3, "frames each convolution reads (--head=temporal_conv)",
                                 group="model", minimum=1)

    def head_options(self) -> Dict[str, Any]:
        """The keyword arguments of `model.build_head` (and build_model, build_head_model)."""
        return dict(head=self.head, rnn=self.rnn, rnn_units=self.rnn_units,
                    bidirectional=self.bidirectional, dropout=self.dropout,
                    feature_norm=self.feature_norm, head_layers=self.head_layers,
                    head_heads=self.head_heads, head_kernel_size=self.head_kernel_size)
