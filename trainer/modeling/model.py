"""The play classifier: VGG16 frame features -> a head over the frames -> softmax.

    clips uint8 [B, T, H, W, 3]          (T may be None: any number of frames)
      -> vgg_preprocess                  cast to the compute dtype, RGB->BGR, minus ImageNet mean
      -> TimeDistributed(VGG16 cut)      per-frame conv features, global average pooled [B, T, C]
                                         (or cached features of the same base: build_head_model)
      -> LayerNormalization (optional)   per-frame feature normalization             [B, T, C]
      -> head="rnn": LSTM | GRU (optionally bidirectional)                         [B, U]
         head="mean_pool": average over frames, Dense(U, relu)   (order-agnostic)  [B, U]
         head="single_frame": the middle frame, Dense(U, relu)   (order-agnostic)  [B, U]
         head="temporal_conv": dilated Conv1D layers, mean over frames            [B, U]
         head="transformer": Dense(U) + learned positions, encoder layers, mean   [B, U]
                                         (the heads: `trainer.modeling.heads`)
      -> Dropout
      -> Dense + softmax (float32)       probabilities over dataset.json's labels  [B, K]

Every layer is a stock Keras layer: a saved model loads with `safe_mode=True` and
no import of this package.
"""

from __future__ import annotations

from typing import Optional, Tuple

import keras
from keras import layers

from backbone.vgg16 import VGG16_LAYERS, build_base, check_layer, vgg_preprocess
from schemas.errors import UsageError
from schemas.features_card import DEFAULT_CUT_LAYER, DEFAULT_WEIGHTS
from trainer.modeling import heads
from trainer.modeling.config import HEADS
from trainer.modeling.heads import MiddleFrame  # noqa: F401  (registered: old models load)

FEATURES_NAME = "frame_features"
PREPROCESS_NAME = "vgg_preprocess"  # its fixed weights are the base's, not the head's
MODEL_NAME = "playclips"  # the classifier on clips
HEAD_MODEL_NAME = "playclips_head"  # the head on cached features


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


def split_model(model: keras.Model) -> Tuple[keras.Model, keras.Model]:
    """(per-frame model, head) of a model from `build_model`, sharing its layers and weights.

    The per-frame model takes uint8 frames [N, H, W, 3] through the model's own
    preprocessing and base (the `frame_features` layer's, so a fine-tuned base
    too) to features [N, C]; the head takes stacked features [B, T, C] to the
    probabilities. head(frames(x) per frame) equals model(x): the timeline runs
    the base once per frame and the head once per window (`trainer.timeline`).
    """
    names = [layer.name for layer in model.layers]
    if FEATURES_NAME not in names:
        raise UsageError(f"the model has no {FEATURES_NAME!r} layer: it was not built by "
                         f"trainer.modeling.model.build_model")
    features = model.get_layer(FEATURES_NAME)
    height, width, channels = model.input_shape[-3:]
    frames = keras.Input(shape=(height, width, channels), dtype=model.input.dtype, name="frames")
    x = frames
    for layer in model.layers[1:names.index(FEATURES_NAME)]:  # the preprocessing before the base
        x = layer(x)
    frame_model = keras.Model(frames, features.layer(x), name="playclips_frames")
    head = keras.Model(features.output, model.output, name="playclips_head")
    return frame_model, head


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


