"""Plays found and labelled over a whole game video: a timeline.

    python -m trainer.timeline --model=JOB_DIR VIDEO [--output_dir=DIR] [--hop_seconds=0.5]
        [--window_seconds=S] [--min_confidence=0.5] [--plays=plays.csv]

The video is decoded once, forward (`media.frame_stream`), and resampled at the
rate the model's records were made at (the export's `frame_rate`; with
`--window_seconds`, `record_num_frames / window_seconds`), each frame resized and
JPEG-encoded as the records job stores it. A window is one record's worth of
sampled frames (`record_num_frames`), every `--hop_seconds`; of each window the
model sees the frames evaluation picks from a record (`trainer.data.clips.frame_indices`,
centred and evenly spaced). The model's own preprocessing and base (its
`frame_features` layer: the frozen base of a model trained from cached features,
or a fine-tuned one) run once per sampled frame that some window uses, in
batches; the features wait in a buffer that holds one window's span, and the
head (`trainer.modeling.model.split_model`) runs on each window's features. Memory
therefore stays the same for any length of video (plus a few numbers per window
for the output).

How windows map to time and merge into segments (`trainer.serving.segments`): each
window owns the time nearest its centre, so the owned spans tile the video from
0 s to its end; consecutive windows with the same top label make one segment. A
window whose best probability is below `--min_confidence` is marked
`"uncertain": true` in `windows`, and uncertain windows form segments labelled
`"uncertain"`. A video shorter than one window gets one window over all its
frames, one segment, and a note.

Outputs in DIR (default: VIDEO's name without extension + `_timeline/`):
`timeline.json` (video, model, labels, window and hop seconds, sampling rate,
segments, windows with their probabilities in label order, notes, counts),
`timeline.csv` (one row per segment) and `timeline.png` (`trainer.serving.timeline_plot`).
With `--plays` (a records-job manifest with start/end, e.g. the demo games'
`plays.csv`; rows of other videos are ignored) the true plays are drawn too and
`play_majority_accuracy=` is printed: the share of true plays whose most
overlapping segment has their label. On stdout: `real_time_factor=` (video
seconds per wall-clock second, model loading excluded) and `frames_per_s=`
(sampled frames per wall-clock second).

Exit status 0; 2 with one `error:` line for an unreadable or empty video, a
model folder without an export, or a hop or window that does not fit the model.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import posixpath
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from media import frame_stream  # noqa: E402
from media.frames import PlayError  # noqa: E402
from schemas import sampling  # noqa: E402
from schemas.errors import EXIT_USAGE, UsageError, one_line  # noqa: E402
from trainer.serving import segments as segments_lib  # noqa: E402

DEFAULT_HOP_SECONDS = 0.5
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_BATCH_SIZE = 32  # sampled frames per base call
HEAD_BATCH_SIZE = 64  # windows per head call
JSON_NAME, CSV_NAME, PNG_NAME = "timeline.json", "timeline.csv", "timeline.png"
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


class TimelineModel:
    """An exported model split into its per-frame part and its head, with its sampling settings."""

    def __init__(self, model_dir: str):
        import keras  # pylint: disable=g-import-not-at-top
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        from backbone import vgg16 as frame_features  # noqa: F401  pylint: disable=unused-import,g-import-not-at-top
        from trainer.serving import export  # pylint: disable=g-import-not-at-top
        from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
        try:
            self.metadata = export.load_metadata(model_dir)
        except (OSError, tf.errors.OpError) as err:
            raise UsageError(f"cannot load model {model_dir!r}: {one_line(err)} (train and export "
                             f"one with python -m trainer.task --job_dir=...)") from err
        path = os.path.join(model_dir.rstrip("/"), export.MODEL_FILENAME)
        if not tf.io.gfile.exists(path):
            path = posixpath.join(posixpath.dirname(model_dir.rstrip("/")), export.MODEL_FILENAME)
        if not tf.io.gfile.exists(path):
            raise UsageError(f"no {export.MODEL_FILENAME} in {model_dir!r}: pass the training "
                             f"job's JOB_DIR (the timeline needs the Keras model beside saved_model/)")
        self.model_path = path
        try:
            self.model = keras.models.load_model(path, compile=False, safe_mode=True)
        except (OSError, ValueError, TypeError) as err:  # a truncated or foreign model file
            raise UsageError(f"cannot load {path!r}: {one_line(err)} (re-export the model with "
                             f"python -m trainer.task)") from err
        self.frame_model, self.head = model_lib.split_model(self.model)
        self.labels: List[str] = [str(label) for label in self.metadata["labels"]]
        self.height, self.width = (int(v) for v in self.metadata["image_size"])
        self.num_frames = int(self.metadata["num_frames"])
        self.record_num_frames = int(self.metadata["record_num_frames"])
        rate = self.metadata.get("frame_rate")
        self.frame_rate: Optional[float] = float(rate) if rate else None
        self.resize_mode = self.metadata.get("resize_mode", sampling.DEFAULT_RESIZE_MODE)
        self.jpeg_quality = int(self.metadata.get("jpeg_quality", sampling.DEFAULT_JPEG_QUALITY))
        self._features_fn = tf.function(self._features, reduce_retracing=True)
        self._head_fn = tf.function(lambda x: self.head(x, training=False), reduce_retracing=True)
        self._full_fn = tf.function(self._full, reduce_retracing=True)

    def _decode(self, jpegs):
        from trainer.data import clips as clips_lib  # pylint: disable=g-import-not-at-top
        return clips_lib.decode_frames(jpegs, self.height, self.width)

    def _features(self, jpegs):
        return self.frame_model(self._decode(jpegs), training=False)

    def _full(self, jpegs):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        windows = tf.shape(jpegs)[0]
        frames = self._decode(tf.reshape(jpegs, [-1]))
        frames = tf.reshape(frames, [windows, self.num_frames, self.height, self.width, 3])
        return self.model(frames, training=False)

    def features(self, jpegs: Sequence[bytes]):
        """Per-frame features [N, C] (numpy float32) of N JPEG frames."""
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        return self._features_fn(tf.constant(list(jpegs), tf.string)).numpy().astype("float32")

    def head_probabilities(self, features):
        """Probabilities [B, labels] of windows' stacked features [B, num_frames, C]."""
        return self._head_fn(features).numpy()

    def full_probabilities(self, windows: Sequence[Sequence[bytes]]):
        """Probabilities [B, labels] of the full model on windows of `num_frames` JPEGs each."""
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        return self._full_fn(tf.constant([list(w) for w in windows], tf.string)).numpy()

    def window_offsets(self, total: int) -> List[int]:
        """Which of a window's `total` sampled frames the model sees (as evaluation picks them)."""
        from trainer.data import clips as clips_lib  # pylint: disable=g-import-not-at-top
        return [int(i) for i in clips_lib.frame_indices(total, self.num_frames, training=False).numpy()]


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
                 batch_size: int, stats: TimelineStats):
        self.model, self.grid, self.mode, self.stats = model, grid, mode, stats
        self.batch_size = batch_size
        self.offsets = model.window_offsets(grid.window_frames)
        self.seen = 0  # sampled frames the stream has reached
        self.pending: List[tuple] = []  # (j, jpeg) waiting for the base
        self.cache: Dict[int, Any] = {}  # j -> features (cached) or jpeg (per_window)
        self.early: Dict[int, bytes] = {}  # unused frames of the first window, for a short video
        self.next_window = 0
        self.ready: List[int] = []  # windows whose frames are all in the cache
        self.probabilities: List[List[float]] = []
        self.embedded_indices: List[int] = []

    def wanted(self, j: int) -> bool:
        """Called for every sampled frame in order: whether the stream should encode it."""
        self.seen = j + 1
        if j >= self.grid.window_frames:
            self.early.clear()
        return self.needed(j) or j < self.grid.window_frames

    def needed(self, j: int) -> bool:
        return any(j - self.grid.start(k) in self.offsets for k in self.grid.windows_holding(j))

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
        while True:
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

    def finish(self, num_sampled: int) -> None:
        self.seen = num_sampled
        if num_sampled < self.grid.window_frames:
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


