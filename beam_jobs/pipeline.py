"""The records job as PTransforms: plays -> sampled JPEG frames -> sharded TFRecords.

    ReadPlays -> DropDuplicatePlays -> (split, label checks)
      -> SampleAndEncode           plays that are a whole clip (folder, video, demo play)
       + CutGameVideos             plays that are a time range of a video, grouped by video
      -> WriteSplitShards          <split>-SSSSS-of-NNNNN.tfrecord[.gz]
      -> WriteRejected             rejected-SSSSS-of-NNNNN.jsonl (every play not written)
      -> WriteCard                 dataset.json, once every file above is written

`build(pipeline, config)` wires them; `make_records.py` is the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs import splits as splits_lib
from media import frames, video_clips
from beam_jobs.plays import PlaySpec, read_plays, rejection
from schemas import dataset_card, sampling

REJECTED = "rejected"
PLAYS = "plays"
METRICS_NAMESPACE = "playclips"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"


@dataclasses.dataclass
class JobConfig:
    """Everything the pipeline needs (built from the CLI flags by make_records.py)."""

    output_dir: str
    input: str = ""  # manifest or folder tree; "" = demo plays
    labels: Optional[List[str]] = None  # fixed vocabulary, else the sorted labels seen
    num_frames: int = sampling.DEFAULT_NUM_FRAMES
    height: int = sampling.DEFAULT_FRAME_SIZE
    width: int = sampling.DEFAULT_FRAME_SIZE
    resize_mode: str = sampling.DEFAULT_RESIZE_MODE
    pad_short: str = ""
    jpeg_quality: int = sampling.DEFAULT_JPEG_QUALITY
    frame_rate: float = sampling.DEFAULT_FRAME_RATE
    splits: Dict[str, float] = dataclasses.field(
        default_factory=lambda: splits_lib.parse_splits(splits_lib.DEFAULT_SPLITS))
    num_shards: int = 0
    compression: str = "none"
    demo_plays: int = 330
    demo_seed: int = 0
    demo_profile: str = "default"  # media.demo_plays.PROFILES
    demo_label_weights: Dict[str, int] = dataclasses.field(default_factory=dict)  # {}: balanced
    video_chunk_seconds: float = 600.0  # plays of a video are cut in groups by start time; 0: one group
    args: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shard_pattern(self) -> str:
        return "{split}-*-of-*" + (".tfrecord.gz" if self.compression == "gzip" else ".tfrecord")


def _counter(name: str) -> None:
    Metrics.counter(METRICS_NAMESPACE, name).inc()


class _RouteItemsFn(beam.DoFn):
    """PlaySpecs to the main output, reader rejections to REJECTED."""

    def process(self, item):
        if isinstance(item, PlaySpec):
            yield item
        else:
            yield pvalue.TaggedOutput(REJECTED, item)


class _DemoSpecFn(beam.DoFn):
    """Demo play index -> PlaySpec with path demo://<seed>/<index>."""

    def __init__(self, seed: int, profile: str = "default", label_weights=None):
        self._seed = seed
        self._profile = profile
        self._weights = dict(label_weights or {})

    def setup(self):
        from media import demo_plays  # pylint: disable=g-import-not-at-top
        self._render = demo_plays.render_play
        self._path = demo_plays.play_path

    def process(self, index: int):
        # Only the ids and the label are needed here: render a 2-frame play.
        play = self._render(self._seed, index, num_frames=2, profile=self._profile,
                            label_weights=self._weights)
        balanced = len(set(self._weights.values())) <= 1
        path = self._path(self._seed, index, self._profile, "" if balanced else play.label)
        yield PlaySpec(play_id=play.play_id, label=play.label, game_id=play.game_id, path=path,
                       frame_rate=float(play.frame_rate), row=index + 1)


class ReadPlays(beam.PTransform):
    """PlaySpecs (main output) and rejections (REJECTED) of a manifest, a folder tree or demo plays."""

    def __init__(self, input_path: str = "", demo_plays: int = 0, demo_seed: int = 0,
                 demo_profile: str = "default", demo_label_weights=None):
        super().__init__()
        self._demo_set = (demo_profile, demo_label_weights)
        self._input = input_path
        self._demo_plays = demo_plays
        self._demo_seed = demo_seed

    def expand(self, pbegin):
        if self._input:
            items = (pbegin
                     | "Input" >> beam.Create([self._input])
                     | "ReadSpecs" >> beam.FlatMap(read_plays))
        else:
            items = (pbegin
                     | "DemoIndices" >> beam.Create(range(self._demo_plays))
                     | "DemoSpecs" >> beam.ParDo(_DemoSpecFn(self._demo_seed, *self._demo_set)))
        return items | "Route" >> beam.ParDo(_RouteItemsFn()).with_outputs(REJECTED, main=PLAYS)


