"""The Beam jobs' command lines: flags as `PipelineOptions` subclasses (the Beam way), checks, run.

Beam gathers the flags of every imported `PipelineOptions` subclass into one
parser, so a flag may be declared by one class only: the flags that several
jobs take live here (`OutputOptions`: all three; `ManifestOptions`: the records
and prediction jobs; `RecordsDirOptions` and `InferenceOptions`: the embed and
prediction jobs; `ComputeDtypeOptions`: those two and the find-plays job; `ModelOptions`: the
prediction and find-plays jobs; `NoPlayLabelOptions`: the records and find-plays jobs; `DemoOptions`, the records job's demo knobs, beside them). A job's
`OPTION_CLASSES` lists the classes it takes, and
`check_flags` refuses a flag of another playclips job's classes that Beam knows
because they are imported in the same process (the shared ones always are).

`check_flags` refuses a flag that neither these classes nor Beam define
(Beam only logs and drops such flags, so a typo like `--inputs=plays.csv`
would quietly run the job on its defaults). It imports the runner named by
`--runner` first, so that option classes which register on that import
(the Dask runner's `--dask_client_address`, say) count as known.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from typing import Any, Callable, List, Optional, Sequence, Type

import apache_beam as beam
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  SetupOptions, StandardOptions)

from backbone import precision
from schemas.errors import EXIT_USAGE, UsageError, one_line


class OutputOptions(PipelineOptions):
    """Where a job writes, and whether it may replace what is there (both jobs)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--output_dir", default="",
                            help="where the shards, the card and rejected-*.jsonl go, local or "
                                 "gs:// (the records job's default: runs/demo/records)")
        parser.add_argument("--num_shards", type=int, default=0,
                            help="shards per split (default 0: the runner decides)")
        parser.add_argument("--overwrite", action="store_true",
                            help="write into a non-empty --output_dir, deleting an earlier run's "
                                 "files there (without it, both jobs refuse a non-empty folder)")
        parser.add_argument("--progress_seconds", type=float, default=10.0,
                            help="log a progress line (plays done of the total, plays/s, time "
                                 "left) at most this often per worker process; 0: none")


class DemoOptions(PipelineOptions):
    """The records job's demo knobs (demo_data.plays): how hard the plays are, how often each label."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--demo_profile", default="default",
                            help="demo rendering profile: default, or hard (stronger camera "
                                 "motion, grain and blur, occluding players, scripts that differ "
                                 "later and less)")
        parser.add_argument("--demo_label_weights", default="",
                            help="how often each demo label comes up: balanced (default), "
                                 "imbalanced (20:1, spot_up most, cut and putback least) or "
                                 "label=weight,... (whole numbers; labels left out weigh 1)")


class ManifestOptions(PipelineOptions):
    """What to read: a manifest or a folder tree (the records and prediction jobs)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input", default="",
            help="a manifest (.csv or .jsonl: play_id,label,path[,game_id,split,frame_rate,"
                 "start,end]; relative paths are relative to the manifest; start and end, in "
                 "seconds, cut the play from a longer video) or a folder tree "
                 "ROOT/<label>/<play_id>/<frames> | ROOT/<label>/<play_id>.<mp4|avi|mov|webm|mkv>. "
                 "Records job default: synthetic demo plays. Find-plays job: game videos (a glob, "
                 "a folder of videos, or a manifest with a path column; its rows with "
                 "label,start,end are the true plays)")


class ModelOptions(PipelineOptions):
    """The exported model a job runs (the prediction and find-plays jobs)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--model", default="",
                            help="the training JOB_DIR (local or gs://; the prediction job also "
                                 "takes its saved_model/ folder; the find-plays job needs the "
                                 "JOB_DIR, with model.keras)")


class NoPlayLabelOptions(PipelineOptions):
    """The label of time that is no play (the records and find-plays jobs)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--no_play_label", default="no_play",
            help="records job: the label of the background clips (input rows of this label "
                 "are background clips too, e.g. mined false plays); find-plays job: the "
                 "model's label for time that is no play, whose windows separate plays (default "
                 "%(default)s)")


class RecordsDirOptions(PipelineOptions):
    """A records-job output folder to read (the embed and prediction jobs)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--records_dir", default="",
                            help="a records-job output folder (dataset.json and the play shards)")


DEFAULT_BATCH_SIZE = 4  # plays per inference batch


class InferenceOptions(PipelineOptions):
    """How RunInference batches plays and holds its model (the embed and prediction jobs; what
    the model computes in: `ComputeDtypeOptions`)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                            help="plays per inference batch")
        parser.add_argument("--share_model_across_processes", action="store_true",
                            help="load the model once per machine for all worker processes "
                                 "(RunInference's large-model mode, e.g. one copy on a GPU) "
                                 "instead of once per process")
        parser.add_argument("--model_copies", type=int, default=0,
                            help="with worker processes: how many copies of the model a machine "
                                 "loads and shares (0: one per process, or one with "
                                 "--share_model_across_processes)")


