"""The frozen frame feature extractor: VGG16 cut at a named layer, global-average-pooled.

Shared by the trainer (inside the classifier, `trainer.modeling.model`) and the embed job
(`beam_jobs/embed_records.py`, which runs it once per stored frame), so both
compute the same features from the same weights:

    frames uint8 [..., H, W, 3] -> vgg_preprocess -> VGG16 layers up to the cut
      -> GlobalAveragePooling2D -> features [..., C]

`vgg_preprocess` is built from stock Keras layers, so that a saved model loads
with `safe_mode=True` wherever Keras is installed, without this package.

Weights: "imagenet" (the Keras cache, ~/.keras/models, offline), "none" (random
initialization) or the path of a VGG16 notop weights file.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import List, Sequence, Tuple

import keras
import numpy as np
from keras import layers, ops

from schemas import features_card
from schemas.errors import UsageError

# keras.applications.vgg16.preprocess_input ("caffe" mode) constants, BGR order.
_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
BASE_NAME = "vgg16_base"

logger = logging.getLogger(__name__)


class WeightsUnavailableError(UsageError):
    """The requested VGG16 weights cannot be loaded."""


def vgg_preprocess(frames, name: str = "vgg_preprocess"):
    """`keras.applications.vgg16.preprocess_input` ("caffe") on uint8 RGB frames, as stock layers.

    Two layers, exact in any compute dtype: `Rescaling(1)` casts the frames to the
    compute dtype (x * 1 + 0 is x), then a frozen `Dense(3)` on the channel axis -
    a 1x1 convolution that works at any input rank - swaps RGB to BGR with a
    permutation kernel (each output is one input times 1 plus zeros) and subtracts
    the ImageNet mean with its bias. Applied to a symbolic tensor [..., H, W, 3],
    it returns the preprocessed tensor; `VGGPreprocess` computes the same values.
    """
    x = layers.Rescaling(1.0, name=f"{name}_cast")(frames)
    swap = layers.Dense(3, name=name, trainable=False,
                        kernel_initializer=keras.initializers.Constant(np.eye(3)[::-1].tolist()),
                        bias_initializer=keras.initializers.Constant(
                            [-mean for mean in _IMAGENET_MEAN_BGR]))
    return swap(x)


@keras.saving.register_keras_serializable(package="playclips")
class VGGPreprocess(layers.Layer):
    """`keras.applications.vgg16.preprocess_input` on uint8 RGB frames, as one custom layer.

    Kept registered so that models saved with it still load (with this package
    imported), and as a weightless callable for code that preprocesses frames
    outside a model. New models use `vgg_preprocess`, which gives the same values.
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


def check_layer(name: str, flag: str, valid: Sequence[str]) -> None:
    if name not in valid:
        raise UsageError(f"unknown {flag}={name!r}: use one of {', '.join(valid)}")


def keras_cache_dir() -> str:
    """The Keras cache that `weights="imagenet"` reads ($KERAS_HOME/models, by default ~/.keras/models)."""
    return os.path.dirname(features_card.imagenet_weights_path())


def imagenet_unavailable(reason: str) -> WeightsUnavailableError:
    """The one-line error for missing ImageNet weights: why, and where the file goes."""
    return WeightsUnavailableError(
        f"cannot get the ImageNet VGG16 weights ({reason}): copy "
        f"{features_card.IMAGENET_WEIGHTS_FILE} into {keras_cache_dir()}/ (the Keras cache), or pass "
        f"--weights=PATH to a VGG16 notop weights file, or --weights=none to train from scratch")


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
            raise imagenet_unavailable(str(err).splitlines()[0][:160]) from None
    if not os.path.exists(key) and "://" not in key:
        raise WeightsUnavailableError(
            f"--weights={key!r}: no such file. Give a VGG16 notop weights file (.h5 or .weights.h5), "
            f"'imagenet' or 'none'")
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    try:
        # Keras warns (and keeps fresh weights) for parts of the model the file lacks.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base.load_weights(key)
        skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
        if skipped:
            raise ValueError(skipped[0])
    except (ValueError, OSError, KeyError) as err:  # wrong layers or shapes, not an HDF5 file
        raise WeightsUnavailableError(
            f"--weights={key!r} is not a VGG16 notop weights file ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}): give the weights of "
            f"keras.applications.VGG16(include_top=False), 'imagenet' or 'none'") from None
    return base


def build_base(cut_layer: str = features_card.DEFAULT_CUT_LAYER,
               weights: str = features_card.DEFAULT_WEIGHTS,
               image_size: Tuple[int, int] = (224, 224)) -> keras.Model:
    """VGG16 notop cut after `cut_layer`, then global average pooling: [H, W, 3] -> [C]."""
    check_layer(cut_layer, "--cut_layer", vgg16_layer_names())
    logger.info("VGG16 base cut at %s, weights %s, %dx%d frames", cut_layer, weights or "none",
                int(image_size[0]), int(image_size[1]))
    full = _load_vgg16(weights, image_size)  # weights load into the full base, then the cut
    features = layers.GlobalAveragePooling2D(name="features_pool")(full.get_layer(cut_layer).output)
    return keras.Model(full.input, features, name=BASE_NAME)


def set_compute_dtype(base: keras.Model, compute_dtype: str) -> keras.Model:
    """Makes `base`'s layers compute in `compute_dtype` (float32 | bfloat16 | float16), in place.

    The Keras mixed precision policy of that dtype on every layer but the input:
    the weights stay float32 (the saved base is unchanged), each layer casts its
    inputs and weights to the compute dtype, and the output is in that dtype.
    """
    from backbone import precision  # pylint: disable=g-import-not-at-top
    policy = keras.DTypePolicy(precision.POLICIES[compute_dtype])
    for layer in base.layers:
        if not isinstance(layer, layers.InputLayer):
            layer.dtype_policy = policy
    return base


def conv_flops(base: keras.Model) -> int:
    """Multiply-adds x 2 of the base's convolutions on one frame (the pools and the rest are ~0.1%)."""
    total = 0
    for layer in base.layers:
        if isinstance(layer, layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kh, kw, channels_in, _ = layer.kernel.shape
            total += 2 * int(height) * int(width) * int(kh) * int(kw) * int(channels_in) * int(
                channels_out)
    return total
