"""Records job CLI: plays -> sharded TFRecords + dataset.json + rejected-*.jsonl.

    python beam_jobs/make_records.py --runner=DirectRunner        # built-in demo plays
    python beam_jobs/make_records.py --input=plays.csv --output_dir=gs://b/recs \
        --runner=DataflowRunner --project=... --region=... --setup_file=./setup.py

Flags this job does not define go to Beam's PipelineOptions
(--direct_num_workers, --direct_running_mode=multi_processing, Dataflow flags...).
An unusable run (missing manifest, no usable column, empty input, bad --splits,
unwritable output, a flag neither this job nor Beam defines) prints one
`error: ...` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from typing import List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:  # run as a script: make the repo root importable (here and in workers)
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

import apache_beam as beam  # pylint: disable=g-import-not-at-top,wrong-import-position
from apache_beam.io.filesystems import FileSystems  # pylint: disable=wrong-import-position
from apache_beam.options.pipeline_options import (  # pylint: disable=wrong-import-position
    PipelineOptions, SetupOptions)

from beam_jobs import pipeline as records_pipeline, plays, splits as splits_lib  # pylint: disable=wrong-import-position
from media import frames  # pylint: disable=wrong-import-position
from schemas import dataset_card  # pylint: disable=wrong-import-position

UsageError = plays.UsageError
EXIT_USAGE = 2
DEFAULT_OUTPUT_DIR = "runs/demo/records"


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make_records.py",
        description="Turn plays into sharded TFRecords (one SequenceExample per play). Flags not "
                    "listed here are passed to Beam's PipelineOptions.")
    parser.add_argument("--input", default="",
                        help="a manifest (.csv or .jsonl: play_id,label,path[,game_id,split,"
                             "frame_rate]; relative paths are relative to the manifest) or a "
                             "folder tree ROOT/<label>/<play_id>/<frames> | ROOT/<label>/"
                             "<play_id>.<mp4|avi|mov|webm|mkv>. Default: synthetic demo plays")
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                        help=f"where shards, dataset.json and rejected-*.jsonl go, local or gs:// "
                             f"(default {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--labels", default="",
                        help="comma-separated label vocabulary in index order; plays with other "
                             "labels are rejected (default: the sorted set of labels seen)")
    parser.add_argument("--num_frames", type=int, default=40,
                        help="frames per play, sampled uniformly over the whole play (default 40)")
    parser.add_argument("--frame_size", default="224",
                        help="output frame size: N (square) or HxW (default 224)")
    parser.add_argument("--resize_mode", choices=frames.RESIZE_MODES, default="crop",
                        help="crop: scale the shorter side to the frame size, then center-crop; "
                             "pad: scale the longer side to the frame size, then letterbox on "
                             "black (default crop)")
    parser.add_argument("--pad_short", choices=frames.PAD_SHORT_MODES, default="",
                        help="plays with fewer than --num_frames frames: rejected (default), or "
                             "padded by looping from the start (loop) or repeating the last "
                             "frame (last); the record stores the pad mode")
    parser.add_argument("--jpeg_quality", type=int, default=90,
                        help="JPEG quality of re-encoded frames (default 90); frames that are "
                             "already RGB JPEGs of the frame size are copied unchanged")
    parser.add_argument("--frame_rate", type=float, default=frames.DEFAULT_FRAME_RATE,
                        help="frames per second of frame folders, for timestamps, unless the "
                             "manifest has a frame_rate column (default 30; videos use their "
                             "own timestamps)")
    parser.add_argument("--splits", default=splits_lib.DEFAULT_SPLITS,
                        help="split fractions, summing to 1; plays go to splits by a stable hash "
                             "of game_id (else play_id); a manifest split column overrides "
                             f"(default {splits_lib.DEFAULT_SPLITS})")
    parser.add_argument("--num_shards", type=int, default=0,
                        help="shards per split (default 0: the runner decides)")
    parser.add_argument("--compression", choices=("none", "gzip"), default="none",
                        help="TFRecord compression (gzip adds .gz to shard names; default none)")
    parser.add_argument("--demo_plays", type=int, default=330,
                        help="number of demo plays without --input (default 330 = 30 per label)")
    parser.add_argument("--demo_seed", type=int, default=0, help="demo play seed (default 0)")
    return parser


def _parse_frame_size(text: str):
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise UsageError(f"--frame_size must be N or HxW with positive integers, got {text!r}")
    return parts[0], parts[1]


def config_from_args(args: argparse.Namespace) -> records_pipeline.JobConfig:
    """Validates the flags (UsageError) and checks input and output at launch."""
    if args.num_frames < 1:
        raise UsageError(f"--num_frames must be >= 1, got {args.num_frames}")
    if not 1 <= args.jpeg_quality <= 100:
        raise UsageError(f"--jpeg_quality must be in [1, 100], got {args.jpeg_quality}")
    if not args.frame_rate > 0:
        raise UsageError(f"--frame_rate must be > 0, got {args.frame_rate}")
    if args.num_shards < 0:
        raise UsageError(f"--num_shards must be >= 0, got {args.num_shards}")
    height, width = _parse_frame_size(args.frame_size)
    split_fractions = splits_lib.parse_splits(args.splits)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()] or None
    if labels and len(set(labels)) != len(labels):
        raise UsageError(f"--labels has repeated labels: {args.labels}")
    if args.input:
        plays.check_input(args.input)
    elif args.demo_plays < 1:
        raise UsageError(f"--demo_plays must be >= 1 without --input, got {args.demo_plays}")
    plays.check_output_dir(args.output_dir)
    frame_rate = args.frame_rate
    if not args.input:
        from media import demo_plays  # pylint: disable=g-import-not-at-top
        frame_rate = float(demo_plays.DEMO_FRAME_RATE)
    return records_pipeline.JobConfig(
        output_dir=args.output_dir, input=args.input, labels=labels, num_frames=args.num_frames,
        height=height, width=width, resize_mode=args.resize_mode, pad_short=args.pad_short,
        jpeg_quality=args.jpeg_quality, frame_rate=frame_rate, splits=split_fractions,
        num_shards=args.num_shards, compression=args.compression, demo_plays=args.demo_plays,
        demo_seed=args.demo_seed, args=dict(sorted(vars(args).items())))


def check_beam_flags(parser: argparse.ArgumentParser, options: PipelineOptions) -> None:
    """UsageError for a flag that neither this job nor any Beam PipelineOptions defines.

    Beam only logs and drops such flags, so a typo (`--manifest=plays.csv`)
    would quietly run the job on the demo plays.
    """
    known = set(options.get_all_options())
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - known)
    if unknown:
        ours = [flag for action in parser._actions for flag in action.option_strings  # pylint: disable=protected-access
                if flag.startswith("--")]
        flag = f"--{unknown[0]}"
        close = difflib.get_close_matches(flag, ours + [f"--{name}" for name in known], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"unknown flag {flag}{hint}: neither this job nor Beam's pipeline "
                         f"options define it (see --help)")


def read_card(output_dir: str) -> dataset_card.DatasetCard:
    with FileSystems.open(FileSystems.join(output_dir, dataset_card.CARD_NAME)) as f:
        return dataset_card.DatasetCard.from_json(f.read().decode("utf-8"))


def summary(card: dataset_card.DatasetCard, output_dir: str) -> str:
    written = ", ".join(f"{split}={n}" for split, n in card.counts.items())
    lines = [f"records: {sum(card.counts.values())} plays written ({written}), "
             f"{card.num_rejected} rejected of {card.num_input} -> {output_dir}"]
    if card.rejected_reasons:
        reasons = ", ".join(f"{k}={v}" for k, v in card.rejected_reasons.items())
        lines.append(f"rejected: {reasons} (see {output_dir}/rejected-*.jsonl)")
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dataset_card.DatasetCard:
    """Runs the job; returns the dataset card it wrote. Raises UsageError for an unusable run."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(beam_args)
    check_beam_flags(parser, options)
    config = config_from_args(args)
    if _repo_root() not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        # Multi-processing workers (subprocesses) import beam_jobs and schemas from here.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (_repo_root(), os.environ.get("PYTHONPATH", "")) if p)
    options.view_as(SetupOptions).save_main_session = save_main_session
    with (test_pipeline or beam.Pipeline(options=options)) as p:
        records_pipeline.build(p, config)
    card = read_card(config.output_dir)
    print(summary(card, config.output_dir))
    return card


def main(argv: Optional[List[str]] = None) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    try:
        run(argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
