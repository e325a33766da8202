"""Records job CLI: plays -> sharded TFRecords + dataset.json + rejected-*.jsonl.

    python beam_jobs/make_records.py --runner=DirectRunner        # built-in demo plays
    python beam_jobs/make_records.py --input=plays.csv --output_dir=gs://b/recs \
        --runner=DataflowRunner --project=... --region=... --setup_file=./setup.py

The job's flags are `RecordsOptions` and `beam_jobs.options.OutputOptions`;
the other flags are Beam's (--direct_num_workers,
--direct_running_mode=multi_processing, Dataflow flags...).
An unusable run (missing manifest, no usable column, empty input, bad --splits,
unwritable output, a flag neither this job nor Beam defines) prints one
`error: ...` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

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

from beam_jobs import options as options_lib  # pylint: disable=wrong-import-position
from beam_jobs import no_play as no_play_lib  # pylint: disable=wrong-import-position
from beam_jobs import outputs, records_pipeline, plays, splits as splits_lib  # pylint: disable=wrong-import-position
from beam_jobs import progress  # pylint: disable=wrong-import-position
from beam_jobs.options import (  # pylint: disable=wrong-import-position
    DemoOptions, ManifestOptions, NoPlayLabelOptions, OutputOptions)
from schemas import dataset_card, labels as labels_lib, sampling  # pylint: disable=wrong-import-position
from schemas.errors import UsageError  # pylint: disable=wrong-import-position
from schemas.sampling import FrameSampling  # pylint: disable=wrong-import-position

DEFAULT_OUTPUT_DIR = "runs/demo/records"


class RecordsOptions(PipelineOptions):
    """The records job's own flags (`--input`: ManifestOptions; `--output_dir`, `--num_shards`,
    `--overwrite`: OutputOptions; `--no_play_label`: NoPlayLabelOptions)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--label_vocabulary", default="",
            help="the label vocabulary in index order: a comma-separated list, or a file with "
                 "one label per line (blank lines and # comments ignored); plays with other "
                 "labels are rejected (default: the sorted set of labels seen). Not --labels: "
                 "that is Beam's flag for Dataflow job labels")
        parser.add_argument(
            "--num_frames", type=int, default=sampling.DEFAULT_NUM_FRAMES,
            help="frames per play, sampled uniformly over the whole play")
        parser.add_argument("--frame_size", default=str(sampling.DEFAULT_FRAME_SIZE),
                            help="output frame size: N (square) or HxW")
        parser.add_argument(
            "--resize_mode", choices=sampling.RESIZE_MODES, default=sampling.DEFAULT_RESIZE_MODE,
            help="crop: scale the shorter side to the frame size, then center-crop; pad: scale "
                 "the longer side to the frame size, then letterbox on black")
        parser.add_argument(
            "--pad_short", choices=sampling.PAD_SHORT_MODES, default="",
            help="plays with fewer than --num_frames frames: rejected (default), or padded by "
                 "looping from the start (loop) or repeating the last frame (last)")
        parser.add_argument(
            "--jpeg_quality", type=int, default=sampling.DEFAULT_JPEG_QUALITY,
            help="JPEG quality of re-encoded frames; frames that are already RGB JPEGs of the "
                 "frame size are copied unchanged")
        parser.add_argument(
            "--frame_rate", type=float, default=sampling.DEFAULT_FRAME_RATE,
            help="frames per second of frame folders, for timestamps, unless the manifest has a "
                 "frame_rate column (videos use their own timestamps)")
        parser.add_argument(
            "--splits", default=splits_lib.DEFAULT_SPLITS,
            help="split fractions, summing to 1; plays go to splits by a stable hash of game_id "
                 "(else play_id); a manifest split column overrides")
        parser.add_argument("--compression", choices=("none", "gzip"), default="none",
                            help="TFRecord compression (gzip adds .gz to shard names)")
        parser.add_argument("--demo_plays", type=int, default=records_pipeline.DEFAULT_DEMO_PLAYS,
                            help="number of demo plays without --input (default: 30 per label)")
        parser.add_argument("--demo_seed", type=int, default=0, help="demo play seed")
        parser.add_argument(
            "--demo_game_videos", type=int, default=0,
            help="without --input: render N synthetic game videos of "
                 f"{demo_plays_per_game()} demo plays each and their play-by-play manifest into "
                 "OUTPUT_DIR/demo_games, and cut the plays from them (instead of --demo_plays)")
        parser.add_argument(
            "--video_chunk_seconds", type=float,
            default=records_pipeline.DEFAULT_VIDEO_CHUNK_SECONDS,
            help="plays cut from one video are grouped by video and by this many seconds of "
                 "start time; each group opens its video once and decodes forward, and groups "
                 "run in parallel (0: one group per video)")
        parser.add_argument(
            "--no_play_clips", default="0",
            help="plays cut from game videos: also cut this many background clips per game video "
                 "from the time no play covers (N, or a ratio to its plays such as 1x), a quarter "
                 "of them hard negatives that overlap a play with tIoU below 0.3, labelled "
                 "--no_play_label (0: none)")
        parser.add_argument(
            "--shifted_plays", type=int, default=0,
            help="plays cut from game videos: also cut this many copies of each training play "
                 "with its range moved by up to --max_shift of its length, under its label, so "
                 "that a model for the timeline names a window that holds most of a play "
                 "(0: none)")
        parser.add_argument(
            "--max_shift", type=float, default=0.3,
            help="how far --shifted_plays move a play, as a share of its length (at most 0.5)")


