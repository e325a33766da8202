"""A game video's timeline: windows of sampled frames, their probabilities, and segments.

The video is decoded once, forward (`media.frame_stream`), and resampled at the
rate the model's records were made at (the export card's `frame_rate`; with
`window_seconds`, `record_num_frames / window_seconds`), each frame resized and
JPEG-encoded as the records job stores it (the card's frame sampling). A window
is one record's worth of sampled frames (`record_num_frames`), every
`hop_seconds`; of each window the model sees the frames evaluation picks from a
record (`trainer.data.clips.frame_indices`, centred and evenly spaced). The
model's per-frame part runs once per sampled frame that some window uses, in
batches; the features wait in a buffer that holds one window's span, and the
head runs on each window's features. Memory therefore stays the same for any
length of video (plus a few numbers per window for the output).

How windows map to time and merge into segments is `trainer.serving.segments`;
the files written are `trainer.serving.timeline_outputs`'; the command is
`python -m trainer.timeline`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from media import frame_stream
from media.frames import PlayError
from schemas.errors import UsageError
from trainer.serving import segments as segments_lib
from trainer.serving.timeline_model import TimelineModel

DEFAULT_HOP_SECONDS = 0.5
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_BATCH_SIZE = 32  # sampled frames per base call
HEAD_BATCH_SIZE = 64  # windows per head call
MODES = ("cached", "per_window")


@dataclasses.dataclass
class TimelineStats:
    """What a run cost (for the command's output, tests and benchmarks)."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_embedded: int = 0  # frames the base ran on (each once in the cached mode)
    windows: int = 0
    wall_seconds: float = 0.0
    duration: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.duration / self.wall_seconds if self.wall_seconds > 0 else math.inf

    @property
    def frames_per_s(self) -> float:
        return self.frames_sampled / self.wall_seconds if self.wall_seconds > 0 else math.inf


def window_grid(model: TimelineModel, hop_seconds: float = DEFAULT_HOP_SECONDS,
                window_seconds: Optional[float] = None) -> segments_lib.WindowGrid:
    """The sampling rate and windows for this model and these flags (UsageError if they do not fit)."""
    frames = model.record_num_frames
    if window_seconds is None:
        if not model.frame_rate:
            raise UsageError("the export records no frame_rate: pass --window_seconds (the length "
                             f"in seconds of the plays the model was trained on, {frames} frames)")
        window_seconds = frames / model.frame_rate
    if not (window_seconds > 0 and math.isfinite(window_seconds)):
        raise UsageError(f"--window_seconds must be a positive number, got {window_seconds}")
    rate = frames / window_seconds
    if not (hop_seconds > 0 and math.isfinite(hop_seconds)):
        raise UsageError(f"--hop_seconds must be a positive number, got {hop_seconds}")
    hop_frames = hop_seconds * rate
    if hop_frames < 1 - 1e-9:
        raise UsageError(f"--hop_seconds={hop_seconds} is shorter than one sampled frame: the "
                         f"model samples {rate:g} frames/s, use --hop_seconds >= {1 / rate:.4g}")
    if hop_frames > frames + 1e-9:
        raise UsageError(f"--hop_seconds={hop_seconds} is longer than the window "
                         f"({window_seconds:g} s) and would skip video: use --hop_seconds <= "
                         f"{window_seconds:g}")
    return segments_lib.WindowGrid(rate=rate, window_frames=frames, hop_frames=hop_frames)


class _WindowRunner:
    """Streams sampled frames into windows' probabilities (cached features or the full model)."""

    def __init__(self, model: TimelineModel, grid: segments_lib.WindowGrid, mode: str,
                 batch_size: int, stats: TimelineStats, first_window: int = 0,
                 stop_window: Optional[int] = None):
        self.model, self.grid, self.mode, self.stats = model, grid, mode, stats
        self.first_window, self.stop_window = first_window, stop_window
        self.batch_size = batch_size
        self.offsets = model.window_offsets(grid.window_frames)
        self.seen = 0  # sampled frames the stream has reached
        self.pending: List[tuple] = []  # (j, jpeg) waiting for the base
        self.cache: Dict[int, Any] = {}  # j -> features (cached) or jpeg (per_window)
        self.early: Dict[int, bytes] = {}  # unused frames of the first window, for a short video
        self.next_window = first_window
        self.ready: List[int] = []  # windows whose frames are all in the cache
        self.probabilities: List[List[float]] = []
        self.embedded_indices: List[int] = []

    def wanted(self, j: int) -> bool:
        """Called for every sampled frame in order: whether the stream should encode it."""
        self.seen = j + 1
        if j >= self.grid.window_frames:
            self.early.clear()
        return self.needed(j) or (self.first_window == 0 and j < self.grid.window_frames)

    def needed(self, j: int) -> bool:
        return any(j - self.grid.start(k) in self.offsets for k in self.grid.windows_holding(j)
                   if self.first_window <= k and (self.stop_window is None
                                                  or k < self.stop_window))

    def add(self, j: int, jpeg: bytes) -> None:
        if not self.needed(j):
            self.early[j] = jpeg
            return
        if self.mode == "per_window":
            self.cache[j] = jpeg
        else:
            self.pending.append((j, jpeg))
            if len(self.pending) >= self.batch_size:
                self._embed()
        self._collect(final=False)

    def _embed(self) -> None:
        if not self.pending:
            return
        features = self.model.features([jpeg for _, jpeg in self.pending])
        for (j, _), row in zip(self.pending, features):
            self.cache[j] = row
            self.embedded_indices.append(j)
        self.stats.frames_embedded += len(self.pending)
        self.pending = []

    def _collect(self, final: bool) -> None:
        """Moves complete windows to `ready`; runs them in batches; drops frames no window needs."""
        while self.stop_window is None or self.next_window < self.stop_window:
            k = self.next_window
            start = self.grid.start(k)
            if start + self.grid.window_frames > self.seen:
                break
            if any(start + o not in self.cache for o in self.offsets):
                break
            self.ready.append(k)
            self.next_window += 1
        if len(self.ready) >= HEAD_BATCH_SIZE or (final and self.ready):
            self._run_ready(self.offsets)
        low = self.grid.start(self.ready[0] if self.ready else self.next_window)
        for j in [j for j in self.cache if j < low]:
            del self.cache[j]

    def _run_ready(self, offsets: Sequence[int], frames_of: Optional[Callable] = None) -> None:
        import numpy as np  # pylint: disable=g-import-not-at-top
        frames_of = frames_of or (lambda k: [self.grid.start(k) + o for o in offsets])
        if self.mode == "per_window":
            windows = [[self.cache[j] for j in frames_of(k)] for k in self.ready]
            self.stats.frames_embedded += sum(len(w) for w in windows)
            probs = self.model.full_probabilities(windows)
        else:
            probs = self.model.head_probabilities(
                np.stack([np.stack([self.cache[j] for j in frames_of(k)]) for k in self.ready]))
        self.probabilities.extend(p.tolist() for p in probs)
        self.ready = []

    def finish(self, num_sampled: int, complete: bool = True) -> None:
        """Runs the windows left; `complete`: the stream reached its end (not broken)."""
        self.seen = num_sampled
        if num_sampled < self.grid.window_frames and self.first_window == 0 and complete:
            self._finish_short(num_sampled)
            return
        self._embed()
        self._collect(final=True)

    def _finish_short(self, num_sampled: int) -> None:
        """One window over the whole (short) video, with evaluation's choice of its frames."""
        offsets = self.model.window_offsets(num_sampled)
        jpegs = dict(self.early)
        if self.mode == "per_window":
            jpegs.update(self.cache)
        else:
            jpegs.update(self.pending)
            self.pending = [(j, jpegs[j]) for j in sorted(set(offsets)) if j not in self.cache]
            self._embed()
        if self.mode == "per_window":
            self.cache.update(jpegs)
        self.ready = [0]
        self._run_ready(offsets, frames_of=lambda k: offsets)


@dataclasses.dataclass
class WindowScan:
    """The probabilities of windows first_window, first_window + 1, ... of one video (`scan_windows`)."""

    first_window: int
    probabilities: List[List[float]]
    stream: frame_stream.StreamStats  # frames_sampled, duration: where the stream stopped
    reached_end: bool  # the stream ran to the video's end (not stopped at the range's end)
    error: Optional[PlayError] = None  # the stream broke (windows before the break are kept)


def scan_windows(model: TimelineModel, video: str, grid: segments_lib.WindowGrid, *,
                 first_window: int = 0, stop_window: Optional[int] = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, mode: str = "cached",
                 stats: Optional[TimelineStats] = None) -> WindowScan:
    """Windows [first_window, stop_window) of `video` (to its end when stop_window is None).

    The stream starts at the range's first frame on the whole video's grid
    (`frame_stream.sample_video`'s `first`, a seek) and stops after its last
    window's last frame, so a range's windows equal the same windows of one pass
    over the video. A stream that breaks before the range's first frame (a
    video that cannot be opened) raises PlayError; one that breaks inside the
    range returns the windows completed before the break, with `error`.
    """
    stats = stats if stats is not None else TimelineStats()
    runner = _WindowRunner(model, grid, mode, batch_size, stats, first_window, stop_window)
    stream = frame_stream.StreamStats()
    first = grid.start(first_window)
    stop = None if stop_window is None else grid.start(stop_window - 1) + grid.window_frames
    error = None
    began = time.perf_counter()
    try:
        for j, jpeg in frame_stream.sample_video(video, grid.rate, model.sampling,
                                                 wanted=runner.wanted, stats=stream,
                                                 first=first, stop=stop):
            runner.add(j, jpeg)
    except PlayError as err:
        if not runner.probabilities and stream.frames_sampled <= first:
            raise  # nothing of the range was read
        error = err
    reached_end = error is None and (stop is None or stream.frames_sampled < stop)
    runner.finish(stream.frames_sampled, complete=error is None)
    stats.wall_seconds += time.perf_counter() - began
    stats.frames_decoded += stream.frames_decoded
    stats.frames_sampled += max(stream.frames_sampled - first, 0)
    stats.duration = max(stats.duration, stream.duration)
    stats.windows += len(runner.probabilities)
    return WindowScan(first_window, runner.probabilities, stream, reached_end, error)


def compute_timeline(model: TimelineModel, video: str, *, hop_seconds: float = DEFAULT_HOP_SECONDS,
                     window_seconds: Optional[float] = None,
                     min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                     batch_size: int = DEFAULT_BATCH_SIZE, mode: str = "cached",
                     stats: Optional[TimelineStats] = None,
                     no_play_label: str = segments_lib.NO_PLAY,
                     min_play_seconds: Optional[float] = None) -> Dict[str, Any]:
    """The timeline of one video as the `timeline.json` dict (raises UsageError on bad input).

    mode "cached" runs the base once per used sampled frame and the head per
    window; "per_window" runs the full model on each window's frames (the
    baseline the cached mode must equal, and be faster than). Detected plays
    (`plays`) shorter than `min_play_seconds` (default: half a window) are
    dropped (`segments.detected_plays`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    grid, min_play_seconds = check_settings(model, hop_seconds, window_seconds, min_confidence,
                                            batch_size, min_play_seconds)
    stats = stats if stats is not None else TimelineStats()
    try:
        scan = scan_windows(model, video, grid, batch_size=batch_size, mode=mode, stats=stats)
        if scan.error is not None:
            raise scan.error
    except PlayError as err:
        fix = {"missing_path": "check the path",
               "no_frames": "the file holds no video frames: pass a game video"}.get(
                   err.kind, "pass a video file PyAV/FFmpeg can decode (mp4, mkv, mov, ...)")
        raise UsageError(f"{err.reason}: {fix}") from err
    stream = scan.stream
    stats.frames_decoded, stats.frames_sampled = stream.frames_decoded, stream.frames_sampled
    stats.duration, stats.windows = stream.duration, len(scan.probabilities)
    counts = {"frames_decoded": stats.frames_decoded, "frames_sampled": stream.frames_sampled,
              "frames_embedded": stats.frames_embedded}
    return assemble_timeline(model, grid, video, scan.probabilities, stream.duration,
                             stream.frames_sampled, min_confidence=min_confidence,
                             no_play_label=no_play_label, min_play_seconds=min_play_seconds,
                             counts=counts)


def check_settings(model: TimelineModel, hop_seconds: float, window_seconds: Optional[float],
                   min_confidence: float, batch_size: int, min_play_seconds: Optional[float]):
    """(window grid, min_play_seconds resolved) for these flags; UsageError if they do not fit."""
    if not 0 <= min_confidence <= 1:
        raise UsageError(f"--min_confidence must be in [0, 1], got {min_confidence}")
    if batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {batch_size}")
    grid = window_grid(model, hop_seconds, window_seconds)
    if min_play_seconds is None:
        min_play_seconds = grid.window_frames / grid.rate / 2
    if not (min_play_seconds >= 0 and math.isfinite(min_play_seconds)):
        raise UsageError(f"--min_play_seconds must be >= 0, got {min_play_seconds}")
    return grid, min_play_seconds


def assemble_timeline(model: TimelineModel, grid: segments_lib.WindowGrid, video: str,
                      probabilities: Sequence[Sequence[float]], duration: float,
                      num_sampled: int, *, min_confidence: float, no_play_label: str,
                      min_play_seconds: float, counts: Optional[Dict[str, int]] = None,
                      notes: Sequence[str] = ()) -> Dict[str, Any]:
    """The `timeline.json` dict of a video's windows 0 .. len(probabilities) - 1 (in order):
    windows, segments and detected plays (`trainer.serving.segments`)."""
    notes = list(notes)
    window_seconds = grid.window_frames / grid.rate
    if num_sampled < grid.window_frames:
        notes.append(f"the video ({duration:.2f} s) is shorter than one window "
                     f"({window_seconds:g} s): one window over all its {num_sampled} sampled frames")
    if model.frame_rate and abs(grid.rate - model.frame_rate) > 1e-6 * model.frame_rate:
        notes.append(f"windows of {window_seconds:g} s are sampled at {grid.rate:g} frames/s; the "
                     f"model was trained at {model.frame_rate:g} frames/s "
                     f"({model.record_num_frames / model.frame_rate:g} s plays)")
    stride = max(grid.window_frames // model.num_frames, 1)  # evaluation's frame stride
    steps = grid.hop_frames / stride
    if num_sampled >= grid.window_frames and abs(steps - round(steps)) > 1e-6:
        notes.append(f"windows share more of their frames (the base runs on fewer) when "
                     f"--hop_seconds is a multiple of {stride / grid.rate:g} s, the model's "
                     f"frame stride")
    windows = segments_lib.describe_windows(
        grid, probabilities, model.labels, duration, min_confidence, num_sampled=num_sampled)
    segments = segments_lib.merge_segments(windows, model.labels)
    return {
        "video": video,
        "model": model.model_path,
        "labels": model.labels,
        "window_seconds": window_seconds,
        "hop_seconds": grid.hop_frames / grid.rate,
        "frame_rate": grid.rate,
        "num_frames": model.num_frames,
        "compute_dtype": getattr(model, "compute_dtype", "float32"),
        "min_confidence": min_confidence,
        "uncertain_label": segments_lib.UNCERTAIN,
        "duration": duration,
        "notes": notes,
        "counts": dict(counts or {}, frames_sampled=num_sampled, windows=len(windows)),
        "no_play_label": no_play_label,
        "min_play_seconds": min_play_seconds,
        "segments": segments,
        "plays": segments_lib.detected_plays(segments, no_play_label, min_play_seconds),
        "windows": windows,
    }
