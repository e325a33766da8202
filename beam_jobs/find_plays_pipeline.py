"""The find-plays job as PTransforms: game videos cut into chunks -> window probabilities -> timelines.

    PlanChunks     (video) -> (game, chunk) ranges of windows: `--chunk_seconds` of sampled
                   frames each; window k belongs to the chunk holding its first frame, and a
                   chunk reads one window further (the overlap); unreadable videos to REJECTED
    ScanChunks     each chunk streamed from its first frame (a seek) on the whole video's
                   grid, the model's base once per used frame and its head per window
                   (`trainer.serving.timeline.scan_windows`, the model loaded in setup()):
                   (game, window k, probabilities) and a report per chunk; the time after a
                   break in the stream to REJECTED with its range
    AssembleGames  per game: windows deduplicated by index, sorted, and made into the
                   timeline exactly as `python -m trainer.timeline` makes it
                   (`assemble_timeline`): <game>/timeline.json, timeline.csv, plays.csv
                   (with true plays: false_plays.csv, the plays found where none was run)
    -> plays-SSSSS-of-NNNNN.csv (the detected plays of every game), eval.json and
       false_plays-SSSSS-of-NNNNN.csv (with true plays: one detection report over all games,
       and the detected plays that overlap no true play, as background rows for the records
       job), rejected-*.jsonl, find_plays.json last

A game whose stream breaks keeps the windows before the first missing one
(`assemble_game`). `build(pipeline, config)` wires it; `find_plays.py` is the
command line.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from beam_jobs.outputs import REJECTED, SHARD_TEMPLATE, WriteRejected, count, rejected, rejection
from media.video_clips import probe_duration
from media.frames import PlayError
from trainer.serving import segments as segments_lib

PLAYS_PREFIX = "plays"  # plays-SSSSS-of-NNNNN.csv, a header in every shard
FALSE_PLAYS_PREFIX = "false_plays"  # with true plays: the plays found where none was run
FALSE_PLAYS = "false_plays"  # AssembleGames' tagged output: false_plays.csv lines
CARD_NAME = "find_plays.json"
EVAL_NAME = "eval.json"
SUMMARY = "summary"  # AssembleGames' tagged output: one dict per game
SEGMENTS = "segments"  # ... and ("truth" | "found", Segment fields) for eval.json


@dataclasses.dataclass
class ModelInfo:
    """What the planning and assembling steps need of the model (from its export card, no TF)."""

    model_dir: str  # the JOB_DIR
    model_path: str  # its model.keras
    labels: List[str]
    num_frames: int
    record_num_frames: int
    frame_rate: Optional[float]
    compute_dtype: str


@dataclasses.dataclass
class FindConfig:
    """Everything the pipeline needs, resolved at launch."""

    output_dir: str
    model: ModelInfo
    grid: segments_lib.WindowGrid
    games: List[str]  # video paths
    truth: Optional[Dict[str, List[Dict[str, Any]]]]  # video file name -> true plays
    chunk_seconds: float
    min_confidence: float
    min_play_seconds: float
    no_play_label: str
    frames_per_batch: int = 32
    num_shards: int = 0
    about: Dict[str, Any] = dataclasses.field(default_factory=dict)  # for the card

    @property
    def chunk_frames(self) -> int:
        return max(1, int(round(self.chunk_seconds * self.grid.rate)))


def game_name(video: str) -> str:
    """A game's id and folder name: the video's file name without its extension."""
    from trainer.serving import timeline_outputs  # pylint: disable=g-import-not-at-top
    return timeline_outputs.game_id_of(video)


# ----------------------------------------------------------------------------- chunks


def plan_chunks(grid: segments_lib.WindowGrid, chunk_frames: int,
                duration: Optional[float]) -> List[Tuple[int, int, Optional[int]]]:
    """(chunk, first window, stop window or None: to the end) of a video of `duration` seconds.

    Chunk c holds the windows whose first sampled frame is in
    [c * chunk_frames, (c + 1) * chunk_frames); the last one runs to the
    video's end, whatever its length turns out to be.
    """
    sampled = 0 if duration is None else duration * grid.rate
    n = max(1, int(math.ceil(sampled / chunk_frames - 1e-9)))
    chunks, c = [], 0
    for i in range(n):
        first = grid.first_window_at(i * chunk_frames)
        stop = None if i == n - 1 else grid.first_window_at((i + 1) * chunk_frames)
        if stop is None or stop > first:
            chunks.append((c, first, stop))
            c += 1
    return chunks


class _PlanFn(beam.DoFn):
    """video -> (video, (chunk, first, stop, chunks)) per chunk, or its rejection."""

    def __init__(self, grid: segments_lib.WindowGrid, chunk_frames: int):
        self._grid, self._chunk_frames = grid, chunk_frames

    def process(self, video: str):
        try:
            duration = probe_duration(video)
        except PlayError as err:
            count("games_rejected")
            yield rejected(dict(rejection(game_name(video), video, err.reason, err.kind),
                                start=0.0, end=None))
            return
        chunks = plan_chunks(self._grid, self._chunk_frames, duration)
        for c, first, stop in chunks:
            yield video, (c, first, stop, len(chunks))


def _seconds(grid: segments_lib.WindowGrid, window: Optional[int]) -> Optional[float]:
    return None if window is None else grid.seconds(grid.start(window))


class _ScanFn(beam.DoFn):
    """(video, chunk) -> (video, ("window", k, probabilities)) per window and (video, ("chunk",
    report)); the part of the chunk that could not be read to REJECTED."""

    def __init__(self, config: FindConfig):
        self._config = config
        self._model = None

    def setup(self):
        from trainer.serving.timeline_model import TimelineModel  # pylint: disable=g-import-not-at-top
        info = self._config.model
        self._model = TimelineModel(info.model_dir, info.compute_dtype)

    def process(self, element):
        from trainer.serving import timeline as timeline_lib  # pylint: disable=g-import-not-at-top
        video, (c, first, stop, _) = element
        grid = self._config.grid
        report = {"chunk": c, "first_window": first, "stop_window": stop, "windows": 0,
                  "reached_end": False, "num_sampled": 0, "duration": 0.0, "error": ""}
        try:
            scan = timeline_lib.scan_windows(self._model, video, grid, first_window=first,
                                             stop_window=stop,
                                             batch_size=self._config.frames_per_batch)
        except PlayError as err:
            scan, error = None, err
        else:
            error = scan.error
            for k, probs in enumerate(scan.probabilities, first):
                yield video, ("window", k, [float(p) for p in probs])
            report.update(windows=len(scan.probabilities), reached_end=scan.reached_end,
                          num_sampled=scan.stream.frames_sampled,
                          duration=scan.stream.duration)
        count("chunks_scanned")
        count("windows_scanned", report["windows"])
        if error is not None:
            report["error"] = error.reason
            count("chunks_broken")
            lost = first + report["windows"]
            yield rejected(dict(
                rejection(f"{game_name(video)}:chunk{c:04d}", video,
                          f"{error.reason} (windows from {lost} not read)", error.kind),
                start=_seconds(grid, lost), end=_seconds(grid, stop), chunk=c))
        yield video, ("chunk", report)


# ----------------------------------------------------------------------------- games


def assemble_game(model: ModelInfo, grid: segments_lib.WindowGrid, video: str,
                  elements: Iterable[Tuple], *, min_confidence: float, no_play_label: str,
                  min_play_seconds: float) -> Tuple[Optional[Dict[str, Any]], Dict[str, Any]]:
    """(timeline.json dict or None, summary) of one game from its windows and chunk reports.

    Windows are keyed by index (a retried chunk's repeats are dropped) and sorted.
    When every chunk read its part and one reached the video's end, the
    timeline is the single-process timeline's; otherwise it holds the windows
    before the first missing one, ending where the last of them ends.
    """
    from trainer.serving import timeline as timeline_lib  # pylint: disable=g-import-not-at-top
    windows: Dict[int, List[float]] = {}
    reports: Dict[int, Dict[str, Any]] = {}
    for element in elements:
        if element[0] == "window":
            windows.setdefault(element[1], element[2])
        else:
            reports.setdefault(element[1]["chunk"], element[1])
    ends = [r for _, r in sorted(reports.items()) if r["reached_end"]]
    broken = [r for r in reports.values() if r["error"]]
    kept = 0
    while kept in windows:
        kept += 1
    summary = {"game": game_name(video), "video": video, "chunks": len(reports),
               "chunks_broken": len(broken), "windows": len(windows), "plays": 0,
               "complete": False}
    notes: List[str] = []
    if ends and not broken and kept == len(windows) == grid.count(ends[0]["num_sampled"]):
        duration, num_sampled = ends[0]["duration"], ends[0]["num_sampled"]
        summary["complete"] = True
    elif kept:
        num_sampled = grid.start(kept - 1) + grid.window_frames
        duration = grid.seconds(num_sampled)
        reasons = "; ".join(sorted({r["error"] for r in broken})) or "a chunk is missing"
        notes.append(f"the video could not be read to its end ({reasons}): the timeline holds "
                     f"its first {kept} windows, up to {duration:.2f} s (see rejected-*.jsonl)")
    else:
        return None, summary
    timeline = timeline_lib.assemble_timeline(
        model, grid, video, [windows[k] for k in range(kept)], duration, num_sampled,
        min_confidence=min_confidence, no_play_label=no_play_label,
        min_play_seconds=min_play_seconds, notes=notes,
        counts={"chunks": len(reports), "chunks_broken": len(broken)})
    summary.update(windows=kept, plays=len(timeline["plays"]), duration=duration)
    return timeline, summary


def _plays_csv_line(row: Sequence[str]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="").writerow(row)
    return text.getvalue()


class _AssembleFn(beam.DoFn):
    """(video, [windows and reports]) -> plays.csv lines; its files; SUMMARY, SEGMENTS, REJECTED."""

    def __init__(self, config: FindConfig):
        self._config = config

    def process(self, grouped):
        from trainer.serving import timeline_outputs  # pylint: disable=g-import-not-at-top
        cfg = self._config
        video, elements = grouped
        timeline, summary = assemble_game(
            cfg.model, cfg.grid, video, elements, min_confidence=cfg.min_confidence,
            no_play_label=cfg.no_play_label, min_play_seconds=cfg.min_play_seconds)
        if timeline is None:
            count("games_rejected")
            yield rejected(dict(rejection(summary["game"], video, "no window of the video could "
                                          "be read", "no_timeline"), start=0.0, end=None))
            yield pvalue.TaggedOutput(SUMMARY, summary)
            return
        truth = (cfg.truth or {}).get(video.replace("\\", "/").rsplit("/", 1)[-1])
        if truth:
            timeline["truth"] = timeline_outputs.score_plays(timeline, truth)
            for play in truth:
                yield pvalue.TaggedOutput(SEGMENTS, ("truth", summary["game"], play["start"],
                                                     play["end"], play["label"], 1.0))
        if cfg.truth is not None:
            for play in timeline["plays"]:
                yield pvalue.TaggedOutput(SEGMENTS, ("found", summary["game"], play["start"],
                                                     play["end"], play["label"],
                                                     play["confidence"]))
        timeline_outputs.write_outputs(timeline, FileSystems.join(cfg.output_dir,
                                                                  summary["game"]),
                                       plays=truth, png=False)
        count("games_scanned")
        count("plays_found", len(timeline["plays"]))
        yield pvalue.TaggedOutput(SUMMARY, summary)
        for row in timeline_outputs.plays_rows(timeline):
            yield _plays_csv_line(row)
        for row in timeline_outputs.false_plays_rows(timeline, truth) if truth else ():
            yield pvalue.TaggedOutput(FALSE_PLAYS, _plays_csv_line(row))


class _WriteEvalFn(beam.DoFn):
    """All games' true and found plays -> eval.json (one detection report); yields its path."""

    def __init__(self, output_dir: str, about: Dict[str, Any]):
        self._path = FileSystems.join(output_dir, EVAL_NAME)
        self._about = dict(about)

    def process(self, gathered):
        from trainer.evaluation import detection  # pylint: disable=g-import-not-at-top
        gathered = sorted(gathered)  # the report does not depend on the order games arrived in
        truth = [detection.Segment(*fields) for kind, *fields in gathered if kind == "truth"]
        found = [detection.Segment(*fields) for kind, *fields in gathered if kind == "found"]
        if not truth:
            return
        report = detection.detection_report(truth, found)
        report["num_false_plays"] = len(detection.false_detections(truth, found))
        report.update(self._about)
        with FileSystems.create(self._path) as f:
            f.write(json.dumps(report, indent=1, sort_keys=True).encode("utf-8"))
        yield self._path


def make_card(config: FindConfig, summaries: List[Dict[str, Any]],
              kinds: List[Tuple[str, int]], eval_files: List[str]) -> Dict[str, Any]:
    """find_plays.json: counts over the games, the model and the settings."""
    games = sorted(summaries, key=lambda s: s["game"])
    scanned = [s for s in games if s["windows"]]
    card = dict(config.about)
    card.update({
        "num_input": len(config.games),  # = num_games + num_games_rejected
        "num_games": len(scanned),
        "num_games_partial": sum(1 for s in scanned if not s["complete"]),
        "num_games_rejected": len(config.games) - len(scanned),
        "num_chunks": sum(s["chunks"] for s in games),
        "num_chunks_broken": sum(s["chunks_broken"] for s in games),
        "num_windows": sum(s["windows"] for s in scanned),
        "num_plays": sum(s["plays"] for s in scanned),
        "num_rejected": sum(n for _, n in kinds),
        "rejected_reasons": dict(sorted(kinds)),
        "plays_files": f"{PLAYS_PREFIX}-*-of-*.csv",
        "false_plays_files": f"{FALSE_PLAYS_PREFIX}-*-of-*.csv" if config.truth is not None else "",
        "eval_file": EVAL_NAME if eval_files else "",
        "games": [{k: s[k] for k in ("game", "windows", "plays", "complete")} for s in scanned],
    })
    return card


class _WriteCardFn(beam.DoFn):
    def __init__(self, config: FindConfig):
        self._config = config

    def process(self, unused, summaries, kinds, files_written, eval_files):
        del unused, files_written  # `files_written` only orders this step after every write
        card = make_card(self._config, summaries, kinds, eval_files)
        path = FileSystems.join(self._config.output_dir, CARD_NAME)
        with FileSystems.create(path) as f:
            f.write(json.dumps(card, indent=1).encode("utf-8"))
        yield path


def build(pipeline: beam.Pipeline, config: FindConfig):
    """Adds the find-plays job to `pipeline`; returns the PCollection holding the card's path."""
    from trainer.serving import timeline_outputs  # pylint: disable=g-import-not-at-top
    planned = (pipeline
               | "Games" >> beam.Create(sorted(config.games))
               | "PlanChunks" >> beam.ParDo(_PlanFn(config.grid, config.chunk_frames))
               .with_outputs(REJECTED, main="chunks"))
    scanned = (planned["chunks"]
               | "SpreadChunks" >> beam.Reshuffle()
               | "ScanChunks" >> beam.ParDo(_ScanFn(config)).with_outputs(REJECTED, main="windows"))
    games = (scanned["windows"]
             | "ByGame" >> beam.GroupByKey()
             | "AssembleGames" >> beam.ParDo(_AssembleFn(config))
             .with_outputs(REJECTED, SUMMARY, SEGMENTS, FALSE_PLAYS, main="plays"))
    plays_files = games["plays"] | "WritePlays" >> beam.io.WriteToText(
        FileSystems.join(config.output_dir, PLAYS_PREFIX), file_name_suffix=".csv",
        num_shards=config.num_shards, shard_name_template=SHARD_TEMPLATE,
        header=",".join(timeline_outputs.PLAYS_COLUMNS))
    if config.truth is not None:  # hard negatives for the records job, season-wide
        false_files = games[FALSE_PLAYS] | "WriteFalsePlays" >> beam.io.WriteToText(
            FileSystems.join(config.output_dir, FALSE_PLAYS_PREFIX), file_name_suffix=".csv",
            num_shards=config.num_shards, shard_name_template=SHARD_TEMPLATE,
            header=",".join(timeline_outputs.FALSE_PLAYS_COLUMNS))
        plays_files = (plays_files, false_files) | "PlaysFiles" >> beam.Flatten()
    eval_files = (games[SEGMENTS]
                  | "GatherSegments" >> beam.combiners.ToList()
                  | "WriteEvaluation" >> beam.ParDo(_WriteEvalFn(config.output_dir, {
                      "model": config.model.model_dir})))
    rejections = ((planned[REJECTED], scanned[REJECTED], games[REJECTED])
                  | "AllRejected" >> beam.Flatten())
    rejected_files = rejections | "WriteRejected" >> WriteRejected(config.output_dir)
    kinds = (rejections
             | "Kinds" >> beam.Map(lambda entry: entry["kind"])
             | "CountKinds" >> beam.combiners.Count.PerElement())
    written = (plays_files, eval_files, rejected_files) | "AllFiles" >> beam.Flatten()
    return (pipeline
            | "Once" >> beam.Create([None])
            | "WriteCard" >> beam.ParDo(
                _WriteCardFn(config), summaries=pvalue.AsList(games[SUMMARY]),
                kinds=pvalue.AsList(kinds), files_written=pvalue.AsList(written),
                eval_files=pvalue.AsList(eval_files)))