class _KeepFirstFn(beam.DoFn):
    """(play_id, specs) -> the spec of the lowest row; the others are rejected."""

    def process(self, keyed: Tuple[str, Iterable[PlaySpec]]):
        play_id, specs = keyed
        ordered = sorted(specs, key=lambda s: (s.row, s.path, s.label))
        kept = ordered[0]
        yield kept
        for dup in ordered[1:]:
            yield pvalue.TaggedOutput(REJECTED, rejection(
                play_id, dup.path, f"duplicate play_id {play_id!r} (kept row {kept.row}: "
                f"{_where(kept)})", "duplicate_play_id", dup.row))


def _where(spec: PlaySpec) -> str:
    """The spec's path, and its time range when it has one."""
    if spec.has_range:
        return f"{spec.path} {spec.start:.3f}-{spec.end:.3f} s"
    return spec.path


class DropDuplicatePlays(beam.PTransform):
    """One spec per play_id, the lowest row deterministically; the rest to REJECTED."""

    def expand(self, plays):
        return (plays
                | "KeyById" >> beam.Map(lambda spec: (spec.play_id, spec))
                | "GroupById" >> beam.GroupByKey()
                | "KeepFirst" >> beam.ParDo(_KeepFirstFn()).with_outputs(REJECTED, main=PLAYS))


class _AssignSplitFn(beam.DoFn):
    """Sets each spec's split (column value, else stable hash); rejects unknown splits/labels."""

    def __init__(self, splits: Dict[str, float], labels: Optional[Sequence[str]]):
        self._splits = dict(splits)
        self._labels = set(labels) if labels else None

    def process(self, spec: PlaySpec):
        if self._labels is not None and spec.label not in self._labels:
            yield pvalue.TaggedOutput(REJECTED, rejection(
                spec.play_id, spec.path, f"unknown label {spec.label!r} (not in --label_vocabulary)",
                "unknown_label", spec.row))
            return
        if spec.split:
            if spec.split not in self._splits:
                yield pvalue.TaggedOutput(REJECTED, rejection(
                    spec.play_id, spec.path, f"unknown split {spec.split!r} (splits are "
                    f"{', '.join(self._splits)})", "unknown_split", spec.row))
                return
            yield spec
            return
        split = splits_lib.assign_split(spec.group_key, self._splits)
        yield dataclasses.replace(spec, split=split)


class AssignSplits(beam.PTransform):
    """Split per play (grouped by game) and the label check; rejections to REJECTED."""

    def __init__(self, splits: Dict[str, float], labels: Optional[Sequence[str]] = None):
        super().__init__()
        self._splits = splits
        self._labels = labels

    def expand(self, plays):
        return plays | "Assign" >> beam.ParDo(
            _AssignSplitFn(self._splits, self._labels)).with_outputs(REJECTED, main=PLAYS)


class LabelVocabulary(beam.PTransform):
    """The label list as a one-element PCollection: fixed, or the sorted labels seen."""

    def __init__(self, labels: Optional[Sequence[str]] = None):
        super().__init__()
        self._labels = list(labels) if labels else None

    def expand(self, plays):
        if self._labels is not None:
            return plays.pipeline | "FixedLabels" >> beam.Create([self._labels])
        return (plays
                | "Labels" >> beam.Map(lambda spec: spec.label)
                | "Distinct" >> beam.Distinct()
                | "ToList" >> beam.combiners.ToList()
                | "Sort" >> beam.Map(sorted))


