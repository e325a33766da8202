"""The prediction job as PTransforms: plays -> the exported classifier -> one JSON line per play.

    ReadRecordPlays | SampleManifestPlays   (PlayKey, JPEG frames) per play
      -> PredictPlays        RunInference (beam_jobs.inference.serving_handler); a batch that
                             fails is retried play by play, a play that fails alone is rejected
      -> FormatPredictions   predictions-SSSSS-of-NNNNN.jsonl
      -> WriteEvaluation     eval.json (trainer.evaluation.metrics' report) when plays have true labels
      -> WriteRejected       rejected-SSSSS-of-NNNNN.jsonl (every play not predicted)
      -> WriteCard           predictions.json, last: its presence marks a complete output

A records folder's plays are its records' stored frames; a manifest's plays are
grouped as the records job groups them (`records_pipeline.GroupByWork`) and
sampled by the same function (`media.sample_plays`, with the frame sampling of
the model's export card), so a play is fed to the model exactly as it would be
stored in records. `build(pipeline, config)` wires
it; `predict_plays.py` is the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult, RunInference

from beam_jobs import inference, records_pipeline
from beam_jobs.embed_pipeline import ParsePlays, ReadSplitRecords
from beam_jobs.options import DEFAULT_BATCH_SIZE
from beam_jobs.outputs import (PLAYS, REJECTED, SHARD_TEMPLATE, JobCounts, WriteCard,
                               WriteRejected, count, rejection)
from beam_jobs.plays import PlaySpec
from media.frames import PlayError
from media.sample_plays import sample_plays
from media.video_clips import CutStats
from schemas import dataset_card, predictions_card
from schemas.predictions_card import PredictionsCard
from schemas.sampling import FrameSampling

logger = logging.getLogger(__name__)

PREDICTIONS_PREFIX = "predictions"


@dataclasses.dataclass
class PredictConfig:
    """Everything the pipeline needs, resolved at launch."""

    output_dir: str
    saved_model_dir: str
    card: PredictionsCard  # the card to write, but for counts (card.compute_dtype: resolved)
    # A records folder: split -> absolute shard glob, its compression and dataset.json ...
    split_patterns: Dict[str, str] = dataclasses.field(default_factory=dict)
    records_compression: str = "none"
    records_card: Optional[dataset_card.DatasetCard] = None
    # ... or a manifest (card.input), its plays sampled as the export card says.
    sampling: Optional[FrameSampling] = None
    video_chunk_seconds: float = records_pipeline.DEFAULT_VIDEO_CHUNK_SECONDS
    batch_size: int = DEFAULT_BATCH_SIZE
    num_shards: int = 0
    share_model_across_processes: bool = False
    model_copies: Optional[int] = None

    @property
    def labels(self) -> List[str]:
        return list(self.card.labels)


# ----------------------------------------------------------------------------- inputs


class _KeyRecordFn(beam.DoFn):
    """(split, PlayRecord) -> (PlayKey, stored frames); the label index is the model's."""

    def __init__(self, labels: Sequence[str]):
        self._index = {label: i for i, label in enumerate(labels)}

    def process(self, element):
        split, play = element
        key = inference.PlayKey(play.play_id, split, play.label,
                                self._index.get(play.label, -1), play.data_path)
        yield key, list(play.frames)


class ReadRecordPlays(beam.PTransform):
    """A records folder's plays as (PlayKey, frames) (PLAYS), bad records to REJECTED, and the
    number of records read (`"num_input"`)."""

    def __init__(self, config: PredictConfig):
        super().__init__()
        self._config = config

    def expand(self, pbegin):
        cfg = self._config
        records = pbegin | "ReadSplitRecords" >> ReadSplitRecords(
            cfg.split_patterns, cfg.records_compression)
        parsed = records | "ParsePlays" >> ParsePlays(cfg.records_card)
        keyed = parsed[PLAYS] | "KeyPlays" >> beam.ParDo(_KeyRecordFn(cfg.labels))
        return {PLAYS: keyed, REJECTED: parsed[REJECTED],
                "num_input": records | "CountInput" >> beam.combiners.Count.Globally()}


class _SampleFramesFn(beam.DoFn):
    """(work key, specs) -> (PlayKey, JPEG frames) per play, or rejections; the label index is
    the model's (-1: not in its vocabulary)."""

    def __init__(self, how: FrameSampling, labels: Sequence[str]):
        self._how = how
        self._index = {label: i for i, label in enumerate(labels)}

    def process(self, keyed: Tuple[Tuple[str, str, int], List[PlaySpec]]):
        (work, _, _), specs = keyed
        stats = CutStats()
        for spec, result in sample_plays(list(specs), self._how, stats):
            if isinstance(result, PlayError):
                yield records_pipeline.rejected_play(spec, result)
                continue
            yield (inference.PlayKey(spec.play_id, spec.split, spec.label,
                                     self._index.get(spec.label, -1), spec.path),
                   list(result.frames))
        records_pipeline.count_video_work(work, stats)


