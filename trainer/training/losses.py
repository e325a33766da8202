"""The training loss: sparse cross-entropy, or its logit-adjusted form for long-tailed labels.

`--class_weight=logit_adjusted` trains with the logit-adjusted loss of Menon et
al. (ICLR 2021, "Long-tail learning via logit adjustment"): each play's logits
z get tau * log(prior) added before the softmax cross-entropy,

    loss(y, z) = -log softmax(z + tau * log(prior))[y]

with prior the training label frequencies (dataset.json's train counts).
tau = 1 is Ren et al.'s balanced softmax (2020). The offsets live in the loss
only: the model's layers and outputs stay plain, so the exported model predicts
with unadjusted logits (the softmax of z) and loads with `safe_mode=True`.

The model ends in a float32 softmax (`model.probabilities`); the loss takes
the softmax's logits where Keras left them on the tensor (`_keras_logits`, or
the Softmax op's input in a graph), as Keras's own cross-entropy does, else
log(clip(p)), which equals z up to a per-play constant that the softmax ignores.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, Optional, Sequence

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)


def logits_of(probabilities: tf.Tensor) -> tf.Tensor:
    """Logits whose softmax is `probabilities` (up to a constant per row): the softmax's input
    when the tensor carries it, else the clipped log-probabilities."""
    logits = getattr(probabilities, "_keras_logits", None)
    if logits is not None:
        return tf.cast(logits, tf.float32)
    op = getattr(probabilities, "op", None)
    if (op is not None and not isinstance(probabilities, tf.__internal__.EagerTensor)
            and op.type == "Softmax" and len(op.inputs) == 1):
        return tf.cast(op.inputs[0], tf.float32)
    probabilities = tf.cast(probabilities, tf.float32)
    epsilon = keras.config.epsilon()
    return tf.math.log(tf.clip_by_value(probabilities, epsilon, 1.0))


def log_priors_of(counts: Sequence[int]) -> tuple:
    """log of the label frequencies (counts / total); every count must be > 0."""
    total = float(sum(counts))
    if total <= 0 or min(counts) <= 0:
        raise ValueError(f"every label needs training plays for its prior, got counts {counts}")
    return tuple(math.log(count / total) for count in counts)


@keras.saving.register_keras_serializable(package="playclips")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Sparse cross-entropy of softmax(logits + tau * log_priors) against integer labels.

    `y_pred` are the model's probabilities (its softmax output); the offsets are
    the same for every play, so they shift the decision only during training.
    """

    def __init__(self, log_priors: Sequence[float], tau: float = 1.0,
                 name: str = "logit_adjusted_crossentropy", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.log_priors = tuple(float(v) for v in log_priors)
        self.tau = float(tau)

    @property
    def offsets(self) -> tuple:
        """tau * log(prior) per label: what is added to the logits."""
        return tuple(self.tau * value for value in self.log_priors)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        logits = logits_of(y_pred)
        adjusted = logits + tf.constant(self.offsets, dtype=logits.dtype)
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=adjusted)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(log_priors=list(self.log_priors), tau=self.tau)
        return config


def build_loss(class_weight: str, counts: Optional[Sequence[int]] = None,
               tau: float = 1.0) -> keras.losses.Loss:
    """The task's training loss: logit-adjusted with `class_weight` "logit_adjusted" (`counts`:
    training plays per label), else the plain sparse cross-entropy."""
    if class_weight != "logit_adjusted":
        return keras.losses.SparseCategoricalCrossentropy()
    if counts is None:
        raise ValueError("--class_weight=logit_adjusted needs the training label counts")
    return LogitAdjustedCrossentropy(log_priors_of(counts), tau)
