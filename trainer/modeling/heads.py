"""The heads over a play's frames: name -> builder of [B, T, C] features -> [B, U].

Each builder takes the per-frame features and the head settings and returns the
play's summary that the classifier's Dense layers read (`model.build_head`):

    rnn            LSTM | GRU (optionally bidirectional) over the frames, in order
    mean_pool      the frames' mean, then Dense(units, relu)        (order-agnostic)
    single_frame   the middle frame, then Dense(units, relu)        (order-agnostic)
    temporal_conv  dilated Conv1D layers (dilation 1, 2, 4, ...), then the frames' mean
    transformer    Dense(units) + learned frame positions, encoder layers
                   (MultiHeadAttention, feed-forward), then the frames' mean

The two baselines measure what the sequence models add. All heads are stock Keras
layers, so that a saved classifier loads with `safe_mode=True` without this package
(a custom layer would need this package imported, a Lambda layer is refused by
safe_mode): the clients that load model.keras (predict, the timeline, another
project) need Keras alone.

The classifier takes any number of frames T (its input shape is [B, None, ...]).
The heads work for any T, except that the transformer's learned positions are a
table of `max_frames` rows, fixed when the model is built (the run's frame count);
see `frame_positions` for what a longer clip gets.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import keras
from keras import layers, ops

from schemas.errors import UsageError

# The feed-forward layer of a transformer encoder layer is this many times `units` wide.
FEED_FORWARD_FACTOR = 2


def rnn(features, *, units: int, rnn: str = "lstm", bidirectional: bool = False, **_):
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


def temporal_conv(features: keras.KerasTensor, *, units: int, head_layers: int = 2,
                  head_kernel_size: int = 3, **_) -> keras.KerasTensor:
    """`head_layers` dilated convolutions over the frames, then their mean: [B, units].

    Layer i (from 0) is Conv1D(units, head_kernel_size, dilation 2**i, relu) with
    'same' padding: it reads frames on both sides of each frame (a clip is
    classified whole, nothing streams) and keeps T, for any T; the stack sees
    1 + (kernel_size - 1) * (2**layers - 1) frames around each frame. A layer adds
    its input back (a residual) where the widths agree: every layer but the first,
    and the first too when the features are `units` wide.
    """
    x = features
    for i in range(head_layers):
        y = layers.Conv1D(units, head_kernel_size, dilation_rate=2 ** i, padding="same",
                          activation="relu", name=f"temporal_conv{i + 1}")(x)
        if int(x.shape[-1]) == units:
            y = layers.Add(name=f"temporal_conv{i + 1}_residual")([x, y])
        x = y
    return layers.GlobalAveragePooling1D(name="temporal_pool")(x)


def frame_positions(features: keras.KerasTensor, max_frames: int) -> keras.KerasTensor:
    """[B, T, C] -> float32 [B, T]: each frame's index t, as min(t, max_frames - 1) + 0.5.

    Stock layers have no `range(T)` for a T known only when the model runs, so it
    is counted: a Dense layer with a zero kernel and a bias of one gives a 1 per
    frame, and a causal Conv1D with a kernel of `max_frames` ones sums the ones of
    frames t - max_frames + 1 .. t, that is min(t + 1, max_frames) (the causal
    padding is zeros); its bias of -0.5 makes it min(t, max_frames - 1) + 0.5, which
    the Embedding's cast to int truncates to the index (the half keeps the pick
    right even for a sum a rounding error put a hair under an integer). The three
    layers are float32 (exact counts under mixed precision too: bfloat16 holds no
    299.5; an Embedding does not autocast its input) and frozen, and their weights
    are their initializers', so a model rebuilt from its config counts the same.
    Frames past `max_frames` take the last position.
    """
    ones = layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones", trainable=False,
                        dtype="float32", name="frame_ones")(features)
    counts = layers.Conv1D(1, max_frames, padding="causal", kernel_initializer="ones",
                           bias_initializer=keras.initializers.Constant(-0.5), trainable=False,
                           dtype="float32", name="frame_index")(ones)
    return layers.Reshape((-1,), dtype="float32", name="frame_positions")(counts)


def transformer(features: keras.KerasTensor, *, units: int, head_layers: int = 2,
                head_heads: int = 4, max_frames: Optional[int] = None,
                **_) -> keras.KerasTensor:
    """A small transformer encoder over the frames, then their mean: [B, units].

    The features are projected to `units` and a learned position (an Embedding of
    `max_frames` rows, picked by `frame_positions`) is added; then `head_layers`
    encoder layers, each (pre-norm) x + MultiHeadAttention(LayerNorm(x)) and
    x + FeedForward(LayerNorm(x)) with FeedForward = Dense(FEED_FORWARD_FACTOR *
    units, relu), Dense(units); then a LayerNormalization and the frames' mean.
    The mean, not a class token: reading the token back out (position 0 of T + 1)
    takes a slice whose size depends on T, and Cropping1D, the stock slicing layer,
    fixes its sizes when the model is built.
    """
    if not max_frames:
        raise UsageError("the transformer head needs the most frames a clip has (max_frames) for "
                         "its learned positions: build it with num_frames or max_frames")
    x = layers.Dense(units, name="frame_projection")(features)
    positions = layers.Embedding(max_frames, units, name="position_embedding")(
        frame_positions(features, max_frames))
    x = layers.Add(name="add_positions")([x, positions])
    key_dim = max(units // head_heads, 1)
    for i in range(1, head_layers + 1):
        y = layers.LayerNormalization(name=f"encoder{i}_attention_norm")(x)
        y = layers.MultiHeadAttention(head_heads, key_dim, name=f"encoder{i}_attention")(y, y)
        x = layers.Add(name=f"encoder{i}_attention_residual")([x, y])
        y = layers.LayerNormalization(name=f"encoder{i}_feed_forward_norm")(x)
        y = layers.Dense(FEED_FORWARD_FACTOR * units, activation="relu",
                         name=f"encoder{i}_feed_forward1")(y)
        y = layers.Dense(units, name=f"encoder{i}_feed_forward2")(y)
        x = layers.Add(name=f"encoder{i}_feed_forward_residual")([x, y])
    x = layers.LayerNormalization(name="encoder_norm")(x)
    return layers.GlobalAveragePooling1D(name="encoder_pool")(x)


HeadBuilder = Callable[..., keras.KerasTensor]

# The registry: --head's choices, in trainer.modeling.config.HEADS order.
HEAD_BUILDERS: Dict[str, HeadBuilder] = {
    "rnn": rnn,
    "mean_pool": mean_pool,
    "single_frame": single_frame,
    "temporal_conv": temporal_conv,
    "transformer": transformer,
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
