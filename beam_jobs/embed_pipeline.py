"""The embed job as PTransforms: play records -> the frozen base's features per stored frame.

    ReadSplitRecords -> ParsePlays -> EmbedPlays (RunInference, beam_jobs.inference)
      -> WriteSplitShards     <split>-SSSSS-of-NNNNN.tfrecord  (schemas.feature_record)
      -> WriteRejected        rejected-SSSSS-of-NNNNN.jsonl   (every record not embedded)
      -> WriteCard            features.json, last: its presence marks a complete output

The sinks are both jobs' (`beam_jobs.outputs`). `build(pipeline, config)` wires
them; `embed_records.py` is the command line.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import io
import logging
from typing import Dict, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult, RunInference

from beam_jobs import inference, progress
from beam_jobs.options import DEFAULT_BATCH_SIZE
from beam_jobs.outputs import (PLAYS, REJECTED, JobCounts, WriteCard, WriteRejected,
                               WriteSplitShards, count, rejected, rejection)
from schemas import feature_record, features_card
from schemas.errors import one_line
from schemas.features_card import FeaturesCard

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class EmbedConfig:
    """Everything the pipeline needs, resolved at launch."""

    records_dir: str
    output_dir: str
    split_patterns: Dict[str, str]  # split -> absolute glob of its play shards (splits with files)
    records_compression: str
    card: FeaturesCard  # the card to write, but for counts
    batch_size: int = DEFAULT_BATCH_SIZE
    num_shards: int = 0
    share_model_across_processes: bool = False
    model_copies: Optional[int] = None
    expected_plays: int = 0  # the records card's counts, for the progress lines
    progress_seconds: float = progress.DEFAULT_INTERVAL_S  # 0: no progress lines
    num_workers: int = 1  # worker processes sharing the work, for the time-left estimate

    @property
    def base_path(self) -> str:
        return FileSystems.join(self.output_dir, self.card.base_model)


class _ParsePlayFn(beam.DoFn):
    """(split, record bytes) -> (split, PlayRecord), or a rejection for a record the base cannot take."""

    def __init__(self, num_frames: int, height: int, width: int, labels: Sequence[str]):
        self._num_frames = num_frames
        self._size = (height, width)
        self._labels = list(labels)

    def setup(self):
        # Workers parse without TensorFlow; PIL reads JPEG headers only.
        from google.protobuf.message import DecodeError  # pylint: disable=g-import-not-at-top
        from PIL import Image  # pylint: disable=g-import-not-at-top
        from schemas import play_record  # pylint: disable=g-import-not-at-top
        self._decode_error = DecodeError
        self._image = Image
        self._play_record = play_record

    def process(self, element: Tuple[str, bytes]):
        split, serialized = element
        try:
            record = self._play_record.decode_play(serialized)
        except (self._play_record.SchemaError, self._decode_error) as err:
            yield rejected(rejection("", "", f"not a play record: {one_line(err)}",
                                     "not_a_play_record", split=split))
            return
        problem = self._problem(record)
        if problem:
            reason, kind = problem
            yield rejected(rejection(record.play_id, record.data_path, reason, kind, split=split))
            return
        yield split, record

    def _problem(self, record) -> Optional[Tuple[str, str]]:
        """(reason, kind) when the record does not fit the card, else None."""
        if len(record.frames) != self._num_frames:
            return (f"{len(record.frames)} frames, dataset.json says {self._num_frames}",
                    "wrong_num_frames")
        labels = self._labels
        if not 0 <= record.label_index < len(labels) or labels[record.label_index] != record.label:
            return (f"label {record.label!r} with index {record.label_index} is not in "
                    f"dataset.json's labels", "wrong_label")
        height, width = self._size
        for t, jpeg in enumerate(record.frames):
            try:
                with self._image.open(io.BytesIO(jpeg)) as image:
                    image_format, (w, h) = image.format, image.size
            except OSError as err:  # PIL.UnidentifiedImageError and truncated headers
                return f"frame {t} is not an image: {one_line(err)}", "bad_frame"
            if image_format != "JPEG" or (h, w) != (height, width):
                return (f"frame {t} is a {h}x{w} {image_format}, dataset.json says "
                        f"{height}x{width} JPEG", "bad_frame")
        return None


class _TagSplitFn(beam.DoFn):
    """(file name, record) -> (split, record): the split whose shard glob names the file."""

    def __init__(self, split_patterns: Dict[str, str]):
        # The longest split name first: "a-b-00000-of-00001" is split "a-b", not "a".
        self._patterns = sorted(split_patterns.items(), key=lambda kv: -len(kv[0]))

    def process(self, element: Tuple[str, bytes]):
        name, record = element
        yield next(split for split, pattern in self._patterns
                   if fnmatch.fnmatchcase(name, pattern)), record


class ReadSplitRecords(beam.PTransform):
    """(split, serialized play record) of every split's shards.

    One read for all splits (not one per split and a Flatten), so that the
    records flow on in the stage that reads them: no stage boundary holds them.
    """

    def __init__(self, split_patterns: Dict[str, str], compression: str):
        super().__init__()
        self._patterns = dict(split_patterns)
        self._compression = (CompressionTypes.GZIP if compression == "gzip"
                             else CompressionTypes.UNCOMPRESSED)

    def expand(self, pbegin):
        return (pbegin
                | "Patterns" >> beam.Create(sorted(self._patterns.values()))
                | "Read" >> beam.io.ReadAllFromTFRecord(compression_type=self._compression,
                                                        with_filename=True)
                | "TagSplit" >> beam.ParDo(_TagSplitFn(self._patterns)))


class ParsePlays(beam.PTransform):
    """Play records that fit the card (PLAYS) and rejections (REJECTED).

    `card` is any card with the records' `num_frames`, `height`, `width` and
    `labels` (the features card here, dataset.json in the prediction job).
    """

    def __init__(self, card):
        super().__init__()
        self._card = card

    def expand(self, records):
        card = self._card
        return records | "Parse" >> beam.ParDo(
            _ParsePlayFn(card.num_frames, card.height, card.width, card.labels)
        ).with_outputs(REJECTED, main=PLAYS)


def _keyed_frames(element) -> Tuple[inference.PlayKey, list]:
    """(split, PlayRecord) -> (PlayKey, frames): only the frames go to the model."""
    split, play = element
    key = inference.PlayKey(play.play_id, split, play.label, play.label_index, play.data_path)
    return key, list(play.frames)


class _EncodeFeaturesFn(beam.DoFn):
    """(PlayKey, PredictionResult) -> (split, label, serialized feature record)."""

    def __init__(self, dtype: str):
        self._dtype = dtype

    def process(self, keyed: Tuple[inference.PlayKey, PredictionResult]):
        key, result = keyed
        record = feature_record.FeatureRecord(
            play_id=key.play_id, label=key.label, label_index=key.label_index, split=key.split,
            features=np.asarray(result.inference).astype(self._dtype), data_path=key.data_path)
        count("plays_embedded")
        count(f"written_{key.split}")
        yield key.split, key.label, feature_record.encode_features(record)


def _failed_batch(failed) -> list:
    """(keyed batch, exception) of a failed inference -> a rejection per play of the batch."""
    batch, err = failed
    reason = inference.failure_reason(err)
    logger.warning("a batch of %d plays failed in the base: %s", len(batch), reason)
    return [rejection(key.play_id, key.data_path, reason, "inference_failed", split=key.split)
            for key, _ in batch]


class EmbedPlays(beam.PTransform):
    """(split, PlayRecord) -> (split, label, serialized feature record) (PLAYS), via RunInference.

    A batch that the base fails on is rejected play by play (REJECTED, kind
    `inference_failed`) instead of failing the job.
    """

    def __init__(self, config: EmbedConfig):
        super().__init__()
        self._config = config

    def expand(self, plays):
        cfg = self._config
        handler = inference.keyed_handler(
            cfg.base_path, cfg.card.views, cfg.batch_size, compute_dtype=cfg.card.compute_dtype,
            share_model_across_processes=cfg.share_model_across_processes,
            model_copies=cfg.model_copies)
        # No Reshuffle: the read already spreads the shards' ranges over the workers, and a
        # Reshuffle would hold every play's frames at its stage boundary.
        main, failed = (plays
                        | "KeyFrames" >> beam.Map(_keyed_frames)
                        | "RunInference" >> RunInference(handler).with_exception_handling())
        encoded = main | "Encode" >> beam.ParDo(_EncodeFeaturesFn(cfg.card.dtype))
        rejections = failed.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch)
        return {PLAYS: encoded, REJECTED: rejections}


def features_card_of(template: FeaturesCard, counts: JobCounts) -> FeaturesCard:
    """The run's features.json (WriteCard's `make_card`): `template` with the counts."""
    return dataclasses.replace(
        template, counts={**template.counts, **counts.written}, num_input=counts.num_input,
        num_rejected=counts.num_rejected, rejected_reasons=counts.rejected)


def build(pipeline: beam.Pipeline, config: EmbedConfig):
    """Adds the embed job to `pipeline`; returns the PCollection holding the card's path."""
    records = pipeline | "ReadSplitRecords" >> ReadSplitRecords(
        config.split_patterns, config.records_compression)
    num_input = records | "CountInput" >> beam.combiners.Count.Globally()
    parsed = records | "ParsePlays" >> ParsePlays(config.card)
    embedded = parsed[PLAYS] | "EmbedPlays" >> EmbedPlays(config)
    shard_files = embedded[PLAYS] | "WriteSplitShards" >> WriteSplitShards(
        config.output_dir, list(config.split_patterns), config.num_shards)
    rejections = ((parsed[REJECTED], embedded[REJECTED])
                  | "AllRejected" >> beam.Flatten())
    rejected_files = rejections | "WriteRejected" >> WriteRejected(config.output_dir)
    if config.progress_seconds > 0:
        progress.track(embedded[PLAYS], rejections, "embed", config.expected_plays,
                       config.progress_seconds, config.num_workers)
    files = (shard_files, rejected_files) | "AllFiles" >> beam.Flatten()
    return (embedded[PLAYS], rejections) | "WriteFeaturesCard" >> WriteCard(
        config.output_dir, features_card.CARD_NAME,
        functools.partial(features_card_of, config.card), files, num_input)