class SampleManifestPlays(beam.PTransform):
    """A manifest's (or folder tree's) plays as (PlayKey, frames) (PLAYS), rows that cannot be
    plays to REJECTED, and the number of rows read (`"num_input"`)."""

    def __init__(self, config: PredictConfig):
        super().__init__()
        self._config = config

    def expand(self, pbegin):
        cfg = self._config
        read = pbegin | "ReadPlays" >> records_pipeline.ReadPlays(cfg.card.input)
        num_input = ((read[PLAYS], read[REJECTED])
                     | "AllInput" >> beam.Flatten()
                     | "CountInput" >> beam.combiners.Count.Globally())
        unique = read[PLAYS] | "DropDuplicatePlays" >> records_pipeline.DropDuplicatePlays()
        made = (unique[PLAYS]
                | "GroupByWork" >> records_pipeline.GroupByWork(cfg.video_chunk_seconds)
                | "SampleFrames" >> beam.ParDo(_SampleFramesFn(cfg.sampling, cfg.labels))
                .with_outputs(REJECTED, main=PLAYS))
        rejections = ((read[REJECTED], unique[REJECTED], made[REJECTED])
                      | "AllRejected" >> beam.Flatten())
        return {PLAYS: made[PLAYS], REJECTED: rejections, "num_input": num_input}


# ----------------------------------------------------------------------------- inference


def _failed_plays(failed) -> list:
    """(keyed batch, exception) of a failed batch -> its (PlayKey, frames), to retry one by one."""
    batch, err = failed
    logger.warning("a batch of %d plays failed in the model (%s); retrying them one by one",
                   len(batch), inference.failure_reason(err))
    count("batches_retried")
    return list(batch)


def _failed_play(failed) -> list:
    """(keyed batch of one play, exception) -> its rejection, kind `inference_failed`."""
    batch, err = failed
    reason = inference.failure_reason(err)
    logger.warning("play %s failed in the model: %s", ", ".join(k.play_id for k, _ in batch),
                   reason)
    return [rejection(key.play_id, key.data_path, reason, "inference_failed", split=key.split)
            for key, _ in batch]


class PredictPlays(beam.PTransform):
    """(PlayKey, frames) -> (PlayKey, PredictionResult) (PLAYS), via RunInference.

    RunInference's exception handling catches a batch that raises (a corrupt
    JPEG fails the signature's decode for the whole batch); its plays go once
    more through RunInference one at a time, so that only the play that fails
    alone is rejected (REJECTED, kind `inference_failed`) and the job goes on.
    """

    def __init__(self, config: PredictConfig):
        super().__init__()
        self._config = config

    def _handler(self, batch_size: int):
        cfg = self._config
        return inference.serving_handler(
            cfg.saved_model_dir, batch_size, cfg.card.compute_dtype,
            share_model_across_processes=cfg.share_model_across_processes,
            model_copies=cfg.model_copies)

    def expand(self, plays):
        main, failed = plays | "RunInference" >> RunInference(
            self._handler(self._config.batch_size)).with_exception_handling()
        retried, failed_alone = (failed.failed_inferences
                                 | "FailedBatches" >> beam.FlatMap(_failed_plays)
                                 | "RunInferenceOneByOne" >> RunInference(
                                     self._handler(1)).with_exception_handling())
        predicted = (main, retried) | "AllPredicted" >> beam.Flatten()
        rejections = failed_alone.failed_inferences | "FailedPlays" >> beam.FlatMap(_failed_play)
        return {PLAYS: predicted, REJECTED: rejections}


# ----------------------------------------------------------------------------- outputs


def prediction_line(key: inference.PlayKey, probabilities: np.ndarray, labels: Sequence[str],
                    top_k: int, model: str) -> Dict[str, Any]:
    """One play's output line: predicted label, its probability, the top k, and the true label."""
    probabilities = np.asarray(probabilities, np.float64)
    order = sorted(range(len(labels)), key=lambda i: (-probabilities[i], i))
    line: Dict[str, Any] = {
        "play_id": key.play_id,
        "predicted": labels[order[0]],
        "confidence": float(probabilities[order[0]]),
        "top_k": [{"label": labels[i], "probability": float(probabilities[i])}
                  for i in order[:max(1, top_k)]],
        "model": model,
    }
    if key.label:
        line["label"] = key.label
    return line


SCORED = "scored"  # FormatPredictions' output of (true label index, probabilities)


