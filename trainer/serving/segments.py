"""Windows on a game's sampled frames, and their merge into labelled segments.

The timeline (`trainer.timeline`) samples a video at the rate the model was
trained on, `rate` frames per second: sampled frame j stands for the bin
[j / rate, (j + 1) / rate) of the video, as each of a record's frames stands for
one of the equal bins a play is cut into (`media.frames.sample_indices`).

A window is `window_frames` consecutive sampled frames (a record's worth);
window k starts at sampled frame floor(k * hop_frames), so a hop that is not a
whole number of frames (0.5 s at 25 fps: 12.5 frames) still averages exactly
`hop_frames` and every window reuses the frames' features. A video with N >=
window_frames sampled frames has floor((N - window_frames) / hop_frames) + 1
windows; a shorter video has one window over all its frames.

Overlapping windows map to time by their centres: window k owns the time from
halfway between its centre and the previous window's centre to halfway towards
the next one; the first window owns the video from 0 s and the last one up to
the video's end. Owned intervals therefore tile the video from start to end
without overlap, and consecutive windows with the same label merge into one
segment. A window whose best probability is below `min_confidence` is marked
`uncertain: true` and takes the label `"uncertain"` (UNCERTAIN) in the
segments; consecutive uncertain windows merge too. A segment's confidence is
the mean, over its windows, of the probability of its label (for an uncertain
segment, of each window's best probability).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence

UNCERTAIN = "uncertain"
NO_PLAY = "no_play"  # the label a model uses for time that is no play (dead ball, replays)
_EPS = 1e-9  # float slack in frame arithmetic (0.5 s * 25 fps * k)


@dataclasses.dataclass(frozen=True)
class WindowGrid:
    """Where the windows sit on the sampled-frame grid (see the module docstring)."""

    rate: float  # sampled frames per second
    window_frames: int  # sampled frames per window
    hop_frames: float  # sampled frames between window starts (may be fractional)

    def __post_init__(self):
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number, got {self.rate}")
        if self.window_frames < 1:
            raise ValueError(f"window_frames must be >= 1, got {self.window_frames}")
        if not 1 - _EPS <= self.hop_frames <= self.window_frames + _EPS:
            raise ValueError(f"hop_frames must be in [1, {self.window_frames}], got {self.hop_frames}")

    def start(self, k: int) -> int:
        """First sampled frame of window k."""
        return int(math.floor(k * self.hop_frames + _EPS))

    def count(self, num_sampled: int) -> int:
        """Windows over a video of `num_sampled` sampled frames (one when it is shorter)."""
        if num_sampled < 1:
            return 0
        if num_sampled < self.window_frames:
            return 1
        return int(math.floor((num_sampled - self.window_frames) / self.hop_frames + _EPS)) + 1

    def frames_of(self, k: int, num_sampled: Optional[int] = None) -> range:
        """Sampled frames of window k (clipped to a short video's `num_sampled`)."""
        stop = self.start(k) + self.window_frames
        if num_sampled is not None:
            stop = min(stop, num_sampled)
        return range(self.start(k), stop)

    def windows_ending_at(self, j: int) -> List[int]:
        """The windows whose last frame is sampled frame j (j + 1 frames seen)."""
        first_start = j + 1 - self.window_frames
        if first_start < 0:
            return []
        k = int(math.ceil(first_start / self.hop_frames - _EPS))
        return [k] if self.start(k) == first_start else []

    def first_window_at(self, j: int) -> int:
        """The first window whose start frame is at or after sampled frame j."""
        k = max(int(math.ceil(j / self.hop_frames - _EPS)), 0)
        while self.start(k) < j:
            k += 1
        while k > 0 and self.start(k - 1) >= j:
            k -= 1
        return k

    def windows_holding(self, j: int) -> List[int]:
        """The windows (of a long enough video) whose frames include sampled frame j."""
        first = max(0, int(math.floor((j - self.window_frames + 1) / self.hop_frames)) - 1)
        last = int(math.floor(j / self.hop_frames + _EPS)) + 1
        return [k for k in range(first, last + 1)
                if self.start(k) <= j < self.start(k) + self.window_frames]

    def seconds(self, frame: float) -> float:
        return frame / self.rate


def owned_intervals(grid: WindowGrid, num_windows: int, duration: float,
                    num_sampled: Optional[int] = None) -> List[tuple]:
    """(start, end) seconds each window owns; they tile [0, duration) (module docstring)."""
    if num_windows < 1:
        return []
    centres = []
    for k in range(num_windows):
        frames = grid.frames_of(k, num_sampled)
        centres.append(grid.seconds(frames.start + len(frames) / 2))
    bounds = [0.0] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [float(duration)]
    return list(zip(bounds[:-1], bounds[1:]))


def describe_windows(grid: WindowGrid, probabilities: Sequence[Sequence[float]],
                     labels: Sequence[str], duration: float, min_confidence: float,
                     num_sampled: Optional[int] = None) -> List[Dict[str, Any]]:
    """One dict per window: its frames' span, owned span, top label, confidence, uncertainty."""
    owned = owned_intervals(grid, len(probabilities), duration, num_sampled)
    windows = []
    for k, (probs, (own_start, own_end)) in enumerate(zip(probabilities, owned)):
        probs = [float(p) for p in probs]
        best = max(range(len(probs)), key=lambda i: (probs[i], -i))
        frames = grid.frames_of(k, num_sampled)
        windows.append({
            "index": k,
            "start": grid.seconds(frames.start),
            "end": min(grid.seconds(frames.stop), float(duration)),
            "owned_start": own_start,
            "owned_end": own_end,
            "label": labels[best],
            "confidence": probs[best],
            "uncertain": probs[best] < min_confidence,
            "probabilities": probs,
        })
    return windows


def merge_segments(windows: Sequence[Dict[str, Any]], labels: Sequence[str]) -> List[Dict[str, Any]]:
    """Consecutive windows of the same label (or all uncertain) -> segments covering the video."""
    segments: List[Dict[str, Any]] = []
    scores: List[List[float]] = []
    for window in windows:
        label = UNCERTAIN if window["uncertain"] else window["label"]
        score = (window["confidence"] if label == UNCERTAIN
                 else window["probabilities"][list(labels).index(label)])
        if segments and segments[-1]["label"] == label:
            segments[-1]["end"] = window["owned_end"]
            segments[-1]["last_window"] = window["index"]
            scores[-1].append(score)
        else:
            segments.append({"start": window["owned_start"], "end": window["owned_end"],
                             "label": label, "first_window": window["index"],
                             "last_window": window["index"]})
            scores.append([score])
    for segment, values in zip(segments, scores):
        segment["confidence"] = sum(values) / len(values)
    return segments


def detected_plays(segments: Sequence[Dict[str, Any]], no_play_label: str = NO_PLAY,
                   min_seconds: float = 0.0) -> List[Dict[str, Any]]:
    """The segments that are plays: neither uncertain nor `no_play_label`, and at least
    `min_seconds` long.

    A detected play is a run of consecutive windows of one play label; its start
    and end are its segment's, halfway between the centres of its first (last)
    window and the window before (after) it: a window's label speaks for its
    centre, so the boundary between two labels is placed where neither
    window's centre is closer. A model trained with shifted plays
    (`beam_jobs.no_play`) names the windows that hold most of a play, whose
    centres lie in the play, so the run's span is about the play's. Runs
    shorter than `min_seconds` are dropped (they stay in the segments): one
    window alone is most often a flicker of another label at a play's edge, or
    a dead-ball moment that looks like a play, while a real play holds most of
    several overlapping windows. Its confidence is the segment's (the mean
    probability of its label over its windows), the detection's score.
    """
    return [{"start": s["start"], "end": s["end"], "label": s["label"],
             "confidence": s["confidence"]}
            for s in segments if s["label"] not in (UNCERTAIN, no_play_label)
            and s["end"] - s["start"] >= min_seconds - _EPS]


def majority_label(segments: Sequence[Dict[str, Any]], start: float, end: float) -> Optional[str]:
    """The label of the segment that overlaps [start, end) the most (None if none does)."""
    best, best_overlap = None, 0.0
    for segment in segments:
        overlap = min(end, segment["end"]) - max(start, segment["start"])
        if overlap > best_overlap:
            best, best_overlap = segment["label"], overlap
    return best


__all__ = ["NO_PLAY", "UNCERTAIN", "WindowGrid", "describe_windows", "detected_plays",
           "majority_label", "merge_segments",
           "owned_intervals"]
