"""The heads over a play's frames: name -> builder of [B, T, C] features -> [B, U].

Each builder takes the per-frame features and the head settings and returns the
play's summary that the classifier's Dense layers read (`model.build_head`):

    rnn           LSTM | GRU (optionally bidirectional) over the frames, in order
    mean_pool     the frames' mean, then Dense(units, relu)        (order-agnostic)
    single_frame  the middle frame, then Dense(units, relu)        (order-agnostic)

The two baselines measure what the sequence model adds. All heads are stock Keras
layers, so that a saved classifier loads with `safe_mode=True` without this package.
"""

from __future__ import annotations

from typing import Callable, Dict

import keras
from keras import layers, ops


def rnn(features, *, units: int, rnn: str = "lstm", bidirectional: bool = False):
    """The recurrent layer over the frames in order: its last state [B, units]."""
    cell = layers.LSTM if rnn == "lstm" else layers.GRU
    recurrent = cell(units, name=rnn)
    if bidirectional:
        recurrent = layers.Bidirectional(recurrent, name=f"bi{rnn}")
    return recurrent(features)


def mean_pool(features, *, units: int, **_):
    """The frames' mean, then Dense(units, relu)."""
    pooled = layers.GlobalAveragePooling1D(name="mean_pool")(features)
    return layers.Dense(units, activation="relu", name="hidden")(pooled)


def middle_frame(features):
    """[B, T, C] -> [B, C]: frame T // 2, for any T (T may be unknown when the model is built).

    Stock layers have no dynamic index, and a crop needs T when the model is built,
    while the classifier takes any number of frames. A nearest-neighbour resize of
    the frame axis to one row is an exact pick: with half-pixel centres (Keras'
    `Resizing`, as tf.image.resize) output row 0 reads input row floor(0.5 * T) =
    T // 2, and the feature axis keeps its size, so it is copied unchanged.
    """
    channels = int(features.shape[-1])
    rows = layers.Reshape((-1, channels, 1), name="middle_frame_rows")(features)
    picked = layers.Resizing(1, channels, interpolation="nearest", name="middle_frame")(rows)
    return layers.Reshape((channels,), name="middle_frame_features")(picked)


def single_frame(features, *, units: int, **_):
    """The middle frame alone (`middle_frame`), then Dense(units, relu)."""
    return layers.Dense(units, activation="relu", name="hidden")(middle_frame(features))


HeadBuilder = Callable[..., keras.KerasTensor]

# The registry: --head's choices, in trainer.modeling.config.HEADS order.
HEAD_BUILDERS: Dict[str, HeadBuilder] = {
    "rnn": rnn,
    "mean_pool": mean_pool,
    "single_frame": single_frame,
}


@keras.saving.register_keras_serializable(package="playclips")
class MiddleFrame(layers.Layer):
    """[B, T, C] -> [B, C]: frame T // 2, as one custom layer.

    Kept registered so that models saved with it still load (with this package
    imported); new models use `middle_frame`, which gives the same values.
    """

    def call(self, inputs):
        return ops.take(inputs, ops.shape(inputs)[1] // 2, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
