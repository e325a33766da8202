"""Runs a Keras classifier over an evaluation dataset of views: the probabilities to score."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import tensorflow as tf


def predict_views(model, dataset) -> Tuple[np.ndarray, np.ndarray]:
    """Runs `model` once over `(views [B, V, ...], labels)` batches -> (labels [N], probs [N, V, C]).

    The B x V views of a batch go through the model as one batch.
    """
    @tf.function(reduce_retracing=True)
    def predict_step(views):
        inner = [tf.shape(views)[i + 2] if d is None else d for i, d in enumerate(views.shape[2:])]
        probs = model(tf.reshape(views, [-1, *inner]), training=False)
        return tf.reshape(probs, [tf.shape(views)[0], tf.shape(views)[1], -1])

    all_labels: List[np.ndarray] = []
    all_probs: List[np.ndarray] = []
    for views, labels in dataset:
        all_probs.append(np.asarray(predict_step(views)))
        all_labels.append(np.asarray(labels).reshape(-1))
    if not all_probs:
        raise ValueError("the evaluation dataset is empty")
    return np.concatenate(all_labels).astype(np.int64), np.concatenate(all_probs)
