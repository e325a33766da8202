"""The play-level average of a play's views in TensorFlow, for graphs such as the serving signature.

The same average as `trainer.evaluation.metrics.average_log_probabilities`
(the evaluation's, in numpy): the views' floored log-probabilities averaged and
soft-maxed, a geometric mean of the views' probabilities.
"""

from __future__ import annotations

import tensorflow as tf

from trainer.evaluation.metrics import PROBABILITY_FLOOR


def average_log_probabilities(probabilities: tf.Tensor) -> tf.Tensor:
    """Views' probabilities [B, V, C] -> play probabilities float32 [B, C]."""
    floored = tf.maximum(tf.cast(probabilities, tf.float32), PROBABILITY_FLOOR)
    return tf.nn.softmax(tf.reduce_mean(tf.math.log(floored), axis=1), axis=-1)