class _EncodeFn(beam.DoFn):
    """Base of the DoFns that turn sampled plays into (split, label, serialized record)."""

    def __init__(self, config: JobConfig):
        self._config = config

    def setup(self):
        # Records are serialized without TensorFlow (schemas.example_proto): workers never import it.
        from schemas import play_record  # pylint: disable=g-import-not-at-top
        self._play_record = play_record
        self._label_index: Dict[str, int] = {}
        self._labels_seen: Optional[List[str]] = None

    def _use_labels(self, labels: List[str]) -> None:
        if labels is not self._labels_seen:
            self._labels_seen = labels
            self._label_index = {label: i for i, label in enumerate(labels)}

    def _encode(self, spec: PlaySpec, sampled: frames.SampledPlay) -> Tuple[str, str, bytes]:
        cfg = self._config
        time_range = {}
        if spec.has_range:  # MediaSequence clip/start|end/timestamp, only for cut plays
            time_range = dict(start_us=video_clips.seconds_to_us(spec.start),
                              end_us=video_clips.seconds_to_us(spec.end))
        record = self._play_record.PlayRecord(
            play_id=spec.play_id, label=spec.label, label_index=self._label_index[spec.label],
            frames=sampled.frames, timestamps_us=sampled.timestamps_us, height=cfg.height,
            width=cfg.width, game_id=spec.game_id, data_path=spec.path,
            frame_rate=sampled.frame_rate, source_num_frames=sampled.source_num_frames,
            pad_mode=sampled.pad_mode, **time_range)
        _counter("plays_written")
        _counter(f"written_{spec.split}")
        return spec.split, spec.label, self._play_record.encode_play(record)


def _rejected(spec: PlaySpec, err: frames.PlayError):
    return pvalue.TaggedOutput(REJECTED, rejection(spec.play_id, spec.path, err.reason, err.kind,
                                                   spec.row))


def _unexpected(spec: PlaySpec, err: Exception):
    return pvalue.TaggedOutput(REJECTED, rejection(
        spec.play_id, spec.path, f"unexpected error: {type(err).__name__}: {err}",
        "unexpected_error", spec.row))


class _SampleEncodeFn(_EncodeFn):
    """PlaySpec -> (split, label, serialized record), or a rejection with the reason."""

    def process(self, spec: PlaySpec, labels: List[str]):
        self._use_labels(labels)
        cfg = self._config
        try:
            sampled = frames.read_play(
                spec.path, cfg.num_frames, (cfg.height, cfg.width), resize_mode=cfg.resize_mode,
                pad_short=cfg.pad_short, jpeg_quality=cfg.jpeg_quality,
                frame_rate=spec.frame_rate or cfg.frame_rate)
        except frames.PlayError as err:
            yield _rejected(spec, err)
            return
        except Exception as err:  # pylint: disable=broad-except
            logging.exception("play %s (%s) failed", spec.play_id, spec.path)
            yield _unexpected(spec, err)
            return
        yield self._encode(spec, sampled)


class SampleAndEncode(beam.PTransform):
    """Reads, samples, resizes and encodes each play (spread over workers by a Reshuffle)."""

    def __init__(self, config: JobConfig, labels):
        super().__init__()
        self._config = config
        self._labels = labels

    def expand(self, plays):
        return (plays
                | "Spread" >> beam.Reshuffle()
                | "Encode" >> beam.ParDo(_SampleEncodeFn(self._config),
                                         labels=pvalue.AsSingleton(self._labels))
                .with_outputs(REJECTED, main=PLAYS))


class _CutVideoFn(_EncodeFn):
    """((video, chunk), specs) -> records of the plays cut from that video in one decode, or rejections."""

    def process(self, keyed: Tuple[Tuple[str, int], Iterable[PlaySpec]], labels: List[str]):
        self._use_labels(labels)
        (path, _), specs = keyed
        todo: Dict[str, PlaySpec] = {}
        ranges: Dict[Tuple[int, int], PlaySpec] = {}
        for spec in sorted(specs, key=lambda s: (s.start, s.end, s.row)):
            key = (video_clips.seconds_to_us(spec.start), video_clips.seconds_to_us(spec.end))
            if key in ranges:  # the same play under another id
                yield _rejected(spec, frames.PlayError(
                    f"same time range as play {ranges[key].play_id!r} (row {ranges[key].row}) "
                    f"of {_where(spec)}", kind="duplicate_clip"))
                continue
            ranges[key] = todo[spec.play_id] = spec
        cfg = self._config
        clips = [video_clips.Clip(s.play_id, s.start, s.end) for s in todo.values()]
        stats = video_clips.CutStats()
        try:
            for play_id, result in video_clips.cut_clips(
                    path, clips, cfg.num_frames, (cfg.height, cfg.width),
                    resize_mode=cfg.resize_mode, pad_short=cfg.pad_short,
                    jpeg_quality=cfg.jpeg_quality, stats=stats):
                spec = todo[play_id]
                if isinstance(result, frames.PlayError):
                    out = _rejected(spec, result)
                else:
                    out = self._encode(spec, result)
                del todo[play_id]  # only now: a play whose encoding failed is rejected below
                yield out
        except Exception as err:  # pylint: disable=broad-except
            logging.exception("video %s failed", path)
            for spec in todo.values():
                yield _unexpected(spec, err)
        Metrics.counter(METRICS_NAMESPACE, "game_videos_opened").inc(stats.opens)
        Metrics.counter(METRICS_NAMESPACE, "game_video_seeks").inc(stats.seeks)


