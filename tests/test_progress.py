"""Progress lines and counters of long jobs (beam_jobs.progress): a tiny in-memory pipeline
with a clock that steps one second per reading, the line's arithmetic, and the worker
processes' lines as Beam's local job service hands them to the launcher."""

import logging
import re

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline

from beam_jobs import progress


class StepClock:
    """A clock that advances `step` seconds each time it is read (picklable, so each DoFn copy
    gets its own)."""

    def __init__(self, step: float = 1.0):
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_pipeline_logs_every_interval_and_counts_every_play(caplog):
    caplog.set_level(logging.INFO, logger=progress.__name__)
    pipeline = test_pipeline.TestPipeline()
    _ = (pipeline | beam.Create(range(25))
         | progress.Progress("things", total=25, interval_s=5, clock=StepClock()))
    result = pipeline.run()
    result.wait_until_finish()
    lines = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
    done = [int(re.match(r"things: (\d+) of 25 plays", line).group(1)) for line in lines]
    assert len(done) >= 3 and done == sorted(done), lines  # about every 5 plays, not each
    assert len(done) < 25
    assert lines[-1].startswith("things: 25 of 25 plays (100%), ") and "left" not in lines[-1]
    assert "plays/s, about" in lines[0] and lines[0].endswith("s left")
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("playclips"))["counters"]}
    assert counters["things_done"] == 25


def test_two_transforms_of_one_run_add_up(caplog):
    caplog.set_level(logging.INFO, logger=progress.__name__)
    pipeline = test_pipeline.TestPipeline()
    written = pipeline | "Written" >> beam.Create(range(7))
    rejected = pipeline | "Rejected" >> beam.Create(range(3))
    progress.track(written, rejected, "job", total=10, interval_s=1000, num_workers=1)
    result = pipeline.run()
    result.wait_until_finish()
    lines = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
    assert len(lines) == 1 and lines[0].startswith("job: 10 of 10 plays (100%)"), lines
    done = [c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("playclips").with_name("job_done"))["counters"]]
    assert sorted(done) == [3, 7]  # one counter per step, the same name: runners sum them


def test_progress_line_arithmetic():
    assert progress.progress_line("records", 100, 1000, 50.0) == (
        "records: 100 of 1000 plays (10%), 2.0 plays/s, about 7m 30s left")
    assert progress.progress_line("records", 7, 0, 2.0) == "records: 7 plays, 3.5 plays/s"
    line = progress.progress_line("embed", 50, 1000, 25.0, num_workers=2, pid=42)
    assert line == ("embed: worker pid 42 (of 2): 50 plays, 2.0 plays/s; about 100 of 1000 in "
                    "all (10%), about 3m 45s left")
    assert progress.duration(3 * 3600 + 125) == "3h 2m" and progress.duration(42) == "42s"


def _job_service_record(level, message, where):
    """A worker's log entry as `local_job_service.BeamFnLoggingServicer` logs it."""
    text = (f'severity: INFO timestamp {{   seconds: 1 }} message: "{message}" '
            f'instruction_id: "bundle_3" transform_id: "ProgressWritten/Count" '
            f'log_location: "{where}" thread: "Thread-1" ')
    return logging.LogRecord("apache_beam.runners.portability.local_job_service", level, "", 0,
                             "Worker: %s", (text,), None)


def test_worker_progress_lines_pass_the_launcher_and_other_worker_info_does_not():
    fltr = progress._WorkerProgressFilter()  # pylint: disable=protected-access
    ours = _job_service_record(logging.INFO, "records: worker pid 7 (of 2): 4 plays",
                               "/repo/beam_jobs/progress.py:120")
    assert fltr.filter(ours) and ours.getMessage() == "records: worker pid 7 (of 2): 4 plays"
    assert ours.name == progress.__name__
    theirs = _job_service_record(logging.INFO, "Creating state cache", "/x/sdk_worker.py:9")
    assert not fltr.filter(theirs)
    warning = _job_service_record(logging.WARNING, "something odd", "/x/sdk_worker.py:9")
    assert fltr.filter(warning) and "something odd" in warning.getMessage()
