"""Evaluation reports of a held-out split: `eval.json`, its console lines and `confusion_matrix.png`.

`view_report` scores a multi-view evaluation at clip level (the centred clip)
and at play level (the views averaged, as the exported model does) side by
side; the metrics are `trainer.evaluation.metrics`'.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Sequence

import numpy as np

from trainer.evaluation.metrics import (average_log_probabilities, classification_metrics,
                                        confusion_matrix, headline_metrics, per_class_recall,
                                        safe_divide)

EVAL_JSON = "eval.json"
CONFUSION_PNG = "confusion_matrix.png"


def level_summary(labels: np.ndarray, probabilities: np.ndarray,
                  label_names: Sequence[str]) -> Dict[str, Any]:
    """One level (clip or play) of eval.json: n, accuracy with its Wilson interval, macro-F1
    with its bootstrap interval, mean and per-class recall ({label: recall or None}), confusion."""
    label_names = list(label_names)
    labels = np.asarray(labels, np.int64).reshape(-1)
    predictions = np.argmax(probabilities, axis=1) if labels.size else labels
    values = headline_metrics(labels, predictions, len(label_names))
    recall = per_class_recall(labels, predictions, len(label_names))
    return {"n": values.pop("accuracy_n"), **values,
            "per_class_recall": {name: (None if np.isnan(r) else float(r))
                                 for name, r in zip(label_names, recall)},
            "confusion_matrix": confusion_matrix(labels, predictions,
                                                 len(label_names)).tolist()}


def view_report(labels: np.ndarray, scores: np.ndarray, label_names: Sequence[str], *,
                averaged: int, centre: int, flip: bool,
                top_k: Iterable[int] = (1, 3), no_play_label: str = "") -> Dict[str, Any]:
    """eval.json of a multi-view evaluation.

    Args:
      labels: int [N].
      scores: the views' probabilities [N, V, C]; views [0, averaged) are a
        play's views, `centre` is the centred clip's view.
      label_names: C names.
      averaged: the number of views averaged per play (--eval_views, doubled by --eval_flip).
      centre: the centred clip's view.
      flip: whether the views include flipped ones (reported).
      no_play_label: the dataset's no-play label, if it has one: `play_labels` then
        gives the play level over the plays whose true label is a play label (each
        still predicted among all labels, no-play included), beside the level over all.

    The top-level keys (`classification_metrics`) describe the play level, what
    the exported model computes; `clip` and `play` give the headline metrics of
    both levels side by side, `views` the settings.
    """
    scores = np.asarray(scores, np.float64)
    views = scores.shape[1] if scores.ndim == 3 else 0
    if not 1 <= averaged <= views or not 0 <= centre < views:
        raise ValueError(f"view scores [N, V, C] with {averaged} averaged views and centre "
                         f"{centre}, got shape {scores.shape}")
    play = average_log_probabilities(scores[:, :averaged])
    clip = scores[:, centre]
    report = classification_metrics(labels, play, label_names, top_k=top_k)
    report["clip"] = level_summary(labels, clip, label_names)
    report["play"] = level_summary(labels, play, label_names)
    report["views"] = {"eval_views": averaged // (2 if flip else 1), "eval_flip": bool(flip)}
    if no_play_label and no_play_label in label_names:
        keep = np.asarray(labels).reshape(-1) != list(label_names).index(no_play_label)
        report["play_labels"] = dict(level_summary(np.asarray(labels)[keep], play[keep],
                                                   label_names), without=no_play_label)
    return report


def format_summary(split: str, level: Dict[str, Any], name: str = "play") -> str:
    """The console line of one level of a report.

    E.g. `test play accuracy 0.933 (n=30, 95% CI 0.787-0.982), macro-F1 0.93 (0.84-0.99), ...`.
    """
    return (f"{split} {name} accuracy {level['accuracy']:.3f} (n={level['n']}, 95% CI "
            f"{level['accuracy_ci_low']:.3f}-{level['accuracy_ci_high']:.3f}), macro-F1 "
            f"{level['macro_f1']:.2f} ({level['macro_f1_ci_low']:.2f}-"
            f"{level['macro_f1_ci_high']:.2f}), mean per-class recall "
            f"{level['mean_per_class_recall']:.3f}")


# ---------------------------------------------------------------- plot


def plot_confusion_matrix(matrix: np.ndarray, label_names: Sequence[str], path: str,
                          title: str = "Confusion matrix") -> None:
    """Writes a row-normalized confusion matrix, counts annotated, as a PNG (tf.io.gfile)."""
    import io  # pylint: disable=g-import-not-at-top
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    matrix = np.asarray(matrix, np.int64)
    num_classes = len(label_names)
    normalized = safe_divide(matrix, matrix.sum(axis=1, keepdims=True))
    side = max(4.0, 0.75 * num_classes + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    try:
        image = ax.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true label")
        ax.set_xticks(range(num_classes), labels=label_names, rotation=45, ha="right",
                      rotation_mode="anchor", fontsize=9)
        ax.set_yticks(range(num_classes), labels=label_names, fontsize=9)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_title(f"{title} (row-normalized, counts shown)")
        for i in range(num_classes):
            for j in range(num_classes):
                if matrix[i, j] == 0 and i != j:
                    continue
                ax.text(j, i, f"{matrix[i, j]}\n{normalized[i, j]:.0%}", ha="center",
                        va="center", fontsize=7,
                        color="white" if normalized[i, j] > 0.5 else "black")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def write_report(report: Dict[str, Any], labels: Sequence[str], out_dir: str) -> None:
    """OUT_DIR/eval.json and confusion_matrix.png (of the report's top-level confusion matrix)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(os.path.join(out_dir, EVAL_JSON), "w") as f:
        f.write(json.dumps(report, indent=2))
    plot_confusion_matrix(np.asarray(report["confusion_matrix"]), list(labels),
                          os.path.join(out_dir, CONFUSION_PNG))
