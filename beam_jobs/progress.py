"""Progress of a long job: a Beam metric per play done, and a log line every few seconds.

    records | "Progress" >> Progress("records", total=2000)

`Progress` is a side branch: it consumes the PCollection it is applied to (a
ParDo that fuses into the producer's stage, so no stage boundary holds
anything) and yields nothing. Every element adds one to the Beam counter
`<name>_done` (namespace playclips), which Dataflow, Flink and Spark show as a
job counter. Each worker process also logs, at most every `interval_s` seconds:

    records: 120 of 2000 plays (6%), 3.1 plays/s, about 10m 6s left

and, with several worker processes (`num_workers` > 1), its own share, the
total and time left estimated as if every worker went at its pace:

    records: worker pid 4711 (of 2): 60 plays, 1.5 plays/s; about 120 of 2000 in all (6%), ...

Several `Progress` transforms with the same `name` in one pipeline (e.g. the
records and the rejections) add up into one tally per process.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from typing import Callable, Dict, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_jobs.outputs import METRICS_NAMESPACE

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0

_TALLIES: Dict[str, "_Tally"] = {}  # per process: run id -> tally
_TALLIES_LOCK = threading.Lock()


def duration(seconds: float) -> str:
    """`3h 2m`, `10m 6s`, `42s`: a short human duration."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


class _Tally:
    """One process's count for one run, and when it last logged."""

    def __init__(self, now: float):
        self.lock = threading.Lock()
        self.done = 0
        self.start = now
        self.last_log = now


def _tally(run_id: str, now: float) -> _Tally:
    with _TALLIES_LOCK:
        if run_id not in _TALLIES:
            _TALLIES[run_id] = _Tally(now)
        return _TALLIES[run_id]


def progress_line(name: str, done: int, total: int, seconds: float, num_workers: int = 1,
                  pid: Optional[int] = None) -> str:
    """The log line for `done` plays in `seconds` (of `total`; 0: unknown) on one worker."""
    rate = done / seconds if seconds > 0 else 0.0
    if num_workers <= 1:
        head = f"{name}: {done}" + (f" of {total} plays ({100 * done // total}%)" if total
                                    else " plays")
        line = f"{head}, {rate:.1f} plays/s"
        if total and rate > 0 and done < total:
            line += f", about {duration((total - done) / rate)} left"
        return line
    line = (f"{name}: worker pid {pid or os.getpid()} (of {num_workers}): {done} plays, "
            f"{rate:.1f} plays/s")
    if total:
        all_done = min(done * num_workers, total)
        line += f"; about {all_done} of {total} in all ({100 * all_done // total}%)"
        if rate > 0 and all_done < total:
            line += f", about {duration((total - all_done) / (rate * num_workers))} left"
    return line


class _ProgressFn(beam.DoFn):
    """Counts each element (Beam metric and per-process tally); logs at most every interval_s."""

    def __init__(self, name: str, run_id: str, total: int, interval_s: float, num_workers: int,
                 clock: Callable[[], float]):
        self._name = name
        self._run_id = run_id
        self._total = total
        self._interval_s = interval_s
        self._num_workers = num_workers
        self._clock = clock
        self._counter = Metrics.counter(METRICS_NAMESPACE, f"{name}_done")

    def setup(self):
        self._state = _tally(self._run_id, self._clock())

    def process(self, unused_element):
        self._counter.inc()
        now = self._clock()
        state = self._state
        with state.lock:
            state.done += 1
            finished = self._num_workers <= 1 and self._total and state.done == self._total
            due = now - state.last_log >= self._interval_s
            if not (due or finished):
                return
            state.last_log = now
            done, seconds = state.done, now - state.start
        logger.info("%s", progress_line(self._name, done, self._total, seconds,
                                        self._num_workers))


class Progress(beam.PTransform):
    """Consumes a PCollection of plays done: a Beam counter per play, a log line every interval_s.

    `total`: the number of plays the input says (manifest rows, a card's counts;
    0 when unknown). `num_workers`: the worker processes sharing the work (1 in
    memory; `--direct_num_workers` under multi_processing), for the estimate.
    `run_id` joins several `Progress` of one run into one tally (a new id per
    job run; give the same id to transforms that count the same plays).
    """

    def __init__(self, name: str, total: int = 0, interval_s: float = DEFAULT_INTERVAL_S,
                 num_workers: int = 1, run_id: str = "",
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._fn = _ProgressFn(name, run_id or f"{name}-{uuid.uuid4().hex}", int(total or 0),
                               float(interval_s), max(1, int(num_workers)), clock)

    def expand(self, plays):
        return plays | "Count" >> beam.ParDo(self._fn)


def track(done, rejected, name: str, total: int, interval_s: float, num_workers: int) -> None:
    """One job's progress: its written plays (`done`) and its rejections add up to `total`."""
    run_id = f"{name}-{uuid.uuid4().hex}"
    for tag, plays in (("Written", done), ("Rejected", rejected)):
        _ = plays | f"Progress{tag}" >> Progress(name, total, interval_s, num_workers, run_id)


def num_workers_of(options) -> int:
    """Worker processes of a DirectRunner run in multi_processing mode; else 1."""
    from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=g-import-not-at-top
    direct = options.view_as(DirectOptions)
    if getattr(direct, "direct_running_mode", "") == "multi_processing":
        return max(1, int(direct.direct_num_workers or 1))
    return 1


_WORKER_LOGGER = "apache_beam.runners.portability.local_job_service"
_WORKER_MESSAGE = re.compile(r'message: "(?P<message>(?:[^"\\]|\\.)*)"')
_WORKER_WHERE = re.compile(r'log_location: "(?P<where>[^"]*)"')


class _WorkerProgressFilter(logging.Filter):
    """Lets the worker processes' progress lines through the launcher's log, and only those INFO.

    Under `--direct_running_mode=multi_processing` the workers' log entries reach
    the launcher through Beam's local job service, which logs each one as the
    text of its proto at the entry's level; this keeps the warnings as they are
    and turns a progress entry into its message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        text = record.getMessage()
        found, where = _WORKER_MESSAGE.search(text), _WORKER_WHERE.search(text)
        if not (found and where
                and os.path.join("beam_jobs", "progress.py:") in where.group("where")):
            return False
        record.msg, record.args = found.group("message"), ()
        record.name = __name__
        return True


def show_worker_progress() -> None:
    """Shows the worker processes' progress lines (multi_processing) in the launcher's log."""
    job_service = logging.getLogger(_WORKER_LOGGER)
    if not any(isinstance(f, _WorkerProgressFilter) for f in job_service.filters):
        job_service.addFilter(_WorkerProgressFilter())
    job_service.setLevel(min(job_service.getEffectiveLevel(), logging.INFO))
