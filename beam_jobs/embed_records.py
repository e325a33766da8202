"""Embed job CLI: play records -> the frozen base's features per stored frame (a feature cache).

    python beam_jobs/embed_records.py --runner=DirectRunner --records_dir=runs/demo/records \
        --output_dir=runs/demo/features --weights=none --cut_layer=block2_pool [--views=flip]

A frozen base is a constant function of a frame, so its features are computed
once here (Beam RunInference, `beam_jobs.embed_pipeline`) and the trainer trains
only the head on them.

At launch the base is built once (`backbone.vgg16.build_base`) and saved
as OUTPUT_DIR/base.keras; workers load that file, so every worker (and the
classifier exported later) uses the weights that made the features, random
bases included. Frame size and frame count come from the records' dataset.json.
The job's flags are `EmbedOptions` and `beam_jobs.options.OutputOptions`; the
others are Beam's. An unusable run prints one `error: ...` line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:  # run as a script: make the repo root importable (here and in workers)
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

import apache_beam as beam  # pylint: disable=g-import-not-at-top,wrong-import-position
from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=wrong-import-position
from apache_beam.io.filesystems import FileSystems  # pylint: disable=wrong-import-position
from apache_beam.options.pipeline_options import (  # pylint: disable=wrong-import-position
    PipelineOptions)

from beam_jobs import embed_pipeline, options as options_lib, outputs, records_folder  # pylint: disable=wrong-import-position
from beam_jobs.embed_pipeline import EmbedConfig  # pylint: disable=wrong-import-position
from beam_jobs.options import (  # pylint: disable=wrong-import-position
    ComputeDtypeOptions, InferenceOptions, OutputOptions, RecordsDirOptions)
from beam_jobs import progress  # pylint: disable=wrong-import-position
from schemas import dataset_card, feature_record, features_card  # pylint: disable=wrong-import-position
from schemas.errors import UsageError  # pylint: disable=wrong-import-position
from schemas.features_card import FeaturesCard  # pylint: disable=wrong-import-position


class EmbedOptions(PipelineOptions):
    """The embed job's own flags (`--records_dir`: RecordsDirOptions; `--batch_size`,
    `--share_model_across_processes`, `--model_copies`: InferenceOptions; `--output_dir`,
    `--num_shards`, `--overwrite`: OutputOptions)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--weights", default=features_card.DEFAULT_WEIGHTS,
                            help="imagenet | none (random, seeded by --seed) | PATH of VGG16 notop "
                                 "weights")
        parser.add_argument("--cut_layer", default=features_card.DEFAULT_CUT_LAYER,
                            help="last VGG16 layer of the base, e.g. block4_pool")
        parser.add_argument("--views", choices=("none", "flip"), default="none",
                            help="flip: also store the left-right flipped frames' features as view 1")
        parser.add_argument("--feature_dtype", choices=feature_record.DTYPES, default="float16",
                            help="dtype of the stored features")
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of the random base with --weights=none")


