"""Decoders: one serialized record -> a dict of tensors, one per record kind.

They only parse (over the `schemas` parse functions, so that the record
layout has one definition); choosing frames, decoding JPEGs and augmenting
are the parsers' (`trainer.data.parsers`). The functions are named for the
tensors they return, not `decode_*`: `schemas.play_record.decode_play` is the
TensorFlow-free decode of a record into a `PlayRecord`.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from schemas import feature_record, play_record


def play_tensors(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """A play record: frames (string [T], JPEG), label, height, width."""
    return play_record.parse_play(serialized)


def feature_tensors(serialized: tf.Tensor, dtype: str) -> Dict[str, tf.Tensor]:
    """A feature record: features (float32 [V, T, C]: V views, e.g. the flipped frames') and label."""
    return feature_record.parse_features(serialized, dtype=dtype)


def label_tensor(serialized: tf.Tensor) -> tf.Tensor:
    """The label index (int32) alone of a play or feature record (both keep it in the context)."""
    context, _ = tf.io.parse_single_sequence_example(
        serialized, context_features={play_record.LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64)})
    return tf.cast(context[play_record.LABEL_INDEX], tf.int32)