class ComputeDtypeOptions(PipelineOptions):
    """The dtype a job's model computes in (the embed, prediction and find-plays jobs). It takes
    no argparse choices, so that a bad value is one `error:` line (`compute_dtype`), as the
    other usage errors, not Beam's whole usage."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--compute_dtype", default="auto",
                            metavar="{" + ",".join(precision.COMPUTE_DTYPES) + "}",
                            help=precision.compute_dtype_help(
                                "the model", "resolved on the launching machine and recorded in "
                                "the job's card (features.json, predictions.json, "
                                "find_plays.json)"))


def compute_dtype(args: argparse.Namespace) -> str:
    """--compute_dtype resolved on this (the launching) machine; UsageError for a bad value."""
    return precision.resolve_compute_dtype(args.compute_dtype)


def help_parser(prog: str, description: str,
                classes: Sequence[Type[PipelineOptions]]) -> argparse.ArgumentParser:
    """An argparse parser holding the flags of `classes`, for --help and typo hints."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for cls in classes:
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def import_runner(options: PipelineOptions) -> None:
    """Imports the module of the `--runner` given, which registers its option classes."""
    runner = options.view_as(StandardOptions).runner
    if not isinstance(runner, str) or not runner:
        return
    from apache_beam.runners import runner as runner_lib  # pylint: disable=g-import-not-at-top
    try:
        runner_lib.create_runner(runner)
    except ImportError as err:
        raise UsageError(f"--runner={runner} is not available: {err} (for Dataflow: "
                         f"pip install 'apache-beam[gcp]')") from None
    except ValueError as err:  # an unknown runner name
        raise UsageError(f"--runner={runner}: {err}") from None


def _playclips_classes() -> List[Type[PipelineOptions]]:
    """The option classes of the playclips jobs imported in this process (Beam knows their flags)."""
    classes = {f"{c.__module__}.{c.__qualname__}": c for c in PipelineOptions.__subclasses__()
               if c.__module__.split(".")[0] == "beam_jobs" or c.__module__ == "__main__"}
    return list(classes.values())


def _other_jobs_flag(argv: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """The first flag of `argv` that another playclips job declares but this one does not take."""
    ours = set(vars(parser.parse_args([])))
    theirs = set()
    for cls in _playclips_classes():
        other = argparse.ArgumentParser(add_help=False)
        cls._add_argparse_args(other)  # pylint: disable=protected-access
        theirs.update(vars(other.parse_args([])))
    for arg in argv:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if name in theirs and name not in ours:
            return f"--{name}"
    return ""


def check_flags(options: PipelineOptions, parser: argparse.ArgumentParser,
                argv: Sequence[str] = ()) -> None:
    """UsageError for a flag that neither the job (`parser`) nor any Beam option class defines.

    Also for a flag of another playclips job (`argv`): Beam knows it, this job ignores it.
    """
    foreign = _other_jobs_flag(argv, parser)
    if foreign:
        raise UsageError(f"{foreign} is not a flag of {parser.prog} (another playclips job's; "
                         f"see --help)")
    import_runner(options)
    known = set(options.get_all_options())
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - known)
    if unknown:
        ours = [f"--{name}" for name in vars(parser.parse_args([]))]
        flag = f"--{unknown[0]}"
        close = difflib.get_close_matches(flag, ours + [f"--{name}" for name in known], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"unknown flag {flag}{hint}: neither this job nor Beam's pipeline "
                         f"options define it (see --help)")


def parse_job_options(argv: Optional[Sequence[str]],
                      parser: argparse.ArgumentParser) -> PipelineOptions:
    """All of a job's flags as PipelineOptions, after --help and the typo checks.

    Raises UsageError for an unknown flag, and for Beam's `--labels` (Dataflow
    job labels, key=value) given like a label list.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        raise SystemExit(0)
    options = PipelineOptions(argv)
    check_flags(options, parser, argv)
    job_labels = options.view_as(GoogleCloudOptions).labels or []
    if any("=" not in label for label in job_labels):
        raise UsageError(f"--labels={','.join(job_labels)} is Beam's flag for Dataflow job labels "
                         f"(key=value); the records job's label list is --label_vocabulary")
    return options


def job_args(options: PipelineOptions, parser: argparse.ArgumentParser,
             classes: Sequence[Type[PipelineOptions]]) -> argparse.Namespace:
    """The job's own flags (those of `classes`) from `options`, as a namespace."""
    views = [options.view_as(cls) for cls in classes]
    return argparse.Namespace(**{name: next(getattr(v, name) for v in views if hasattr(v, name))
                                 for name in vars(parser.parse_args([]))})


def run_pipeline(options: PipelineOptions, build: Callable[[beam.Pipeline], None],
                 save_main_session: bool = True,
                 test_pipeline: Optional[beam.Pipeline] = None) -> None:
    """Builds and runs a job's pipeline (or `build`s into `test_pipeline`), waiting for it.

    Multi-processing and portable workers import the repo's packages (schemas,
    media, beam_jobs) from PYTHONPATH, which gets the repo root here.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    options.view_as(SetupOptions).save_main_session = save_main_session
    with (test_pipeline or beam.Pipeline(options=options)) as pipeline:
        build(pipeline)


def configure_logging(level: int = logging.WARNING) -> None:
    """What a command shows of the library modules' logs: `level` and above, on stderr."""
    logging.basicConfig(format="%(levelname)s:%(name)s:%(message)s")
    logging.getLogger().setLevel(level)
    from beam_jobs import progress  # pylint: disable=g-import-not-at-top
    logging.getLogger(progress.__name__).setLevel(min(level, logging.INFO))
    progress.show_worker_progress()


def main(run: Callable[[Optional[Sequence[str]]], Any], argv: Optional[Sequence[str]] = None) -> int:
    """A job's command line: runs `run(argv)`; a UsageError prints one `error:` line, exit 2.

    Library modules log through their own loggers; the command shows warnings
    and errors (Beam's workers included) and prints only its summary lines.
    """
    configure_logging()
    try:
        run(argv)
    except UsageError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    return 0
