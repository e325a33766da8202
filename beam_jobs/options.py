"""Command-line flags of the Beam jobs, as `PipelineOptions` subclasses (the Beam way).

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
from typing import Sequence, Type

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from schemas.errors import UsageError


class OutputOptions(PipelineOptions):
    """Where a job writes (both jobs)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--output_dir", default="",
                            help="where the shards, the card and rejected-*.jsonl go, local or "
                                 "gs:// (the records job's default: runs/demo/records)")
        parser.add_argument("--num_shards", type=int, default=0,
                            help="shards per split (default 0: the runner decides)")


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