def build_head(features, num_classes: int, *, head: str = "rnn", rnn: str = "lstm",
               rnn_units: int = 256, bidirectional: bool = False, dropout: float = 0.3,
               feature_norm: bool = True, head_layers: int = 2, head_heads: int = 4,
               head_kernel_size: int = 3, max_frames: Optional[int] = None):
    """The classifier's head on per-frame features [B, T, C] -> probabilities [B, num_classes].

    The one definition of the head, used on top of the base (`build_model`) and on
    cached features (`build_head_model`); its layers have the same names in both,
    so weights move between them by name (`copy_head_weights`). `head` picks the
    layers that see the frames (`heads.HEAD_BUILDERS`), each giving `rnn_units`
    values: the recurrent layer (`rnn`), the two order-agnostic baselines, which
    measure what the sequence models add: the frames' mean (`mean_pool`) or the
    middle frame alone (`single_frame`), each followed by a Dense layer; or
    `head_layers` dilated convolutions of `head_kernel_size` frames
    (`temporal_conv`) or transformer encoder layers of `head_heads` attention
    heads (`transformer`). The transformer's learned positions need `max_frames`,
    the most frames a clip has (default: the features' T when it is known).
    """
    if num_classes < 2:
        raise UsageError(f"need at least 2 labels, got {num_classes}")
    if head not in HEADS:
        raise UsageError(f"unknown --head={head!r}: use one of {', '.join(HEADS)}")
    if rnn not in ("lstm", "gru"):
        raise UsageError(f"unknown --rnn={rnn!r}: use lstm or gru")
    x = features
    if feature_norm:
        x = layers.LayerNormalization(name="feature_norm")(x)
    if max_frames is None and features.shape[1] is not None:
        max_frames = int(features.shape[1])
    x = heads.HEAD_BUILDERS[head](x, units=rnn_units, rnn=rnn, bidirectional=bidirectional,
                                  head_layers=head_layers, head_heads=head_heads,
                                  head_kernel_size=head_kernel_size, max_frames=max_frames)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def build_head_model(num_classes: int, feature_dim: int, **head) -> keras.Model:
    """Cached frame features float32 [B, T, feature_dim] -> probabilities (see `build_head`)."""
    features = keras.Input(shape=(None, int(feature_dim)), dtype="float32", name="features")
    return keras.Model(features, build_head(features, num_classes, **head), name=HEAD_MODEL_NAME)


def copy_head_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies the head's weights by layer name (head model <-> full model)."""
    names = {layer.name for layer in source.layers if layer.weights}
    for name in names:
        if name in (FEATURES_NAME, PREPROCESS_NAME):
            continue
        target.get_layer(name).set_weights(source.get_layer(name).get_weights())


def build_model(num_classes: int, *, image_size: Tuple[int, int], num_frames: Optional[int] = None,
                cut_layer: str = DEFAULT_CUT_LAYER, weights: str = DEFAULT_WEIGHTS,
                trainable_from: str = "none", base: Optional[keras.Model] = None,
                **head) -> keras.Model:
    """uint8 clips [B, T, H, W, 3] -> class probabilities [B, num_classes] (float32).

    Args:
      num_classes: size of the label vocabulary (dataset.json).
      image_size: (height, width) of the frames.
      num_frames: T, or None to take any number of frames (the transformer head then
        needs max_frames in **head).
      cut_layer: the last VGG16 layer kept (see `vgg16_layer_names`).
      weights: "imagenet", "none" or the path of a VGG16 notop weights file.
      trainable_from: the first trainable base layer, "none" (frozen base) or "all".
      base: a ready base ([H, W, 3] -> [C], e.g. the embed job's base.keras) instead of
        building one from `cut_layer` and `weights`.
      **head: head, rnn, rnn_units, bidirectional, dropout, feature_norm, head_layers,
        head_heads, head_kernel_size, max_frames (see `build_head`;
        feature_norm: pooled conv features carry a large constant offset, normalizing
        lets the RNN see how they change).
    """
    height, width = (int(v) for v in image_size)
    if base is None:
        base = build_base(cut_layer, weights, (height, width))
    set_trainable_from(base, trainable_from)
    clips = keras.Input(shape=(num_frames, height, width, 3), dtype="uint8", name="clips")
    x = vgg_preprocess(clips, name=PREPROCESS_NAME)
    x = layers.TimeDistributed(base, name=FEATURES_NAME)(x)
    return keras.Model(clips, build_head(x, num_classes, **head), name=MODEL_NAME)