def _video_key(spec: PlaySpec, chunk_seconds: float) -> Tuple[str, int]:
    return spec.path, int(spec.start // chunk_seconds) if chunk_seconds > 0 else 0


class CutGameVideos(beam.PTransform):
    """Plays that are time ranges of videos -> records; each video is opened and decoded once.

    Plays are grouped by video path (a GroupByKey), and within a video by
    `video_chunk_seconds` of start time, so that the groups of a long game run
    on several workers; each group opens its video once and decodes forward.
    """

    def __init__(self, config: JobConfig, labels):
        super().__init__()
        self._config = config
        self._labels = labels

    def expand(self, plays):
        chunk = self._config.video_chunk_seconds
        return (plays
                | "KeyByVideo" >> beam.Map(lambda spec: (_video_key(spec, chunk), spec))
                | "GroupByVideo" >> beam.GroupByKey()
                | "Cut" >> beam.ParDo(_CutVideoFn(self._config),
                                      labels=pvalue.AsSingleton(self._labels))
                .with_outputs(REJECTED, main=PLAYS))


class WriteSplitShards(beam.PTransform):
    """(split, ..., record bytes) -> `<split>-SSSSS-of-NNNNN.tfrecord[.gz]`; returns the file names.

    Shared by the records job and the embed job: the split is the first item of
    each element and the serialized record the last.
    """

    def __init__(self, output_dir: str, splits: Sequence[str], num_shards: int = 0,
                 compression: str = "none"):
        super().__init__()
        self._output_dir = output_dir
        self._splits = list(splits)
        self._num_shards = num_shards
        self._compression = compression

    def expand(self, records):
        names = self._splits
        parts = records | "BySplit" >> beam.Partition(lambda rec, n: names.index(rec[0]), len(names))
        gzip = self._compression == "gzip"
        written = []
        for name, part in zip(names, parts):
            written.append(
                part
                | f"Bytes_{name}" >> beam.Map(lambda rec: rec[-1])
                | f"Write_{name}" >> beam.io.WriteToTFRecord(
                    FileSystems.join(self._output_dir, name),
                    file_name_suffix=".tfrecord.gz" if gzip else ".tfrecord",
                    num_shards=self._num_shards, shard_name_template=SHARD_TEMPLATE,
                    compression_type=(CompressionTypes.GZIP if gzip
                                      else CompressionTypes.UNCOMPRESSED)))
        return written | "AllShards" >> beam.Flatten()


def _count_rejected(entry: Dict[str, Any]) -> Dict[str, Any]:
    _counter("plays_rejected")
    _counter(f"rejected_{entry['kind']}")
    return entry


class WriteRejected(beam.PTransform):
    """Rejections -> `rejected-SSSSS-of-NNNNN.jsonl` (one JSON object per line)."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._output_dir = output_dir

    def expand(self, rejected):
        return (rejected
                | "Count" >> beam.Map(_count_rejected)
                | "ToJson" >> beam.Map(lambda entry: json.dumps(entry, sort_keys=True))
                | "Write" >> beam.io.WriteToText(
                    FileSystems.join(self._output_dir, "rejected"), file_name_suffix=".jsonl",
                    num_shards=1, shard_name_template=SHARD_TEMPLATE))


def _events_written(rec) -> Tuple[str, str, str]:
    return ("written", rec[0], rec[1])


def _events_rejected(entry) -> Tuple[str, str, str]:
    return ("rejected", entry["kind"], "")


class _WriteCardFn(beam.DoFn):
    def __init__(self, config: JobConfig):
        self._config = config

    def process(self, unused, counts, labels, files, num_input):
        del unused, files  # `files` only orders this step after every write
        cfg = self._config
        split_counts = {name: 0 for name in cfg.splits}
        label_counts = {name: {label: 0 for label in labels} for name in cfg.splits}
        reasons: Dict[str, int] = {}
        for (event, a, b), n in counts:
            if event == "written":
                split_counts[a] += n
                label_counts[a][b] = label_counts[a].get(b, 0) + n
            else:
                reasons[a] = reasons.get(a, 0) + n
        card = dataset_card.DatasetCard(
            num_frames=cfg.num_frames, height=cfg.height, width=cfg.width, labels=list(labels),
            counts=split_counts, label_counts=label_counts, num_input=num_input,
            num_rejected=sum(reasons.values()), rejected_reasons=dict(sorted(reasons.items())),
            compression=cfg.compression, shard_pattern=cfg.shard_pattern,
            frame_rate=cfg.frame_rate, jpeg_quality=cfg.jpeg_quality, resize_mode=cfg.resize_mode,
            pad_short=cfg.pad_short, args=dict(cfg.args))
        path = FileSystems.join(cfg.output_dir, dataset_card.CARD_NAME)
        with FileSystems.create(path) as f:
            f.write(card.to_json().encode("utf-8"))
        yield path


class WriteCard(beam.PTransform):
    """Runs a card-writing DoFn once, after every file of `files` is written.

    Input: the (event, count) pairs of the written and rejected streams, which
    the DoFn gets as its `counts` side input, with `files` (only to order this
    step last) and the singleton side inputs given as keywords. Shared by the
    records job (`dataset.json`) and the embed job (`features.json`).
    """

    def __init__(self, write_fn: beam.DoFn, files, **singletons):
        super().__init__()
        self._write_fn = write_fn
        self._files = files
        self._singletons = singletons

    def expand(self, counts):
        singletons = {name: pvalue.AsSingleton(pcoll) for name, pcoll in self._singletons.items()}
        return (counts.pipeline
                | "Once" >> beam.Create([None])
                | "Write" >> beam.ParDo(self._write_fn, counts=pvalue.AsList(counts),
                                        files=pvalue.AsList(self._files), **singletons))


def build(pipeline: beam.Pipeline, config: JobConfig):
    """Adds the records job to `pipeline`; returns the PCollection holding the card's path."""
    read = pipeline | "ReadPlays" >> ReadPlays(config.input, config.demo_plays, config.demo_seed,
                                                   config.demo_profile, config.demo_label_weights)
    num_input = ((read[PLAYS], read[REJECTED])
                 | "AllInput" >> beam.Flatten()
                 | "CountInput" >> beam.combiners.Count.Globally())
    unique = read[PLAYS] | "DropDuplicatePlays" >> DropDuplicatePlays()
    checked = unique[PLAYS] | "AssignSplits" >> AssignSplits(config.splits, config.labels)
    labels = checked[PLAYS] | "LabelVocabulary" >> LabelVocabulary(config.labels)
    whole, ranged = checked[PLAYS] | "WholeOrRange" >> beam.Partition(
        lambda spec, n: int(spec.has_range), 2)
    encoded = whole | "SampleAndEncode" >> SampleAndEncode(config, labels)
    cut = ranged | "CutGameVideos" >> CutGameVideos(config, labels)
    records = (encoded[PLAYS], cut[PLAYS]) | "AllRecords" >> beam.Flatten()
    shard_files = records | "WriteSplitShards" >> WriteSplitShards(
        config.output_dir, list(config.splits), config.num_shards, config.compression)

    rejected = ((read[REJECTED], unique[REJECTED], checked[REJECTED], encoded[REJECTED],
                 cut[REJECTED])
                | "AllRejected" >> beam.Flatten())
    rejected_files = rejected | "WriteRejected" >> WriteRejected(config.output_dir)

    counts = ((records | "WrittenEvents" >> beam.Map(_events_written),
               rejected | "RejectedEvents" >> beam.Map(_events_rejected))
              | "AllEvents" >> beam.Flatten()
              | "CountEvents" >> beam.combiners.Count.PerElement())
    files = (shard_files, rejected_files) | "AllFiles" >> beam.Flatten()
    return counts | "WriteDatasetCard" >> WriteCard(_WriteCardFn(config), files, labels=labels,
                                                    num_input=num_input)