class _FormatFn(beam.DoFn):
    """(PlayKey, PredictionResult) -> (split, scored label or "", JSON line); SCORED for eval."""

    def __init__(self, labels: Sequence[str], top_k: int, model: str):
        self._labels = list(labels)
        self._top_k = top_k
        self._model = model

    def process(self, keyed: Tuple[inference.PlayKey, PredictionResult]):
        key, result = keyed
        probabilities = np.asarray(result.inference, np.float64)
        line = prediction_line(key, probabilities, self._labels, self._top_k, self._model)
        count("plays_predicted")
        scored = key.label_index >= 0
        if scored:
            yield beam.pvalue.TaggedOutput(SCORED, (key.label_index, probabilities.tolist()))
        yield key.split, key.label if scored else "", json.dumps(line, sort_keys=True)


class FormatPredictions(beam.PTransform):
    """Predictions -> (split, label, JSON line) (PLAYS) and (label index, probabilities) (SCORED)."""

    def __init__(self, config: PredictConfig):
        super().__init__()
        self._config = config

    def expand(self, predicted):
        cfg = self._config
        return predicted | "Format" >> beam.ParDo(
            _FormatFn(cfg.labels, cfg.card.top_k, cfg.saved_model_dir)
        ).with_outputs(SCORED, main=PLAYS)


class _WriteEvalFn(beam.DoFn):
    """All scored plays -> OUTPUT_DIR/eval.json (trainer.evaluation.metrics' report); yields its path."""

    def __init__(self, output_dir: str, labels: Sequence[str], about: Dict[str, Any]):
        self._path = FileSystems.join(output_dir, predictions_card.EVAL_NAME)
        self._labels = list(labels)
        self._about = dict(about)

    def process(self, scored: List[Tuple[int, List[float]]]):
        if not scored:
            return
        from trainer.evaluation import metrics  # pylint: disable=g-import-not-at-top
        scored = sorted(scored)  # the report does not depend on the order plays arrived in
        labels = np.array([index for index, _ in scored], np.int64)
        probabilities = np.array([p for _, p in scored], np.float64)
        report = metrics.classification_metrics(labels, probabilities, self._labels)
        report.update(self._about)
        with FileSystems.create(self._path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(json.dumps(report, indent=2).encode("utf-8"))
        yield self._path


class WriteEvaluation(beam.PTransform):
    """(label index, probabilities) of every scored play -> eval.json, when there is any.

    One `CombineGlobally` (`ToList`) gathers the plays' probabilities (C floats
    a play) on one worker, which computes the trainer's report: a Beam step, so
    it runs on every runner and eval.json is written before the card.
    """

    def __init__(self, output_dir: str, labels: Sequence[str], about: Dict[str, Any]):
        super().__init__()
        self._write_fn = _WriteEvalFn(output_dir, labels, about)

    def expand(self, scored):
        return (scored
                | "Gather" >> beam.combiners.ToList()
                | "Write" >> beam.ParDo(self._write_fn))


def predictions_card_of(template: PredictionsCard, counts: JobCounts) -> PredictionsCard:
    """The run's predictions.json (WriteCard's `make_card`): `template` with the counts."""
    labelled = sum(n for by_label in counts.by_label.values()
                   for label, n in by_label.items() if label)
    return dataclasses.replace(
        template, num_written=sum(counts.written.values()), num_labelled=labelled,
        num_input=counts.num_input, num_rejected=counts.num_rejected,
        rejected_reasons=counts.rejected,
        eval_file=predictions_card.EVAL_NAME if labelled else "")


def build(pipeline: beam.Pipeline, config: PredictConfig):
    """Adds the prediction job to `pipeline`; returns the PCollection holding the card's path."""
    if config.sampling is not None:
        plays = pipeline | "SampleManifestPlays" >> SampleManifestPlays(config)
    else:
        plays = pipeline | "ReadRecordPlays" >> ReadRecordPlays(config)
    predicted = plays[PLAYS] | "PredictPlays" >> PredictPlays(config)
    formatted = predicted[PLAYS] | "FormatPredictions" >> FormatPredictions(config)
    written = formatted[PLAYS]
    prediction_files = (written
                        | "Lines" >> beam.Map(lambda rec: rec[-1])
                        | "WritePredictions" >> beam.io.WriteToText(
                            FileSystems.join(config.output_dir, PREDICTIONS_PREFIX),
                            file_name_suffix=".jsonl", num_shards=config.num_shards,
                            shard_name_template=SHARD_TEMPLATE))
    about = {"model": config.saved_model_dir, "input": config.card.input,
             "split": config.card.split}
    eval_files = formatted[SCORED] | "WriteEvaluation" >> WriteEvaluation(
        config.output_dir, config.labels, about)
    rejections = ((plays[REJECTED], predicted[REJECTED]) | "AllRejected" >> beam.Flatten())
    rejected_files = rejections | "WriteRejected" >> WriteRejected(config.output_dir)
    files = (prediction_files, eval_files, rejected_files) | "AllFiles" >> beam.Flatten()
    return (written, rejections) | "WritePredictionsCard" >> WriteCard(
        config.output_dir, predictions_card.CARD_NAME,
        functools.partial(predictions_card_of, config.card), files, plays["num_input"])
