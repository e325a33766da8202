"""The records job as PTransforms: plays -> sampled JPEG frames -> sharded TFRecords.

    ReadPlays -> DropDuplicatePlays -> AssignSplits (split, label checks)
      -> MakeRecords               GroupByWork, then `media.sample_plays` on each group: a whole
                                   play (folder, video, demo play) alone; plays that are time
                                   ranges of a video grouped by video, one decode each
      -> WriteSplitShards          <split>-SSSSS-of-NNNNN.tfrecord[.gz]
      -> WriteRejected             rejected-SSSSS-of-NNNNN.jsonl (every play not written)
      -> WritePreview              preview.png (a few plays per label, frame by frame)
      -> WriteCard                 dataset.json, once every file above is written

The three sinks are both jobs' (`beam_jobs.outputs`). `build(pipeline, config)`
wires them; `make_records.py` is the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam import pvalue

from beam_jobs import splits as splits_lib
from beam_jobs import no_play as no_play_lib
from beam_jobs import preview, progress
from beam_jobs.outputs import (PLAYS, REJECTED, JobCounts, WriteCard, WriteRejected,
                               WriteSplitShards, count, rejected, rejection)
from beam_jobs.plays import PlaySpec, read_plays
from media import frames, video_clips
from media.sample_plays import sample_plays, unexpected, where
from schemas import dataset_card, sampling
from schemas.sampling import FrameSampling

logger = logging.getLogger(__name__)

DEFAULT_DEMO_PLAYS = 330  # 30 per label of the 11 demo labels
DEFAULT_VIDEO_CHUNK_SECONDS = 600.0


@dataclasses.dataclass
class JobConfig:
    """Everything the pipeline needs (built from the CLI flags by make_records.py)."""

    output_dir: str
    input: str = ""  # manifest or folder tree; "" = demo plays
    labels: Optional[List[str]] = None  # fixed vocabulary, else the sorted labels seen
    # How plays are sampled; frame folders without a frame_rate column are timed at its frame_rate.
    sampling: FrameSampling = dataclasses.field(
        default_factory=lambda: FrameSampling(frame_rate=sampling.DEFAULT_FRAME_RATE))
    splits: Dict[str, float] = dataclasses.field(
        default_factory=lambda: splits_lib.parse_splits(splits_lib.DEFAULT_SPLITS))
    num_shards: int = 0
    compression: str = "none"
    demo_plays: int = DEFAULT_DEMO_PLAYS
    demo_seed: int = 0
    demo_profile: str = "default"  # demo_data.plays.PROFILES
    demo_label_weights: Dict[str, int] = dataclasses.field(default_factory=dict)  # {}: balanced
    video_chunk_seconds: float = DEFAULT_VIDEO_CHUNK_SECONDS  # groups of plays by start; 0: one
    no_play: no_play_lib.NoPlayConfig = dataclasses.field(default_factory=no_play_lib.NoPlayConfig)
    expected_plays: int = 0  # input rows, for the progress lines (0: unknown)
    progress_seconds: float = progress.DEFAULT_INTERVAL_S  # 0: no progress lines
    num_workers: int = 1  # worker processes sharing the work, for the time-left estimate
    args: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shard_pattern(self) -> str:
        return "{split}-*-of-*" + (".tfrecord.gz" if self.compression == "gzip" else ".tfrecord")


class _RouteItemsFn(beam.DoFn):
    """PlaySpecs to the main output, reader rejections to REJECTED."""

    def process(self, item):
        if isinstance(item, PlaySpec):
            yield item
        else:
            yield rejected(item)


class _DemoSpecFn(beam.DoFn):
    """Demo play index -> PlaySpec with path demo://<seed>/<index>."""

    def __init__(self, seed: int, profile: str = "default", label_weights=None):
        self._seed = seed
        self._profile = profile
        self._weights = dict(label_weights or {})

    def setup(self):
        from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
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
            yield rejected(rejection(
                play_id, dup.path, f"duplicate play_id {play_id!r} (kept row {kept.row}: "
                f"{where(kept)})", "duplicate_play_id", dup.row, dup.split))


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
            yield rejected(rejection(
                spec.play_id, spec.path, f"unknown label {spec.label!r} (not in --label_vocabulary)",
                "unknown_label", spec.row, spec.split))
            return
        if spec.split:
            if spec.split not in self._splits:
                yield rejected(rejection(
                    spec.play_id, spec.path, f"unknown split {spec.split!r} (splits are "
                    f"{', '.join(self._splits)})", "unknown_split", spec.row, spec.split))
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
            _AssignSplitFn(self._splits, self._labels)).with_outputs(
                REJECTED, main=PLAYS)


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