def compute_timeline(model: TimelineModel, video: str, *, hop_seconds: float = DEFAULT_HOP_SECONDS,
                     window_seconds: Optional[float] = None,
                     min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                     batch_size: int = DEFAULT_BATCH_SIZE, mode: str = "cached",
                     stats: Optional[TimelineStats] = None) -> Dict[str, Any]:
    """The timeline of one video as the `timeline.json` dict (raises UsageError on bad input).

    mode "cached" runs the base once per used sampled frame and the head per
    window; "per_window" runs the full model on each window's frames (the
    baseline the cached mode must equal, and be faster than).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0 <= min_confidence <= 1:
        raise UsageError(f"--min_confidence must be in [0, 1], got {min_confidence}")
    if batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {batch_size}")
    grid = window_grid(model, hop_seconds, window_seconds)
    stats = stats if stats is not None else TimelineStats()
    runner = _WindowRunner(model, grid, mode, batch_size, stats)
    stream = frame_stream.StreamStats()
    began = time.perf_counter()
    try:
        for j, jpeg in frame_stream.sample_video(
                video, grid.rate, (model.height, model.width), resize_mode=model.resize_mode,
                jpeg_quality=model.jpeg_quality, wanted=runner.wanted, stats=stream):
            runner.add(j, jpeg)
    except PlayError as err:
        fix = {"missing_path": "check the path",
               "no_frames": "the file holds no video frames: pass a game video"}.get(
                   err.kind, "pass a video file PyAV/FFmpeg can decode (mp4, mkv, mov, ...)")
        raise UsageError(f"{err.reason}: {fix}") from err
    runner.finish(stream.frames_sampled)
    stats.wall_seconds = time.perf_counter() - began
    stats.frames_decoded, stats.frames_sampled = stream.frames_decoded, stream.frames_sampled
    stats.duration, stats.windows = stream.duration, len(runner.probabilities)

    num_sampled = stream.frames_sampled
    notes = []
    window_seconds = grid.window_frames / grid.rate
    if num_sampled < grid.window_frames:
        notes.append(f"the video ({stream.duration:.2f} s) is shorter than one window "
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
        grid, runner.probabilities, model.labels, stream.duration, min_confidence,
        num_sampled=num_sampled)
    return {
        "video": video,
        "model": model.model_path,
        "labels": model.labels,
        "window_seconds": window_seconds,
        "hop_seconds": grid.hop_frames / grid.rate,
        "frame_rate": grid.rate,
        "num_frames": model.num_frames,
        "min_confidence": min_confidence,
        "uncertain_label": segments_lib.UNCERTAIN,
        "duration": stream.duration,
        "notes": notes,
        "counts": {"frames_decoded": stats.frames_decoded, "frames_sampled": num_sampled,
                   "frames_embedded": stats.frames_embedded, "windows": len(windows)},
        "segments": segments_lib.merge_segments(windows, model.labels),
        "windows": windows,
    }


def read_plays(manifest: str, video: str) -> List[Dict[str, Any]]:
    """The rows of a records-job manifest (CSV with start/end) whose path names `video`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
        with tf.io.gfile.GFile(manifest, "r") as f:
            rows = list(csv.DictReader(f))
    except (OSError, tf.errors.OpError) as err:
        raise UsageError(f"cannot read --plays {manifest!r}: {one_line(err)}") from err
    name = posixpath.basename(video)
    plays = []
    for number, row in enumerate(rows, 2):
        if posixpath.basename(row.get("path") or "") != name:
            continue
        try:
            plays.append({"play_id": row.get("play_id", ""), "label": row["label"],
                          "start": float(row["start"]), "end": float(row["end"])})
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"--plays {manifest!r} row {number}: needs label, start and end "
                             f"({one_line(err)})") from err
    if not plays:
        raise UsageError(f"--plays {manifest!r} has no row whose path is {name!r}")
    return plays


