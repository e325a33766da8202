"""The play classifier: VGG16 frame features -> recurrent layer -> softmax.

    clips uint8 [B, T, H, W, 3]          (T may be None: any number of frames)
      -> VGGPreprocess                   cast to the compute dtype, RGB->BGR, minus ImageNet mean
      -> TimeDistributed(VGG16 cut)      per-frame conv features, global average pooled [B, T, C]
      -> LayerNormalization (optional)   per-frame feature normalization             [B, T, C]
      -> LSTM | GRU (optionally bidirectional)                                      [B, U]
      -> Dropout
      -> Dense + softmax (float32)       probabilities over dataset.json's labels  [B, K]
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras
from keras import layers

from media.frame_features import VGG16_LAYERS, VGGPreprocess, build_base, check_layer
from schemas.errors import UsageError

FEATURES_NAME = "frame_features"


def default_fine_tune_from(cut_layer: str) -> str:
    """The first conv of the last VGG16 block kept by a cut at `cut_layer`."""
    return cut_layer.split("_")[0] + "_conv1"


def check_cut(cut_layer: str, fine_tune_from: Optional[str] = None) -> None:
    """UsageError unless `cut_layer` is a VGG16 layer and `fine_tune_from` one the cut keeps."""
    check_layer(cut_layer, "--cut_layer", VGG16_LAYERS)
    kept = VGG16_LAYERS[:VGG16_LAYERS.index(cut_layer) + 1]
    if fine_tune_from is not None and fine_tune_from not in kept:
        raise UsageError(f"unknown --fine_tune_from={fine_tune_from!r}: use a layer kept by the "
                         f"cut: {', '.join(kept)}")


def base_of(model: keras.Model) -> keras.Model:
    """The VGG16 base inside a model from `build_model`."""
    return model.get_layer(FEATURES_NAME).layer


def set_trainable_from(base: keras.Model, trainable_from: str) -> None:
    """Freezes the base's layers below `trainable_from` (none: all frozen; all: none frozen).

    The flag is set on the wrapped base's own layers (TimeDistributed stays
    trainable), so `model.trainable_weights` follows. Recompile afterwards.
    """
    names = [layer.name for layer in base.layers if layer.name.startswith("block")]
    if trainable_from not in ("none", "all"):
        check_layer(trainable_from, "--trainable_from", names + ["none", "all"])
    base.trainable = True
    start = {"none": len(names), "all": 0}.get(trainable_from, None)
    if start is None:
        start = names.index(trainable_from)
    frozen = set(names[:start])
    for layer in base.layers:
        layer.trainable = layer.name not in frozen


def build_model(num_classes: int, *, image_size: Tuple[int, int], num_frames: Optional[int] = None,
                cut_layer: str = "block5_pool", weights: str = "imagenet",
                trainable_from: str = "none", rnn: str = "lstm", rnn_units: int = 256,
                bidirectional: bool = False, dropout: float = 0.3,
                feature_norm: bool = True) -> keras.Model:
    """uint8 clips [B, T, H, W, 3] -> class probabilities [B, num_classes] (float32).

    Args:
      num_classes: size of the label vocabulary (dataset.json).
      image_size: (height, width) of the frames.
      num_frames: T, or None to take any number of frames.
      cut_layer: the last VGG16 layer kept (see `vgg16_layer_names`).
      weights: "imagenet", "none" or the path of a VGG16 notop weights file.
      trainable_from: the first trainable base layer, "none" (frozen base) or "all".
      rnn, rnn_units, bidirectional, dropout: the recurrent head.
      feature_norm: layer-normalize each frame's pooled features before the RNN (pooled conv
        features carry a large constant offset; normalizing lets the RNN see how they change).
    """
    if num_classes < 2:
        raise UsageError(f"need at least 2 labels, got {num_classes}")
    if rnn not in ("lstm", "gru"):
        raise UsageError(f"unknown --rnn={rnn!r}: use lstm or gru")
    height, width = (int(v) for v in image_size)
    base = build_base(cut_layer, weights, (height, width))
    set_trainable_from(base, trainable_from)

    clips = keras.Input(shape=(num_frames, height, width, 3), dtype="uint8", name="clips")
    x = VGGPreprocess(name="vgg_preprocess")(clips)
    x = layers.TimeDistributed(base, name=FEATURES_NAME)(x)
    if feature_norm:
        x = layers.LayerNormalization(name="feature_norm")(x)
    cell = layers.LSTM if rnn == "lstm" else layers.GRU
    recurrent = cell(rnn_units, name=rnn)
    if bidirectional:
        recurrent = layers.Bidirectional(recurrent, name=f"bi{rnn}")
    x = recurrent(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    probs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(clips, probs, name="playclips")
