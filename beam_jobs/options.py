"""The Beam jobs' command lines: flags as `PipelineOptions` subclasses (the Beam way), checks, run.

Beam gathers the flags of every imported `PipelineOptions` subclass into one
parser, so a flag may be declared by one class only: `--output_dir` and
`--num_shards`, which both jobs take, live in `OutputOptions`.

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
from typing import Any, Callable, Optional, Sequence, Type

import apache_beam as beam
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                  SetupOptions, StandardOptions)

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


def check_flags(options: PipelineOptions, parser: argparse.ArgumentParser) -> None:
    """UsageError for a flag that neither the job (`parser`) nor any Beam option class defines."""
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
    check_flags(options, parser)
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