def score_plays(timeline: Dict[str, Any], plays: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Each true play's covering segment (majority overlap) and whether its label is right."""
    scored = []
    for play in plays:
        found = segments_lib.majority_label(timeline["segments"], play["start"], play["end"])
        scored.append(dict(play, found=found, correct=found == play["label"]))
    correct = sum(p["correct"] for p in scored)
    return {"plays": scored, "correct": correct, "n": len(scored),
            "play_majority_accuracy": correct / len(scored) if scored else float("nan")}


def write_outputs(timeline: Dict[str, Any], output_dir: str,
                  plays: Optional[Sequence[Dict[str, Any]]] = None) -> None:
    """timeline.json, timeline.csv and timeline.png into `output_dir` (local or gs://)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from trainer.serving import timeline_plot  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(posixpath.join(output_dir, JSON_NAME), "w") as f:
        f.write(json.dumps(timeline, indent=1))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["start", "end", "label", "confidence", "first_window", "last_window"])
    for s in timeline["segments"]:
        writer.writerow([f"{s['start']:.3f}", f"{s['end']:.3f}", s["label"],
                         f"{s['confidence']:.4f}", s["first_window"], s["last_window"]])
    with tf.io.gfile.GFile(posixpath.join(output_dir, CSV_NAME), "w") as f:
        f.write(text.getvalue())
    with tf.io.gfile.GFile(posixpath.join(output_dir, PNG_NAME), "wb") as f:
        f.write(timeline_plot.render_png(timeline, plays))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.timeline",
        description="Find and label the plays of a whole game video with an exported model.")
    parser.add_argument("--model", required=True, help="the training JOB_DIR (local or gs://)")
    parser.add_argument("video", metavar="VIDEO", help="the game video (mp4, mkv, mov, ...)")
    parser.add_argument("--output_dir", default=None,
                        help="where timeline.json/.csv/.png go (default: VIDEO without its "
                             "extension + _timeline/)")
    parser.add_argument("--hop_seconds", type=float, default=DEFAULT_HOP_SECONDS,
                        help=f"seconds between window starts (default {DEFAULT_HOP_SECONDS})")
    parser.add_argument("--window_seconds", type=float, default=None,
                        help="window length (default: the model's record_num_frames / frame_rate)")
    parser.add_argument("--min_confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                        help="windows whose best probability is below this are 'uncertain' "
                             f"(default {DEFAULT_MIN_CONFIDENCE})")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"frames per base call (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--plays", default=None,
                        help="a manifest with the video's true plays (label,path,start,end; e.g. "
                             "the demo games' plays.csv): drawn, and scored")
    return parser.parse_args(argv)


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status."""
    args = parse_args(argv)
    try:
        model = TimelineModel(args.model)
        plays = read_plays(args.plays, args.video) if args.plays else None
        stats = TimelineStats()
        timeline = compute_timeline(model, args.video, hop_seconds=args.hop_seconds,
                                    window_seconds=args.window_seconds,
                                    min_confidence=args.min_confidence,
                                    batch_size=args.batch_size, stats=stats)
        output_dir = args.output_dir or os.path.splitext(args.video)[0] + "_timeline"
        if plays is not None:
            timeline["truth"] = score_plays(timeline, plays)
        write_outputs(timeline, output_dir, plays)
    except UsageError as err:
        print(f"timeline: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    for note in timeline["notes"]:
        print(f"note: {note}")
    found = [s for s in timeline["segments"] if s["label"] != segments_lib.UNCERTAIN]
    print(f"{len(timeline['segments'])} segments ({len(found)} labelled) from "
          f"{stats.windows} windows over {stats.duration:.1f} s -> {output_dir}")
    print(f"windows={stats.windows} frames_sampled={stats.frames_sampled} "
          f"frames_embedded={stats.frames_embedded}")
    if plays is not None:
        truth = timeline["truth"]
        print(f"play_majority_accuracy={truth['play_majority_accuracy']:.4f} "
              f"(n={truth['n']})")
    print(f"real_time_factor={stats.real_time_factor:.2f}")
    print(f"frames_per_s={stats.frames_per_s:.1f}")
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
