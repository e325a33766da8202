"""Prediction job CLI: plays -> the exported classifier -> predictions-*.jsonl (+ eval.json).

    python beam_jobs/predict_plays.py --model=runs/demo/job --records_dir=runs/demo/records \
        --split=test --output_dir=runs/demo/predictions
    python beam_jobs/predict_plays.py --model=gs://b/job --input=gs://b/games.csv \
        --output_dir=gs://b/predictions --runner=DataflowRunner --project=... --setup_file=./setup.py

Batch prediction with Beam RunInference over the SavedModel `trainer.serving.export`
writes (its `serving_default` signature takes a play's JPEG frames and picks
and decodes them itself). The plays come from a records folder (their stored
frames) or from a manifest or folder tree, sampled as the records job samples
them with the frame sampling of the export card. Plays with a true label in the
model's vocabulary are scored: eval.json is the trainer's report over them.
`--compute_dtype` (auto: bfloat16 where the launching machine has it) is the
dtype the model computes in: float32 runs the SavedModel as exported, another
dtype the export's model.keras rebuilt in it behind the same serving function
(`trainer.serving.compute_dtype`); predictions.json records it. The job's flags
are `PredictOptions` and the shared classes of `beam_jobs.options`; the others
are Beam's. An unusable run prints one
`error: ...` line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:  # run as a script: make the repo root importable (here and in workers)
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

import apache_beam as beam  # pylint: disable=g-import-not-at-top,wrong-import-position
from apache_beam.options.pipeline_options import (  # pylint: disable=wrong-import-position
    PipelineOptions)

from beam_jobs import options as options_lib, outputs, plays, predict_pipeline  # pylint: disable=wrong-import-position
from beam_jobs import records_folder  # pylint: disable=wrong-import-position
from beam_jobs.options import (  # pylint: disable=wrong-import-position
    ComputeDtypeOptions, InferenceOptions, ManifestOptions, ModelOptions, OutputOptions,
    RecordsDirOptions)
from beam_jobs.predict_pipeline import PredictConfig  # pylint: disable=wrong-import-position
from schemas import export_card, predictions_card  # pylint: disable=wrong-import-position
from schemas.errors import SchemaError, UsageError, one_line  # pylint: disable=wrong-import-position
from schemas.export_card import ExportCard  # pylint: disable=wrong-import-position
from schemas.predictions_card import PredictionsCard  # pylint: disable=wrong-import-position
from trainer.serving import compute_dtype as dtype_lib  # pylint: disable=wrong-import-position

SPLITS = ("test", "val", "train", "all")


class PredictOptions(PipelineOptions):
    """The prediction job's own flags (the others, `--model` too: the shared classes in
    OPTION_CLASSES)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--split", choices=SPLITS, default="test",
                            help="with --records_dir: the split to predict (all: every split)")
        parser.add_argument("--top_k", type=int, default=3,
                            help="labels with their probabilities per play (default 3)")


OPTION_CLASSES = (PredictOptions, ModelOptions, ManifestOptions, RecordsDirOptions, InferenceOptions,
                  ComputeDtypeOptions, OutputOptions)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags as an argparse parser (--help, typo hints, tests)."""
    return options_lib.help_parser(
        "predict_plays.py", "Classify plays (a records folder's split, or a manifest) with an "
        "exported model, in a Beam pipeline. Flags not listed here are Beam's pipeline options.",
        OPTION_CLASSES)


def load_export(model: str) -> Tuple[str, ExportCard]:
    """(SavedModel folder, export card) of --model; UsageError when it holds no export."""
    from trainer.serving import export  # pylint: disable=g-import-not-at-top
    if not model:
        raise UsageError("--model is required (the training JOB_DIR or its saved_model/ folder)")
    try:
        saved_model_dir = export.resolve_saved_model_dir(model)
        card = export_card.read(saved_model_dir)
    except (FileNotFoundError, SchemaError) as err:
        raise UsageError(f"--model={model}: {one_line(err)}") from None
    return records_folder.absolute(saved_model_dir), card


def config_from_args(args: argparse.Namespace) -> PredictConfig:
    """Validates the flags (UsageError), checks model, input and output at launch."""
    for name, low in (("batch_size", 1), ("top_k", 1), ("num_shards", 0), ("model_copies", 0)):
        if getattr(args, name) < low:
            raise UsageError(f"--{name} must be >= {low}, got {getattr(args, name)}")
    if bool(args.records_dir) == bool(args.input):
        raise UsageError("give --records_dir (a records folder, with --split) or --input (a "
                         "manifest or folder tree), one of them")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    options_lib.compute_dtype(args)  # a bad value before the model is looked at
    saved_model_dir, export = load_export(args.model)
    compute_dtype = dtype_lib.resolve(args.compute_dtype, saved_model_dir)
    labels = list(export.labels)
    common = dict(output_dir=args.output_dir, saved_model_dir=saved_model_dir,
                  batch_size=args.batch_size,
                  num_shards=args.num_shards,
                  share_model_across_processes=args.share_model_across_processes,
                  model_copies=args.model_copies or None)
    card = PredictionsCard(model=saved_model_dir, labels=labels, input="", top_k=args.top_k,
                           compute_dtype=compute_dtype, args=dict(sorted(vars(args).items())))
    if args.records_dir:
        records = records_folder.read_records_card(args.records_dir)
        patterns = records_folder.split_patterns(args.records_dir, records)
        if args.split != "all":
            if args.split not in patterns:
                raise UsageError(f"--split={args.split}: {args.records_dir} has no {args.split} "
                                 f"shards (it has {', '.join(patterns)}; or --split=all)")
            patterns = {args.split: patterns[args.split]}
        records_folder.check_output_dir_is_not_records_dir(args.output_dir, args.records_dir)
        outputs.prepare_output_dir(args.output_dir, args.overwrite)
        card.input, card.split = records_folder.absolute(args.records_dir), args.split
        return PredictConfig(card=card, split_patterns=patterns,
                             records_compression=records.compression, records_card=records,
                             **common)
    plays.check_input(args.input)
    outputs.prepare_output_dir(args.output_dir, args.overwrite)
    card.input = args.input
    return PredictConfig(card=card, sampling=export.sampling, **common)


def read_card(output_dir: str) -> PredictionsCard:
    """The predictions.json a run wrote into `output_dir`."""
    return outputs.read_card(output_dir, PredictionsCard, predictions_card.CARD_NAME)


def summary(card: PredictionsCard, output_dir: str) -> str:
    scored = f", {card.num_labelled} with true labels -> {card.eval_file}" if card.eval_file else ""
    head = (f"predictions: {card.num_written} plays predicted{scored}, {card.num_rejected} "
            f"rejected of {card.num_input} (computed in {card.compute_dtype}) -> {output_dir}")
    return outputs.summary(head, card, output_dir)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> PredictionsCard:
    """Runs the job; returns the card it wrote. Raises UsageError for an unusable run."""
    parser = build_parser()
    options = options_lib.parse_job_options(argv, parser)
    config = config_from_args(options_lib.job_args(options, parser, OPTION_CLASSES))
    options_lib.run_pipeline(options, lambda p: predict_pipeline.build(p, config),
                             save_main_session, test_pipeline)
    card = read_card(config.output_dir)
    print(summary(card, config.output_dir))
    return card


def main(argv: Optional[List[str]] = None) -> int:
    return options_lib.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
