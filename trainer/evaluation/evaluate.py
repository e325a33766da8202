"""Evaluation report on a held-out split: `eval.json` and `confusion_matrix.png`.

Metrics are pure numpy (no sklearn): accuracy with its Wilson 95% interval,
top-k accuracy, per-class precision/recall/F1/support, macro and weighted
averages, macro-F1 with a bootstrap 95% interval, mean per-class recall and the
confusion matrix (rows: true label, columns: predicted label). `view_metrics`
scores several views per play (temporal windows, flips) at clip level (one view)
and at play level (views averaged) side by side.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

EVAL_JSON = "eval.json"
CONFUSION_PNG = "confusion_matrix.png"
# Probabilities are floored here before their logarithms are averaged over a play's views
# (a float32 softmax can underflow to 0); the serving signature uses the same floor.
PROBABILITY_FLOOR = 1e-30


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


def average_views(scores: np.ndarray, from_logits: bool = False) -> np.ndarray:
    """Play-level probabilities [N, C] from K views' scores [N, K, C].

    Probabilities are averaged; logits are averaged, then soft-maxed.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 3 or scores.shape[1] < 1:
        raise ValueError(f"view scores must be [N, K, C] with K >= 1, got shape {scores.shape}")
    mean = scores.mean(axis=1)
    if not from_logits:
        return mean
    shifted = np.exp(mean - mean.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def view_metrics(labels: np.ndarray, scores: np.ndarray, label_names: Sequence[str], *,
                 clip_view: Optional[int] = None, from_logits: bool = False) -> Dict[str, Any]:
    """Clip-level (view `clip_view`, default the middle one) and play-level (views averaged) reports.

    Returns {"views": K, "clip": classification_metrics(...), "play": ...}.
    """
    scores = np.asarray(scores, np.float64)
    play = average_views(scores, from_logits)
    clip_view = scores.shape[1] // 2 if clip_view is None else clip_view
    clip = average_views(scores[:, clip_view:clip_view + 1], from_logits)
    return {"views": int(scores.shape[1]),
            "clip": classification_metrics(labels, clip, label_names, top_k=(1,)),
            "play": classification_metrics(labels, play, label_names, top_k=(1,))}


def average_log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Play-level probabilities [N, C] from K views' probabilities [N, K, C].

    The views' log-probabilities are averaged and soft-maxed: the same as
    averaging the views' logits (a view's log-softmax is its logits minus a
    constant), a geometric mean of the views' probabilities.
    """
    floored = np.maximum(np.asarray(probabilities, np.float64), PROBABILITY_FLOOR)
    return average_views(np.log(floored), from_logits=True)


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
                top_k: Iterable[int] = (1, 3)) -> Dict[str, Any]:
    """eval.json of a multi-view evaluation.

    Args:
      labels: int [N].
      scores: the views' probabilities [N, V, C]; views [0, averaged) are a
        play's views, `centre` is the centred clip's view.
      label_names: C names.
      averaged: the number of views averaged per play (--eval_views, doubled by --eval_flip).
      centre: the centred clip's view.
      flip: whether the views include flipped ones (reported).

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


def predict_views(model, dataset) -> Tuple[np.ndarray, np.ndarray]:
    """Runs `model` once over `(views [B, V, ...], labels)` batches -> (labels [N], probs [N, V, C]).

    The B x V views of a batch go through the model as one batch.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

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


def write_report(report: Dict[str, Any], labels: Sequence[str], out_dir: str) -> None:
    """OUT_DIR/eval.json and confusion_matrix.png (of the report's top-level confusion matrix)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(os.path.join(out_dir, EVAL_JSON), "w") as f:
        f.write(json.dumps(report, indent=2))
    plot_confusion_matrix(np.asarray(report["confusion_matrix"]), list(labels),
                          os.path.join(out_dir, CONFUSION_PNG))


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
    true_labels, probabilities = predict_dataset(model, dataset)
    report = classification_metrics(true_labels, probabilities, labels, top_k=top_k)
    write_report(report, labels, out_dir)
    return report
