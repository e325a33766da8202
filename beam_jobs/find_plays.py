"""Find-plays job CLI: a season of game videos -> every game's timeline and one table of its plays.

    python beam_jobs/find_plays.py --model=runs/games/job --input=runs/games/unseen/plays.csv \
        --output_dir=runs/games/season [--chunk_seconds=300] [--hop_seconds=0.5] \
        [--direct_num_workers=2 --direct_running_mode=multi_processing]

`python -m trainer.timeline` scans one game in one process; this job scans
many, and spreads a long game over workers: each game is cut into chunks of
`--chunk_seconds` of video, a chunk is streamed from its first frame (a seek)
on the whole video's sampling grid and reads one window past its end, so that
every window whose first frame falls in the chunk is computed there, once.
Per game the windows are sorted and merged exactly as the timeline merges
them (`beam_jobs.find_plays_pipeline`), so a game's timeline.json equals the
single-process timeline's. `--input` is a glob, a folder of videos or a
manifest with a `path` column (relative to the manifest); a manifest's rows with
label, start and end are the true plays (or `--plays`), and then eval.json is
the detection report over all games. The job's flags are `FindPlaysOptions`
and the shared classes of `beam_jobs.options`; the others are Beam's. An
unusable run prints one `error: ...` line and exits 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import posixpath
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:  # run as a script: make the repo root importable (here and in workers)
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

import apache_beam as beam  # pylint: disable=g-import-not-at-top,wrong-import-position
from apache_beam.io.filesystems import FileSystems  # pylint: disable=wrong-import-position
from apache_beam.options.pipeline_options import (  # pylint: disable=wrong-import-position
    PipelineOptions)

from beam_jobs import find_plays_pipeline, options as options_lib, outputs  # pylint: disable=wrong-import-position
from beam_jobs import records_folder  # pylint: disable=wrong-import-position
from beam_jobs.find_plays_pipeline import FindConfig, ModelInfo  # pylint: disable=wrong-import-position
from beam_jobs.options import (  # pylint: disable=wrong-import-position
    ComputeDtypeOptions, ManifestOptions, ModelOptions, NoPlayLabelOptions, OutputOptions)
from media import files  # pylint: disable=wrong-import-position
from media.frames import is_video  # pylint: disable=wrong-import-position
from schemas.errors import SchemaError, UsageError, one_line  # pylint: disable=wrong-import-position
from trainer.serving import compute_dtype as dtype_lib  # pylint: disable=wrong-import-position
from trainer.serving import timeline as timeline_lib  # pylint: disable=wrong-import-position
from trainer.serving import timeline_outputs  # pylint: disable=wrong-import-position

DEFAULT_CHUNK_SECONDS = 300.0


class FindPlaysOptions(PipelineOptions):
    """The find-plays job's own flags (the others: the shared classes in OPTION_CLASSES)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--chunk_seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
                            help="seconds of video per chunk: a game's chunks run on different "
                                 "workers (default %(default)s)")
        parser.add_argument("--hop_seconds", type=float, default=timeline_lib.DEFAULT_HOP_SECONDS,
                            help="seconds between window starts (default %(default)s)")
        parser.add_argument("--window_seconds", type=float, default=None,
                            help="window length (default: the model's record_num_frames / "
                                 "frame_rate)")
        parser.add_argument("--min_confidence", type=float,
                            default=timeline_lib.DEFAULT_MIN_CONFIDENCE,
                            help="windows whose best probability is below this are 'uncertain' "
                                 "(default %(default)s)")
        parser.add_argument("--min_play_seconds", type=float, default=None,
                            help="detected plays shorter than this are dropped (default: half "
                                 "a window)")
        parser.add_argument("--frames_per_batch", type=int,
                            default=timeline_lib.DEFAULT_BATCH_SIZE,
                            help="sampled frames per call of the model's base (default "
                                 "%(default)s)")
        parser.add_argument("--plays", default="",
                            help="a manifest of the true plays (label,path,start,end; rows of "
                                 "other videos are ignored): eval.json scores the found plays "
                                 "of all games (default: --input's rows with start and end)")


