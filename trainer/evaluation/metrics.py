"""Classification metrics of a held-out split, in numpy alone (no TensorFlow, Keras or matplotlib).

Accuracy with its Wilson 95% interval, top-k accuracy, per-class
precision/recall/F1/support, macro and weighted averages, macro-F1 with a
bootstrap 95% interval, mean per-class recall and the confusion matrix (rows:
true label, columns: predicted label), and the play-level average of a play's
views. The Beam prediction job imports it without TensorFlow's start-up cost;
`trainer.evaluation.reports` turns these into eval.json.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

# Probabilities are floored here before their logarithms are averaged over a play's views
# (a float32 softmax can underflow to 0); the serving signature uses the same floor.
PROBABILITY_FLOOR = 1e-30


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


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator > 0)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """The Wilson score interval (95% for z=1.96) of a proportion `correct`/`n`; (0, 1) for n=0.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n.
    """
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, center - half)), float(min(1.0, center + half))


def per_class_recall(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class, float [C]; NaN for a class with no examples."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / np.maximum(support, 1), np.nan)


def mean_per_class_recall(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Recall averaged over the classes that have examples (balanced accuracy)."""
    recall = per_class_recall(labels, predictions, num_classes)
    return float(np.nanmean(recall)) if np.isfinite(recall).any() else 0.0


def _macro_f1_of_counts(matrices: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion matrices [..., C, C], over the classes that occur as label or prediction."""
    true_pos = np.diagonal(matrices, axis1=-2, axis2=-1).astype(np.float64)
    support = matrices.sum(axis=-1)
    predicted = matrices.sum(axis=-2)
    seen = (support + predicted) > 0
    f1 = 2 * true_pos / np.maximum(support + predicted, 1)  # = 2PR / (P + R)
    return (f1 * seen).sum(axis=-1) / np.maximum(seen.sum(axis=-1), 1)


def macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """F1 averaged over the classes that occur as a label or a prediction (as sklearn's macro)."""
    return float(_macro_f1_of_counts(confusion_matrix(labels, predictions, num_classes)))


def bootstrap_macro_f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int, *,
                       resamples: int = 1000, seed: int = 0,
                       chunk: int = 100) -> Tuple[float, float]:
    """The 2.5th and 97.5th percentiles of macro-F1 over `resamples` bootstrap resamples.

    Examples are drawn with replacement (seeded, so a report is reproducible);
    each chunk of resamples is one vectorized confusion count.
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    predictions = np.asarray(predictions, np.int64).reshape(-1)
    confusion_matrix(labels, predictions, num_classes)  # checks shapes and ranges
    n = labels.size
    if n == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    cell = labels * num_classes + predictions
    scores = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        picks = cell[rng.integers(0, n, (size, n))] + (np.arange(size) * num_classes ** 2)[:, None]
        counts = np.bincount(picks.ravel(), minlength=size * num_classes ** 2)
        scores.append(_macro_f1_of_counts(counts.reshape(size, num_classes, num_classes)))
    low, high = np.percentile(np.concatenate(scores), [2.5, 97.5])
    return float(low), float(high)


def headline_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                     prefix: str = "") -> Dict[str, Any]:
    """Accuracy with n and its Wilson interval, macro-F1 with its bootstrap interval, mean recall."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    predictions = np.asarray(predictions, np.int64).reshape(-1)
    n, correct = int(labels.size), int(np.sum(labels == predictions))
    low, high = wilson_interval(correct, n)
    f1_low, f1_high = bootstrap_macro_f1(labels, predictions, num_classes)
    values = {"accuracy": correct / n if n else 0.0, "accuracy_n": n,
              "accuracy_ci_low": low, "accuracy_ci_high": high,
              "macro_f1": macro_f1(labels, predictions, num_classes),
              "macro_f1_ci_low": f1_low, "macro_f1_ci_high": f1_high,
              "mean_per_class_recall": mean_per_class_recall(labels, predictions, num_classes)}
    return {prefix + key: value for key, value in values.items()}


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray,
                           label_names: Sequence[str],
                           top_k: Iterable[int] = (1, 3)) -> Dict[str, Any]:
    """The evaluation report as a JSON-ready dict.

    Args:
      labels: int [N] true class indices.
      probabilities: float [N, C] class scores (argmax is the prediction).
      label_names: C names, index order.
      top_k: k values for `top_{k}` accuracy; k >= C is skipped (always 1.0).

    Precision/recall/F1 of a class with no predictions/no examples is 0 in
    `per_class` and the averages; `macro_f1` and `mean_per_class_recall` leave
    such classes out (see `headline_metrics`).
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
    precision = safe_divide(true_pos, predicted)
    recall = safe_divide(true_pos, support)
    f1 = safe_divide(2 * precision * recall, precision + recall)
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

    report: Dict[str, Any] = {"num_examples": total}
    report.update(headline_metrics(labels, predictions, num_classes))
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


def average_log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Play-level probabilities [N, C] from K views' probabilities [N, K, C].

    The views' log-probabilities are averaged and soft-maxed: the same as
    averaging the views' logits (a view's log-softmax is its logits minus a
    constant), a geometric mean of the views' probabilities.
    """
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 3 or probabilities.shape[1] < 1:
        raise ValueError(f"view probabilities must be [N, K, C] with K >= 1, got shape "
                         f"{probabilities.shape}")
    mean = np.log(np.maximum(probabilities, PROBABILITY_FLOOR)).mean(axis=1)
    shifted = np.exp(mean - mean.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