OPTION_CLASSES = (EmbedOptions, RecordsDirOptions, InferenceOptions, ComputeDtypeOptions,
                  OutputOptions)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags as an argparse parser (--help, typo hints, tests)."""
    return options_lib.help_parser(
        "embed_records.py", "Compute the frozen VGG16 base's features of every stored frame of "
        "play records (a feature cache for the trainer). Flags not listed here are Beam's "
        "pipeline options.", OPTION_CLASSES)


def save_base(args: argparse.Namespace, records: dataset_card.DatasetCard,
              path: str) -> Tuple[str, int]:
    """Builds the base the flags name, saves it at `path`; returns (its sha256, feature dim)."""
    import hashlib  # pylint: disable=g-import-not-at-top
    import keras  # pylint: disable=g-import-not-at-top
    from backbone import vgg16  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(args.seed)  # makes a --weights=none base reproducible
    base = vgg16.build_base(args.cut_layer, args.weights, (records.height, records.width))
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, features_card.BASE_FILE)
        base.save(local)
        with open(local, "rb") as f:
            data = f.read()
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest(), int(base.output_shape[-1])


def check_base_flags(args: argparse.Namespace) -> None:
    """UsageError for a cut layer or weights file that cannot work, before the output is touched."""
    from backbone import vgg16  # pylint: disable=g-import-not-at-top
    vgg16.check_layer(args.cut_layer, "--cut_layer", vgg16.vgg16_layer_names())
    key = args.weights.strip()
    if key.lower() not in ("none", "imagenet") and "://" not in key and not os.path.isfile(key):
        raise UsageError(f"--weights={key!r}: no such file (give 'imagenet', 'none' or a VGG16 "
                         f"notop weights file)")


def config_from_args(args: argparse.Namespace) -> EmbedConfig:
    """Validates the flags (UsageError), checks input and output, and saves the base."""
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    compute_dtype = options_lib.compute_dtype(args)
    if args.num_shards < 0:
        raise UsageError(f"--num_shards must be >= 0, got {args.num_shards}")
    if args.model_copies < 0:
        raise UsageError(f"--model_copies must be >= 0, got {args.model_copies}")
    records = records_folder.read_records_card(args.records_dir)
    patterns = records_folder.split_patterns(args.records_dir, records)
    check_base_flags(args)
    records_folder.check_output_dir_is_not_records_dir(args.output_dir, args.records_dir)
    outputs.prepare_output_dir(args.output_dir, args.overwrite)
    base_digest, feature_dim = save_base(
        args, records, FileSystems.join(args.output_dir, features_card.BASE_FILE))
    weights_digest = features_card.weights_sha256(args.weights)  # imagenet: now in the Keras cache
    card = FeaturesCard(
        weights=args.weights, weights_sha256=weights_digest, base_sha256=base_digest,
        cut_layer=args.cut_layer, height=records.height, width=records.width,
        dtype=args.feature_dtype, views=["none", "flip"] if args.views == "flip" else ["none"],
        feature_dim=feature_dim, num_frames=records.num_frames, labels=list(records.labels),
        counts={split: 0 for split in records.counts},
        records_dir=records_folder.absolute(args.records_dir), seed=args.seed,
        compute_dtype=compute_dtype)
    return EmbedConfig(
        records_dir=args.records_dir, output_dir=args.output_dir, split_patterns=patterns,
        records_compression=records.compression, card=card, batch_size=args.batch_size,
        num_shards=args.num_shards, share_model_across_processes=args.share_model_across_processes,
        model_copies=args.model_copies or None, expected_plays=sum(records.counts.values()),
        progress_seconds=args.progress_seconds)


def read_card(output_dir: str) -> FeaturesCard:
    """The features.json a run wrote into `output_dir`."""
    return outputs.read_card(output_dir, FeaturesCard, features_card.CARD_NAME)


def summary(card: FeaturesCard, output_dir: str) -> str:
    written = ", ".join(f"{split}={n}" for split, n in card.counts.items())
    head = (f"features: {sum(card.counts.values())} plays embedded ({written}), "
            f"{card.num_rejected} rejected of {card.num_input}; [{len(card.views)}, "
            f"{card.num_frames}, {card.feature_dim}] {card.dtype} per play (computed in "
            f"{card.compute_dtype}) -> {output_dir}")
    return outputs.summary(head, card, output_dir)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> FeaturesCard:
    """Runs the job; returns the features card it wrote. Raises UsageError for an unusable run."""
    parser = build_parser()
    options = options_lib.parse_job_options(argv, parser)
    config = config_from_args(options_lib.job_args(options, parser, OPTION_CLASSES))
    config.num_workers = progress.num_workers_of(options)
    options_lib.run_pipeline(options, lambda p: embed_pipeline.build(p, config), save_main_session,
                             test_pipeline)
    card = read_card(config.output_dir)
    print(summary(card, config.output_dir))
    return card


def main(argv: Optional[List[str]] = None) -> int:
    return options_lib.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