OPTION_CLASSES = (FindPlaysOptions, ModelOptions, ManifestOptions, NoPlayLabelOptions,
                  ComputeDtypeOptions, OutputOptions)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags as an argparse parser (--help, typo hints, tests)."""
    return options_lib.help_parser(
        "find_plays.py", "Find and label the plays of many game videos with an exported model, "
        "a game's chunks on several workers, in a Beam pipeline. Flags not listed here are "
        "Beam's pipeline options.", OPTION_CLASSES)


def _read_rows(path: str) -> List[Dict[str, str]]:
    try:
        with FileSystems.open(path) as f:
            text = f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read manifest {path}: {one_line(err)}") from None
    return list(csv.DictReader(io.StringIO(text)))


def _relative(base: str, path: str) -> str:
    if "://" in path or os.path.isabs(path):
        return path
    joined = files.join(os.path.dirname(base) if "://" not in base else posixpath.dirname(base),
                        path)
    return joined if "://" in joined else os.path.abspath(joined)


def true_plays(rows: Sequence[Dict[str, str]], manifest: str) -> Dict[str, List[Dict[str, Any]]]:
    """Video file name -> its true plays, from a manifest's rows with label, start and end."""
    truth: Dict[str, List[Dict[str, Any]]] = {}
    for number, row in enumerate(rows, 2):
        if not (row.get("start") or "").strip():
            continue
        try:
            play = timeline_outputs.true_plays_row(row)
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"{manifest} row {number}: a true play needs label, start and end "
                             f"({one_line(err)})") from None
        name = posixpath.basename((row.get("path") or "").replace("\\", "/"))
        truth.setdefault(name, []).append(play)
    return truth


def list_games(input_path: str) -> Tuple[List[str], Dict[str, List[Dict[str, Any]]]]:
    """(game videos, true plays by video file name) of --input: a glob, a folder, a manifest or
    one video."""
    if not input_path:
        raise UsageError("--input is required (a glob, a folder of game videos, or a manifest "
                         "with a path column)")
    truth: Dict[str, List[Dict[str, Any]]] = {}
    try:
        if any(c in input_path for c in "*?["):
            videos = sorted(files.match(input_path))
            what = "glob"
        elif input_path.lower().endswith(".csv"):
            if not files.exists(input_path):
                raise UsageError(f"manifest {input_path} does not exist")
            rows = _read_rows(input_path)
            if rows and "path" not in rows[0]:
                raise UsageError(f"manifest {input_path} has no 'path' column")
            videos = list(dict.fromkeys(_relative(input_path, row["path"]) for row in rows
                                        if (row.get("path") or "").strip()))
            truth = true_plays(rows, input_path)
            what = "manifest"
        elif is_video(input_path):
            videos, what = [input_path] if files.exists(input_path) else [], "path"
        else:
            pattern = files.join(input_path.rstrip("/"), "*")
            videos = sorted(p for p in files.match(pattern) if is_video(p))
            what = "folder"
    except OSError as err:
        raise UsageError(f"cannot list --input={input_path}: {one_line(err)}") from None
    if not videos:
        raise UsageError(f"--input={input_path}: the {what} names no game video")
    videos = [p if "://" in p else os.path.abspath(p) for p in videos]
    names: Dict[str, str] = {}
    for video in videos:
        name = find_plays_pipeline.game_name(video)
        if name in names:
            raise UsageError(f"two game videos are named {name!r} ({names[name]}, {video}): each "
                             f"game's timeline goes to OUTPUT_DIR/<name>/, rename one")
        names[name] = video
    return videos, truth


def model_info(model_dir: str, compute_dtype: str) -> ModelInfo:
    """The export card of --model (a JOB_DIR with model.keras); UsageError when there is none."""
    from trainer.serving import export  # pylint: disable=g-import-not-at-top
    if not model_dir:
        raise UsageError("--model is required (the training JOB_DIR)")
    try:
        card = export.load_metadata(model_dir)
    except (FileNotFoundError, SchemaError, OSError) as err:
        raise UsageError(f"--model={model_dir}: {one_line(err)}") from None
    path = dtype_lib.keras_model_path(model_dir)
    if not path:
        raise UsageError(f"--model={model_dir}: no {export.MODEL_FILENAME} there: pass the "
                         f"training job's JOB_DIR (the job needs the Keras model)")
    model_dir = records_folder.absolute(model_dir)
    return ModelInfo(model_dir=model_dir, model_path=records_folder.absolute(path),
                     labels=[str(label) for label in card.labels], num_frames=card.num_frames,
                     record_num_frames=card.record_num_frames,
                     frame_rate=card.sampling.frame_rate, compute_dtype=compute_dtype)


def prepare_output_dir(output_dir: str, overwrite: bool) -> None:
    """The jobs' folder rule (`outputs.prepare_output_dir`); --overwrite also deletes an earlier
    run's game folders (those holding a timeline.json)."""
    if overwrite:
        for path in outputs.listing(output_dir):
            if FileSystems.exists(FileSystems.join(path, "timeline.json")):
                FileSystems.delete([path])
    outputs.prepare_output_dir(output_dir, overwrite)


