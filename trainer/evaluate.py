"""Evaluation report on a held-out split: `eval.json` and `confusion_matrix.png`.

Metrics are pure numpy (no sklearn): accuracy, top-k accuracy, per-class
precision/recall/F1/support, macro and weighted averages and the confusion
matrix (rows: true label, columns: predicted label).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

EVAL_JSON = "eval.json"
CONFUSION_PNG = "confusion_matrix.png"


# ---------------------------------------------------------------- metrics


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, int64 [C, C]: row = true class, column = predicted class."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    predictions = np.asarray(predictions, np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} index out of range [0, {num_classes}): "
                             f"min {values.min()}, max {values.max()}")
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Fraction of examples whose true class is among the k highest probabilities.

    Ties are broken by class index (stable sort), as np.argsort does.
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    probabilities = np.asarray(probabilities)
    if labels.size == 0:
        return 0.0
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator > 0)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray,
                           label_names: Sequence[str],
                           top_k: Iterable[int] = (1, 3)) -> Dict[str, Any]:
    """The evaluation report as a JSON-ready dict.

    Args:
      labels: int [N] true class indices.
      probabilities: float [N, C] class scores (argmax is the prediction).
      label_names: C names, index order.
      top_k: k values for `top_{k}` accuracy; k >= C is skipped (always 1.0).

    Precision/recall/F1 of a class with no predictions/no examples is 0.
    """
    label_names = list(label_names)
    num_classes = len(label_names)
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if probabilities.ndim != 2 or probabilities.shape[1] != num_classes:
        raise ValueError(f"probabilities must be [N, {num_classes}] for {num_classes} labels, "
                         f"got shape {probabilities.shape}")
    if probabilities.shape[0] != labels.size:
        raise ValueError(f"{labels.size} labels but {probabilities.shape[0]} predictions")
    predictions = np.argmax(probabilities, axis=1) if labels.size else labels
    matrix = confusion_matrix(labels, predictions, num_classes)
    true_pos = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(true_pos, predicted)
    recall = _safe_divide(true_pos, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = int(support.sum())

    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(label_names)
    }

    def average(weights: Optional[np.ndarray]) -> Dict[str, float]:
        if weights is None:
            return {"precision": float(precision.mean()), "recall": float(recall.mean()),
                    "f1": float(f1.mean()), "support": total}
        w = weights / max(weights.sum(), 1)
        return {"precision": float((precision * w).sum()), "recall": float((recall * w).sum()),
                "f1": float((f1 * w).sum()), "support": total}

    report: Dict[str, Any] = {
        "num_examples": total,
        "accuracy": float(true_pos.sum() / total) if total else 0.0,
    }
    for k in sorted(set(int(k) for k in top_k)):
        if k < 1:
            raise ValueError(f"top_k values must be >= 1, got {k}")
        if k == 1 or k < num_classes:
            report[f"top_{k}"] = top_k_accuracy(labels, probabilities, k)
    report.update({
        "labels": label_names,
        "per_class": per_class,
        "macro_avg": average(None),
        "weighted_avg": average(support.astype(np.float64)),
        "confusion_matrix": matrix.tolist(),
    })
    return report


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
    normalized = _safe_divide(matrix, matrix.sum(axis=1, keepdims=True))
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


# ---------------------------------------------------------------- model


def predict_dataset(model, dataset) -> Tuple[np.ndarray, np.ndarray]:
    """Runs `model` once over `(clips, labels)` batches -> (labels int64 [N], probs [N, C])."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    @tf.function(reduce_retracing=True)
    def predict_step(clips):
        return model(clips, training=False)

    all_labels: List[np.ndarray] = []
    all_probs: List[np.ndarray] = []
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("evaluate_model needs a dataset of (clips, labels) batches")
        clips, labels = batch[0], batch[1]
        probs = predict_step(clips)
        all_probs.append(np.asarray(probs))
        all_labels.append(np.asarray(labels).reshape(-1))
    if not all_probs:
        raise ValueError("the evaluation dataset is empty")
    return np.concatenate(all_labels).astype(np.int64), np.concatenate(all_probs)


def evaluate_model(model, dataset, labels: List[str], out_dir: str, *,
                   top_k: Sequence[int] = (1, 3)) -> Dict[str, Any]:
    """Evaluates `model` on `dataset` and writes OUT_DIR/eval.json and confusion_matrix.png.

    Args:
      model: a Keras model mapping uint8 clips to class probabilities [B, C]
        (built under any strategy; it is called batch by batch in eager mode).
      dataset: a plain (not distributed) tf.data.Dataset of `(clips, labels)`,
        iterated once, e.g. `data.make_dataset(..., training=False)`.
      labels: the label vocabulary, index order.
      out_dir: a local path or gs:// (written with tf.io.gfile).
      top_k: k values for top-k accuracy (k >= number of classes is skipped).

    Returns:
      The report written to eval.json.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    true_labels, probabilities = predict_dataset(model, dataset)
    report = classification_metrics(true_labels, probabilities, labels, top_k=top_k)
    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(os.path.join(out_dir, EVAL_JSON), "w") as f:
        f.write(json.dumps(report, indent=2))
    plot_confusion_matrix(np.asarray(report["confusion_matrix"]), labels,
                          os.path.join(out_dir, CONFUSION_PNG))
    return report