def demo_plays_per_game() -> int:
    from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
    return demo_plays.PLAYS_PER_GAME


OPTION_CLASSES = (RecordsOptions, ManifestOptions, DemoOptions, NoPlayLabelOptions,
                  OutputOptions)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags as an argparse parser (--help, typo hints, tests)."""
    return options_lib.help_parser(
        "make_records.py", "Turn plays into sharded TFRecords (one SequenceExample per play). "
        "Flags not listed here are Beam's pipeline options.", OPTION_CLASSES)


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


def read_label_file(path: str) -> Optional[str]:
    """A label file's text, local or on any Beam file system (None when there is no such file)."""
    if "://" not in path:
        return labels_lib.read_local_file(path)
    try:
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:  # Beam's BeamIOError is an OSError
        raise UsageError(f"cannot read label file {path}: {err}") from None


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
    if args.demo_game_videos < 0 or args.video_chunk_seconds < 0:
        raise UsageError("--demo_game_videos and --video_chunk_seconds must be >= 0")
    height, width = _parse_frame_size(args.frame_size)
    split_fractions = splits_lib.parse_splits(args.splits)
    labels = labels_lib.label_vocabulary(args.label_vocabulary, "--label_vocabulary",
                                         read_label_file)
    per_game, ratio = no_play_lib.parse_amount(args.no_play_clips)
    if args.shifted_plays < 0 or not 0 < args.max_shift <= 0.5:
        raise UsageError("--shifted_plays must be >= 0 and --max_shift in (0, 0.5]")
    no_play = no_play_lib.NoPlayConfig(label=args.no_play_label.strip(), per_game=per_game,
                                       ratio=ratio, seed=args.demo_seed,
                                       shifted_per_play=args.shifted_plays,
                                       max_shift=args.max_shift)
    if no_play.enabled:
        if not no_play.label:
            raise UsageError("--no_play_label must not be empty")
        if labels and no_play.label not in labels:
            labels = labels + [no_play.label]
    expected_plays = args.demo_plays
    if args.input:
        expected_plays = plays.check_input(args.input)
    elif args.demo_plays < 1:
        raise UsageError(f"--demo_plays must be >= 1 without --input, got {args.demo_plays}")
    label_weights = demo_flags(args)
    output_dir = args.output_dir or DEFAULT_OUTPUT_DIR
    outputs.prepare_output_dir(output_dir, args.overwrite)
    frame_rate = args.frame_rate
    input_path = args.input
    if not args.input:
        from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
        frame_rate = float(demo_plays.DEMO_FRAME_RATE)
        if args.demo_game_videos:
            input_path = write_demo_games(output_dir, args.demo_game_videos, args.demo_seed,
                                          args.num_frames, args.demo_profile)
            expected_plays = plays.check_input(input_path)
    if no_play.adds_clips:  # the progress total, with the clips the job adds (an estimate)
        expected_plays = 0 if no_play.per_game else int(round(expected_plays * (
            1 + no_play.ratio + no_play.shifted_per_play * split_fractions.get("train", 0.0))))
    how = FrameSampling(num_frames=args.num_frames, height=height, width=width,
                        resize_mode=args.resize_mode, pad_short=args.pad_short,
                        jpeg_quality=args.jpeg_quality, frame_rate=frame_rate)
    return records_pipeline.JobConfig(
        output_dir=output_dir, input=input_path, labels=labels, sampling=how,
        splits=split_fractions,
        num_shards=args.num_shards, compression=args.compression, demo_plays=args.demo_plays,
        demo_seed=args.demo_seed, demo_profile=args.demo_profile, demo_label_weights=label_weights,
        video_chunk_seconds=args.video_chunk_seconds, no_play=no_play,
        expected_plays=expected_plays, progress_seconds=args.progress_seconds,
        args=dict(sorted(vars(args).items())))


