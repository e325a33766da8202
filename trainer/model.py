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

import os
from typing import List, Optional, Sequence, Tuple

import keras
from keras import layers, ops

from schemas.errors import UsageError

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
# keras.applications.vgg16.preprocess_input ("caffe" mode) constants, BGR order.
_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
BASE_NAME = "vgg16_base"
FEATURES_NAME = "frame_features"


class WeightsUnavailableError(UsageError):
    """The requested VGG16 weights cannot be loaded."""


@keras.saving.register_keras_serializable(package="playclips")
class VGGPreprocess(layers.Layer):
    """`keras.applications.vgg16.preprocess_input` on uint8 RGB frames, inside the model.

    Any input rank with channels last; computes in the layer's compute dtype so
    that mixed precision policies apply.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        x = ops.flip(x, axis=-1)  # RGB -> BGR
        mean = ops.convert_to_tensor(_IMAGENET_MEAN_BGR, dtype=self.compute_dtype)
        return x - mean

    def compute_output_shape(self, input_shape):
        return input_shape


# keras.applications.VGG16(include_top=False) layers after the input, in order.
VGG16_LAYERS = (
    "block1_conv1", "block1_conv2", "block1_pool",
    "block2_conv1", "block2_conv2", "block2_pool",
) + tuple(f"block{b}_{n}" for b in (3, 4, 5) for n in ("conv1", "conv2", "conv3", "pool"))


def vgg16_layer_names() -> List[str]:
    """The VGG16 (include_top=False) layer names a cut may end at, input to output."""
    return list(VGG16_LAYERS)


def default_fine_tune_from(cut_layer: str) -> str:
    """The first conv of the last VGG16 block kept by a cut at `cut_layer`."""
    return cut_layer.split("_")[0] + "_conv1"


def check_cut(cut_layer: str, fine_tune_from: Optional[str] = None) -> None:
    """UsageError unless `cut_layer` is a VGG16 layer and `fine_tune_from` one the cut keeps."""
    _check_layer(cut_layer, "--cut_layer", VGG16_LAYERS)
    kept = VGG16_LAYERS[:VGG16_LAYERS.index(cut_layer) + 1]
    if fine_tune_from is not None and fine_tune_from not in kept:
        raise UsageError(f"unknown --fine_tune_from={fine_tune_from!r}: use a layer kept by the "
                         f"cut: {', '.join(kept)}")


def _check_layer(name: str, flag: str, valid: Sequence[str]) -> None:
    if name not in valid:
        raise UsageError(f"unknown {flag}={name!r}: use one of {', '.join(valid)}")


def _load_vgg16(weights: str, image_size: Tuple[int, int]) -> keras.Model:
    """The full VGG16 notop with `weights` = imagenet | none | PATH."""
    shape = (int(image_size[0]), int(image_size[1]), 3)
    key = (weights or "none").strip()
    if key.lower() == "none":
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    if key.lower() == "imagenet":
        try:
            return keras.applications.VGG16(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as err:  # pylint: disable=broad-except
            # keras.utils.get_file turns a failed download into a plain Exception; other
            # error types are bugs and keep their traceback.
            if type(err) is not Exception and not isinstance(err, OSError):
                raise
            cache = os.path.join(os.path.expanduser("~"), ".keras", "models")
            raise WeightsUnavailableError(
                f"cannot get the ImageNet VGG16 weights ({str(err).splitlines()[0][:160]}): copy "
                f"{VGG16_NOTOP_FILE} into {cache}/ (the Keras cache), or pass --weights=PATH to a "
                f"VGG16 notop weights file, or --weights=none to train from scratch") from None
    if not os.path.exists(key) and "://" not in key:
        raise WeightsUnavailableError(
            f"--weights={key!r}: no such file. Give a VGG16 notop weights file (.h5 or .weights.h5), "
            f"'imagenet' or 'none'")
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    try:
        base.load_weights(key)
    except (ValueError, OSError, KeyError) as err:  # wrong layers or shapes, not an HDF5 file
        raise WeightsUnavailableError(
            f"--weights={key!r} is not a VGG16 notop weights file ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''})") from None
    return base


def build_base(cut_layer: str = "block5_pool", weights: str = "imagenet",
               image_size: Tuple[int, int] = (224, 224)) -> keras.Model:
    """VGG16 notop cut after `cut_layer`, then global average pooling: [H, W, 3] -> [C]."""
    _check_layer(cut_layer, "--cut_layer", vgg16_layer_names())
    full = _load_vgg16(weights, image_size)  # weights load into the full base, then the cut
    features = layers.GlobalAveragePooling2D(name="features_pool")(full.get_layer(cut_layer).output)
    return keras.Model(full.input, features, name=BASE_NAME)


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
        _check_layer(trainable_from, "--trainable_from", names + ["none", "all"])
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