def rejected_play(spec: PlaySpec, err: frames.PlayError):
    """The REJECTED output of a play that could not be sampled (or encoded)."""
    return rejected(rejection(spec.play_id, spec.path, err.reason, err.kind, spec.row, spec.split))


def _work_key(spec: PlaySpec, chunk_seconds: float) -> Tuple[str, str, int]:
    """The unit of work a play is made in: itself, or the plays of one video and time chunk."""
    if not spec.has_range:
        return "play", spec.play_id, 0
    return "video", spec.path, int(spec.start // chunk_seconds) if chunk_seconds > 0 else 0


class GroupByWork(beam.PTransform):
    """PlaySpecs -> (work key, specs): the units `sample_plays` is called on.

    A whole play (frames folder, video file, demo play) is a unit of work of
    its own; plays that are time ranges of a video are grouped by video path
    and by `chunk_seconds` of start time, so that each group opens its video
    once and decodes forward, and the groups of a long game run on several
    workers. One GroupByKey spreads both over the workers, and only play specs
    cross it: what is made of a play comes out of the stage that samples it.
    """

    def __init__(self, chunk_seconds: float):
        super().__init__()
        self._chunk = chunk_seconds

    def expand(self, plays):
        chunk = self._chunk
        return (plays
                | "KeyByWork" >> beam.Map(lambda spec: (_work_key(spec, chunk), spec))
                | "GroupByWork" >> beam.GroupByKey())


def count_video_work(work: str, stats: video_clips.CutStats) -> None:
    """The counters of a group of plays cut from one video: opens and seeks."""
    if work == "video":
        count("game_videos_opened", stats.opens)
        count("game_video_seeks", stats.seeks)


class MakeRecordsFn(beam.DoFn):
    """(work key, specs) -> (split, label, serialized record) per play, or rejections."""

    def __init__(self, how: FrameSampling):
        self._how = how

    def setup(self):
        # Records are serialized without TensorFlow (schemas.example_proto): workers never import it.
        from schemas import play_record  # pylint: disable=g-import-not-at-top
        self._play_record = play_record
        self._label_index: Dict[str, int] = {}
        self._labels_seen: Optional[List[str]] = None

    def process(self, keyed: Tuple[Tuple[str, str, int], Iterable[PlaySpec]], labels: List[str]):
        if labels is not self._labels_seen:
            self._labels_seen = labels
            self._label_index = {label: i for i, label in enumerate(labels)}
        (work, _, _), specs = keyed
        stats = video_clips.CutStats()
        for spec, result in sample_plays(list(specs), self._how, stats):
            if isinstance(result, frames.PlayError):
                yield rejected_play(spec, result)
                continue
            try:
                out = self._record(spec, result)
            except Exception as err:  # pylint: disable=broad-except
                logger.exception("play %s (%s) failed", spec.play_id, spec.path)
                out = rejected_play(spec, unexpected(err))
            yield out
        count_video_work(work, stats)

    def _record(self, spec: PlaySpec, sampled: frames.SampledPlay) -> Tuple[str, str, bytes]:
        time_range = {}
        if spec.has_range:  # MediaSequence clip/start|end/timestamp, only for cut plays
            time_range = dict(start_us=video_clips.seconds_to_us(spec.start),
                              end_us=video_clips.seconds_to_us(spec.end))
        record = self._play_record.PlayRecord(
            play_id=spec.play_id, label=spec.label, label_index=self._label_index[spec.label],
            frames=sampled.frames, timestamps_us=sampled.timestamps_us, height=self._how.height,
            width=self._how.width, game_id=spec.game_id, data_path=spec.path,
            frame_rate=sampled.frame_rate, source_num_frames=sampled.source_num_frames,
            pad_mode=sampled.pad_mode, **time_range)
        count("plays_written")
        count(f"written_{spec.split}")
        return spec.split, spec.label, self._play_record.encode_play(record)


class MakeRecords(beam.PTransform):
    """Plays -> (split, label, serialized record) (PLAYS) and rejections (REJECTED)."""

    def __init__(self, config: JobConfig, labels):
        super().__init__()
        self._config = config
        self._labels = labels

    def expand(self, plays):
        return (plays
                | "GroupByWork" >> GroupByWork(self._config.video_chunk_seconds)
                | "Make" >> beam.ParDo(MakeRecordsFn(self._config.sampling),
                                       labels=pvalue.AsSingleton(self._labels))
                .with_outputs(REJECTED, main=PLAYS))


def dataset_card_of(config: JobConfig, counts: JobCounts, labels: List[str]
                    ) -> dataset_card.DatasetCard:
    """The run's dataset.json (WriteCard's `make_card`)."""
    splits = list(config.splits)
    return dataset_card.DatasetCard(
        sampling=config.sampling, labels=list(labels),
        counts={s: counts.written.get(s, 0) for s in splits},
        label_counts={s: {label: counts.by_label.get(s, {}).get(label, 0) for label in labels}
                      for s in splits},
        num_input=counts.num_input, num_rejected=counts.num_rejected,
        rejected_reasons=counts.rejected, compression=config.compression,
        shard_pattern=config.shard_pattern, args=dict(config.args),
        # Background clips drawn here, or rows of the reserved label (mined, corrected by hand).
        no_play_label=(config.no_play.label if config.no_play.enabled
                       or config.no_play.label in labels else ""))


def build(pipeline: beam.Pipeline, config: JobConfig):
    """Adds the records job to `pipeline`; returns the PCollection holding the card's path."""
    read = pipeline | "ReadPlays" >> ReadPlays(config.input, config.demo_plays, config.demo_seed,
                                                   config.demo_profile, config.demo_label_weights)
    inputs = [read[PLAYS], read[REJECTED]]
    unique = read[PLAYS] | "DropDuplicatePlays" >> DropDuplicatePlays()
    checked = unique[PLAYS] | "AssignSplits" >> AssignSplits(config.splits, config.labels)
    plays = checked[PLAYS]
    if config.no_play.adds_clips:  # background clips (shifted plays) join, and count as input
        plays, generated = plays | "AddNoPlayClips" >> no_play_lib.AddNoPlayClips(config.no_play)
        plays = (plays, generated) | "WithNoPlayClips" >> beam.Flatten()
        inputs.append(generated)
    num_input = (inputs | "AllInput" >> beam.Flatten()
                 | "CountInput" >> beam.combiners.Count.Globally())
    labels = plays | "LabelVocabulary" >> LabelVocabulary(config.labels)
    made = plays | "MakeRecords" >> MakeRecords(config, labels)
    records = made[PLAYS]
    shard_files = records | "WriteSplitShards" >> WriteSplitShards(
        config.output_dir, list(config.splits), config.num_shards, config.compression)

    rejections = ((read[REJECTED], unique[REJECTED], checked[REJECTED], made[REJECTED])
                  | "AllRejected" >> beam.Flatten())
    rejected_files = rejections | "WriteRejected" >> WriteRejected(config.output_dir)

    if config.progress_seconds > 0:
        progress.track(records, rejections, "records", config.expected_plays,
                       config.progress_seconds, config.num_workers)

    preview_file = records | "WritePreview" >> preview.WritePreview(config.output_dir)

    files = (shard_files, rejected_files, preview_file) | "AllFiles" >> beam.Flatten()
    return (records, rejections) | "WriteDatasetCard" >> WriteCard(
        config.output_dir, dataset_card.CARD_NAME, functools.partial(dataset_card_of, config),
        files, num_input, labels=labels)
