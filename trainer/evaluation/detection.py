"""Temporal detection metrics: plays found in game videos, scored as the field scores detectors.

ActivityNet's detection protocol (its `eval_detection.py`): per label, detections
ranked by score (ties keep their order), each matched to the unmatched true play
of its label and game with the highest temporal IoU (tIoU) at or above the
threshold, else a false positive; average precision is the area under the
precision envelope (interpolated AP). mAP averages AP over the labels that have
true plays; `map_tiou_avg` averages mAP over tIoU 0.5:0.05:0.95 (ActivityNet's
headline), and THUMOS'14's 0.3 and 0.7 points are reported too. Precision,
recall and F1 of the detected plays use the same matching at one threshold.
Intervals: a bootstrap over games (a game's plays and detections travel
together), so a figure's uncertainty reflects how much it varies between games.

numpy only: the Beam jobs and the timeline import it without TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

ACTIVITYNET_TIOUS: Tuple[float, ...] = tuple(np.round(np.linspace(0.5, 0.95, 10), 2))
REPORTED_TIOUS: Tuple[float, ...] = (0.3, 0.5, 0.7)
# A span that overlaps every play below this tIoU is background: the records job's hard
# negatives are drawn under it, and detections under it are false plays (`false_detections`).
BACKGROUND_TIOU = 0.3


@dataclasses.dataclass(frozen=True)
class Segment:
    """One play of one game: [start, end) seconds, a label, and a score (detections only)."""

    game: str
    start: float
    end: float
    label: str
    score: float = 1.0


def tiou(segment: Tuple[float, float], others: np.ndarray) -> np.ndarray:
    """Temporal IoU of [start, end] with each row of `others` [N, 2] (0 where they do not meet)."""
    others = np.asarray(others, dtype=np.float64).reshape(-1, 2)
    start, end = float(segment[0]), float(segment[1])
    inter = np.clip(np.minimum(end, others[:, 1]) - np.maximum(start, others[:, 0]), 0.0, None)
    union = (end - start) + (others[:, 1] - others[:, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope (each precision the best at that recall or beyond)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mprec[steps]))


def match(truth: Sequence[Segment], detections: Sequence[Segment],
          threshold: float) -> np.ndarray:
    """Whether each detection (in `detections`' score order, highest first) is a true positive.

    Returns a bool array in the order of `ranked(detections)`: each detection
    takes the unmatched true play of its game and label with the highest tIoU,
    when that tIoU is >= `threshold`.
    """
    by_key: Dict[Tuple[str, str], List[int]] = {}
    for i, play in enumerate(truth):
        by_key.setdefault((play.game, play.label), []).append(i)
    bounds = np.array([[p.start, p.end] for p in truth], dtype=np.float64).reshape(-1, 2)
    taken = np.zeros(len(truth), dtype=bool)
    hits = []
    for det in ranked(detections):
        candidates = by_key.get((det.game, det.label), [])
        hit = False
        if candidates:
            overlaps = tiou((det.start, det.end), bounds[candidates])
            for j in np.argsort(-overlaps, kind="stable"):
                if overlaps[j] < threshold:
                    break
                if not taken[candidates[j]]:
                    taken[candidates[j]] = hit = True
                    break
        hits.append(hit)
    return np.array(hits, dtype=bool)


def false_detections(truth: Sequence[Segment], detections: Sequence[Segment],
                     max_tiou: float = BACKGROUND_TIOU) -> List[Segment]:
    """The detections that overlap no true play of their game (any label) at tIoU `max_tiou` or
    more: plays found where none was run (dead ball, a replay), not a play found with the wrong
    label or loose bounds. They are background by the records job's rule for hard negatives, so
    they can go back into it as `no_play` clips (hard-negative mining)."""
    bounds: Dict[str, List[Tuple[float, float]]] = {}
    for play in truth:
        bounds.setdefault(play.game, []).append((play.start, play.end))
    return [d for d in detections
            if not bounds.get(d.game) or tiou((d.start, d.end), bounds[d.game]).max() < max_tiou]


def ranked(detections: Sequence[Segment]) -> List[Segment]:
    """Detections by score, highest first (a stable sort: ties keep their order)."""
    order = np.argsort(-np.array([d.score for d in detections], dtype=np.float64), kind="stable")
    return [detections[i] for i in order]


def average_precision(truth: Sequence[Segment], detections: Sequence[Segment], label: str,
                      threshold: float) -> Optional[float]:
    """AP of one label at one tIoU threshold (None when the label has no true play)."""
    truth = [p for p in truth if p.label == label]
    if not truth:
        return None
    detections = [d for d in detections if d.label == label]
    if not detections:
        return 0.0
    hits = match(truth, detections, threshold).astype(np.float64)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return interpolated_ap(precision, tp / len(truth))


def mean_ap(truth: Sequence[Segment], detections: Sequence[Segment],
            threshold: float) -> Tuple[float, Dict[str, float]]:
    """(mAP over the labels with true plays, AP per label) at one tIoU threshold."""
    per_label = {}
    for label in sorted({p.label for p in truth}):
        per_label[label] = average_precision(truth, detections, label, threshold)
    return (float(np.mean(list(per_label.values()))) if per_label else 0.0), per_label


def precision_recall_f1(truth: Sequence[Segment], detections: Sequence[Segment],
                        threshold: float = 0.5) -> Dict[str, float]:
    """Precision, recall and F1 of the detected plays (one-to-one matching at `threshold`)."""
    tp = float(match(truth, detections, threshold).sum()) if detections else 0.0
    precision = tp / len(detections) if detections else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _key(threshold: float) -> str:
    return f"{threshold:.2f}".rstrip("0").rstrip(".").replace(".", "_")


def detection_metrics(truth: Sequence[Segment], detections: Sequence[Segment]) -> Dict[str, float]:
    """The headline keys: map_tiou_0_3/0_5/0_7, map_tiou_avg (0.5:0.05:0.95), and
    precision/recall/f1 at tIoU 0.5."""
    out = {f"map_tiou_{_key(t)}": mean_ap(truth, detections, t)[0] for t in REPORTED_TIOUS}
    out["map_tiou_avg"] = float(np.mean([mean_ap(truth, detections, t)[0]
                                         for t in ACTIVITYNET_TIOUS]))
    for name, value in precision_recall_f1(truth, detections, 0.5).items():
        out[f"{name}_tiou_0_5"] = value
    return out


def bootstrap_over_games(truth: Sequence[Segment], detections: Sequence[Segment], *,
                         samples: int = 1000, seed: int = 0
                         ) -> Dict[str, Tuple[float, float]]:
    """95% percentile intervals of `detection_metrics`' keys, resampling whole games."""
    games = sorted({p.game for p in truth} | {d.game for d in detections})
    if not games:
        return {}
    truth_of = {g: [p for p in truth if p.game == g] for g in games}
    dets_of = {g: [d for d in detections if d.game == g] for g in games}
    rng = np.random.default_rng(seed)
    values: Dict[str, List[float]] = {}
    for _ in range(samples):
        picked = rng.integers(0, len(games), len(games))
        # A game drawn twice counts twice: its copies get distinct names so they match apart.
        t = [dataclasses.replace(p, game=f"{p.game}#{k}") for k, i in enumerate(picked)
             for p in truth_of[games[i]]]
        d = [dataclasses.replace(x, game=f"{x.game}#{k}") for k, i in enumerate(picked)
             for x in dets_of[games[i]]]
        for key, value in detection_metrics(t, d).items():
            values.setdefault(key, []).append(value)
    return {key: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
            for key, v in values.items()}


def detection_report(truth: Sequence[Segment], detections: Sequence[Segment], *,
                     samples: int = 1000, seed: int = 0) -> Dict[str, object]:
    """Every key of `detection_metrics` with its bootstrap interval over games, the counts, and
    AP per label at tIoU 0.5."""
    report: Dict[str, object] = dict(detection_metrics(truth, detections))
    report["intervals"] = bootstrap_over_games(truth, detections, samples=samples, seed=seed)
    report["ap_tiou_0_5"] = mean_ap(truth, detections, 0.5)[1]
    report["num_true_plays"] = len(truth)
    report["num_detections"] = len(detections)
    report["num_games"] = len({p.game for p in truth} | {d.game for d in detections})
    report["tious_averaged"] = list(ACTIVITYNET_TIOUS)
    return report