def config_from_args(args: argparse.Namespace) -> FindConfig:
    """Validates the flags (UsageError), checks model, input and output at launch."""
    for name, low in (("frames_per_batch", 1), ("num_shards", 0)):
        if getattr(args, name) < low:
            raise UsageError(f"--{name} must be >= {low}, got {getattr(args, name)}")
    if not args.chunk_seconds > 0:
        raise UsageError(f"--chunk_seconds must be > 0, got {args.chunk_seconds}")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    if not args.no_play_label.strip():
        raise UsageError("--no_play_label must not be empty")
    options_lib.compute_dtype(args)  # a bad value before the model is looked at
    if not args.model:
        raise UsageError("--model is required (the training JOB_DIR)")
    compute_dtype = dtype_lib.resolve(args.compute_dtype, args.model)
    info = model_info(args.model, compute_dtype)
    grid, min_play_seconds = timeline_lib.check_settings(
        info, args.hop_seconds, args.window_seconds, args.min_confidence, args.frames_per_batch,
        args.min_play_seconds)
    if args.chunk_seconds * grid.rate < grid.hop_frames:
        raise UsageError(f"--chunk_seconds={args.chunk_seconds} is shorter than a hop "
                         f"({grid.hop_frames / grid.rate:g} s)")
    videos, truth = list_games(args.input)
    if args.plays:
        if not files.exists(args.plays):
            raise UsageError(f"--plays={args.plays} does not exist")
        truth = true_plays(_read_rows(args.plays), args.plays)
    names = {posixpath.basename(v.replace("\\", "/")) for v in videos}
    truth = {name: plays for name, plays in truth.items() if name in names}
    if args.plays and not truth:
        raise UsageError(f"--plays={args.plays} has no row for any of the game videos")
    prepare_output_dir(args.output_dir, args.overwrite)
    about = {"model": info.model_dir, "input": args.input, "plays": args.plays,
             "labels": info.labels, "compute_dtype": compute_dtype,
             "chunk_seconds": args.chunk_seconds, "window_seconds": grid.window_frames / grid.rate,
             "hop_seconds": grid.hop_frames / grid.rate, "frame_rate": grid.rate,
             "min_confidence": args.min_confidence, "min_play_seconds": min_play_seconds,
             "no_play_label": args.no_play_label.strip(),
             "args": {k: v for k, v in sorted(vars(args).items())}}
    return FindConfig(output_dir=args.output_dir, model=info, grid=grid, games=videos,
                      truth=truth or None, chunk_seconds=args.chunk_seconds,
                      min_confidence=args.min_confidence, min_play_seconds=min_play_seconds,
                      no_play_label=args.no_play_label.strip(),
                      frames_per_batch=args.frames_per_batch, num_shards=args.num_shards,
                      about=about)


def read_card(output_dir: str) -> Dict[str, Any]:
    """The find_plays.json a run wrote into `output_dir`."""
    import json  # pylint: disable=g-import-not-at-top
    with FileSystems.open(FileSystems.join(output_dir, find_plays_pipeline.CARD_NAME)) as f:
        return json.loads(f.read().decode("utf-8"))


def summary(card: Dict[str, Any], output_dir: str) -> str:
    partial = f" ({card['num_games_partial']} cut short)" if card["num_games_partial"] else ""
    lines = [f"find_plays: {card['num_plays']} plays in {card['num_games']} games{partial} from "
             f"{card['num_windows']} windows in {card['num_chunks']} chunks, "
             f"{card['num_games_rejected']} games rejected of {card['num_input']} "
             f"(computed in {card['compute_dtype']}) -> {output_dir}"]
    if card["rejected_reasons"]:
        reasons = ", ".join(f"{k}={v}" for k, v in card["rejected_reasons"].items())
        lines.append(f"rejected: {reasons} (see {output_dir}/rejected-*.jsonl)")
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> Dict[str, Any]:
    """Runs the job; returns the card it wrote. Raises UsageError for an unusable run."""
    parser = build_parser()
    options = options_lib.parse_job_options(argv, parser)
    config = config_from_args(options_lib.job_args(options, parser, OPTION_CLASSES))
    options_lib.run_pipeline(options, lambda p: find_plays_pipeline.build(p, config),
                             save_main_session, test_pipeline)
    card = read_card(config.output_dir)
    print(summary(card, config.output_dir))
    return card


def main(argv: Optional[List[str]] = None) -> int:
    return options_lib.main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