def demo_flags(args: argparse.Namespace) -> Dict[str, int]:
    """Checks --demo_profile and --demo_label_weights; the label weights ({} without demo plays)."""
    if args.input:
        return {}
    from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
    demo_plays.profile_of(args.demo_profile)
    return demo_plays.parse_label_weights(args.demo_label_weights)


def write_demo_games(output_dir: str, num_games: int, seed: int, num_frames: int,
                     profile: str = "default") -> str:
    """Renders the demo game videos and their manifest into OUTPUT_DIR/demo_games; returns its path."""
    from demo_data import games as demo_games  # pylint: disable=g-import-not-at-top
    from media import frames  # pylint: disable=g-import-not-at-top
    folder = FileSystems.join(output_dir, "demo_games")
    local = folder if "://" not in folder else tempfile.mkdtemp(prefix="demo_games_")
    demo_games.write_demo_games(local, num_games, seed,
                                num_frames=frames.demo_source_frames(num_frames), profile=profile)
    if local != folder:  # an object store: upload what was rendered locally
        for name in sorted(os.listdir(local)):
            with open(os.path.join(local, name), "rb") as src, \
                    FileSystems.create(FileSystems.join(folder, name)) as dst:
                shutil.copyfileobj(src, dst)
        shutil.rmtree(local, ignore_errors=True)
    return FileSystems.join(folder, demo_games.MANIFEST_NAME)


def read_card(output_dir: str) -> dataset_card.DatasetCard:
    """The dataset.json a run wrote into `output_dir`."""
    return outputs.read_card(output_dir, dataset_card.DatasetCard, dataset_card.CARD_NAME)


def summary(card: dataset_card.DatasetCard, output_dir: str) -> str:
    written = ", ".join(f"{split}={n}" for split, n in card.counts.items())
    head = (f"records: {sum(card.counts.values())} plays written ({written}), "
            f"{card.num_rejected} rejected of {card.num_input} -> {output_dir}")
    return outputs.summary(head, card, output_dir)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dataset_card.DatasetCard:
    """Runs the job; returns the dataset card it wrote. Raises UsageError for an unusable run."""
    parser = build_parser()
    options = options_lib.parse_job_options(argv, parser)
    config = config_from_args(options_lib.job_args(options, parser, OPTION_CLASSES))
    config.num_workers = progress.num_workers_of(options)
    options_lib.run_pipeline(options, lambda p: records_pipeline.build(p, config), save_main_session,
                             test_pipeline)
    card = read_card(config.output_dir)
    print(summary(card, config.output_dir))
    if not sum(card.counts.values()):
        reasons = ", ".join(f"{k}={v}" for k, v in card.rejected_reasons.items()) or "none"
        raise UsageError(f"no play written: {card.num_rejected} of {card.num_input} rejected "
                         f"({reasons}; see {config.output_dir}/rejected-*.jsonl)")
    return card


def main(argv: Optional[List[str]] = None) -> int:
    return options_lib.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
