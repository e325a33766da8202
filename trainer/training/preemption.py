"""Exact resume after preemption: step backups of a fit phase and the SIGTERM watch.

A phase's backup folder (JOB_DIR/backup/phase{n}) holds `state.json`, which
names the weights file (model and optimizer, `model.save_weights`) and the
variables file (the metrics' running totals, the seed generators' states of
dropout, the corrupt-record counters) of the last backup, and where it was taken: the epoch in progress and the steps
of it done. The files of a backup are written first and `state.json` last
(written aside and renamed), so a kill at any moment leaves the previous
backup whole. The fit loop (`trainer.training.fit_loop`) reads the state before a fit and
resumes at that step of that epoch; the reader (`trainer.data.reader.EpochPlan`)
skips the records of the steps already taken. docs/preemption.md has the
whole story.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

EXIT_PREEMPTED = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM
STATE_JSON = "state.json"


class Preempted(Exception):
    """Raised out of `model.fit` once the backup after a SIGTERM is written."""

    def __init__(self, message: str, state: Optional["ResumeState"] = None):
        super().__init__(message)
        self.state = state


@dataclasses.dataclass
class ResumeState:
    """Where a phase's last backup was taken and the files that hold it."""

    epoch: int  # the epoch in progress (the next one to run when step == 0)
    step: int  # its training steps done
    weights: str  # file name in the backup folder: model and optimizer
    variables: str  # file name: metric totals and counters (npz)
    reason: str  # "epoch" (an epoch's end), "steps" (--backup_every_steps), "sigterm"
    best: Optional[Dict[str, Any]] = None  # the best epoch's record so far (callbacks.BestWeights)
    corrupt_at_epoch_start: Dict[str, int] = dataclasses.field(default_factory=dict)


def load_state(folder: str) -> Optional[ResumeState]:
    """The state of `folder`'s last backup, or None when there is none."""
    path = os.path.join(folder, STATE_JSON)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return ResumeState(**json.load(f))


class SigtermWatch:
    """Notes a SIGTERM (the main thread's handler) and bounds what follows by the grace period.

    The fit backs up at the end of the step in progress (`StepBackup`); when
    no step ends within `grace_seconds` (a step longer than the grace, a
    SIGTERM during evaluation or export) the process exits EXIT_PREEMPTED
    without a backup and the next start resumes from the last one.
    """

    def __init__(self, grace_seconds: float):
        self.grace_seconds = grace_seconds
        self.received: Optional[float] = None
        self._previous = None
        self._timer: Optional[threading.Timer] = None

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame):  # pylint: disable=unused-argument
        if self.received is not None:
            return
        self.received = time.monotonic()  # no logging here: the main thread may hold its lock
        self._timer = threading.Timer(self.grace_seconds, self._out_of_time)
        self._timer.daemon = True
        self._timer.start()

    def _out_of_time(self):
        logger.error("SIGTERM: no step ended within %.0fs; exiting %d without a backup (the "
                     "next start resumes from the last one)", self.grace_seconds, EXIT_PREEMPTED)
        logging.shutdown()
        os._exit(EXIT_PREEMPTED)  # pylint: disable=protected-access

    def __enter__(self) -> "SigtermWatch":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        if self._timer is not None and exc[0] is None:
            self._timer.cancel()


def agreement(strategy: tf.distribute.Strategy, num_workers: int) -> Callable[[bool], bool]:
    """flag -> whether any worker's flag is set: every worker backs up at the same step.

    One worker alone answers its own flag. Across workers it is an all-reduce
    that every worker runs at the end of every step (they are in lockstep
    there), the equivalent of tf.distribute's PreemptionCheckpointHandler
    agreeing on the step to save at.
    """
    if num_workers <= 1:
        return lambda flag: flag

    def agree(flag: bool) -> bool:
        value = strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(1.0 if flag else 0.0))
        return float(strategy.reduce("SUM", value, axis=None)) > 0
    return agree


class StepBackup(keras.callbacks.Callback):
    """Backs a fit up at each epoch's end, every `every_steps` steps and at a SIGTERM.

    Placed last among the fit's callbacks, so an epoch's backup follows its
    history row and checkpoints. On a SIGTERM (`watch`) it backs up at the end
    of the step and raises `Preempted` out of `fit`. With `resume`, it loads
    that backup when the fit begins (after Keras has built the optimizer) and,
    when the fit starts inside an epoch (`initial_step`), puts the metric
    totals back after Keras has reset them, so the epoch's logs are those of
    the uninterrupted run.
    """

    def __init__(self, folder: str, watch: Optional[SigtermWatch], *, every_steps: int = 0,
                 resume: Optional[ResumeState] = None, initial_step: int = 0,
                 agree: Callable[[bool], bool] = lambda flag: flag,
                 counters: Optional[Dict[str, tf.Variable]] = None):
        super().__init__()
        self.folder = folder
        self.watch = watch
        self.every_steps = every_steps
        self.resume = resume
        self.initial_step = initial_step
        self.agree = agree
        self.counters = dict(counters or {})
        self.fit_callbacks: List[keras.callbacks.Callback] = []  # for the best value so far
        self._first_epoch = True
        self._epoch_now = 0
        self._offset = 0
        self._saved_values: Dict[str, np.ndarray] = {}
        self._pending_totals: Optional[Dict[str, np.ndarray]] = None
        self._corrupt_at_epoch_start: Dict[str, int] = {}

    # ------------------------------------------------------------ restore

    def _random_states(self) -> List:
        """The model's variables outside its weights: the seed generators' states (dropout)."""
        weights = {id(v) for v in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def _add_saved_totals(self) -> None:
        """Adds the interrupted epoch's metric totals to those of the fit's first step.

        Keras builds the compiled metrics' variables in the first step, so they
        cannot be set before it; their states are sums (totals and counts), and
        saved + first step is the uninterrupted run's sum, bit for bit.
        """
        pending, self._pending_totals = self._pending_totals, None
        for variable in self.model.metrics_variables:
            if variable.path in pending:
                variable.assign(np.asarray(variable.numpy()) + pending.pop(variable.path))
        if pending:
            logger.warning("metric state not restored (no such metric): %s", ", ".join(pending))

    def on_train_begin(self, logs=None):
        if self.resume is None:
            return
        optimizer = self.model.optimizer
        if not optimizer.built:  # Keras builds it at the first step: its state loads into it
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.folder, self.resume.weights))
        with tf.io.gfile.GFile(os.path.join(self.folder, self.resume.variables), "rb") as f:
            saved = np.load(io.BytesIO(f.read()))
            self._saved_values = {name: saved[name] for name in saved.files}
        for i, variable in enumerate(self._random_states()):
            if f"random/{i}" in self._saved_values:
                variable.assign(self._saved_values[f"random/{i}"])
        for name, counter in self.counters.items():
            if f"counter/{name}" in self._saved_values:
                counter.assign(self._saved_values[f"counter/{name}"])

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_now = epoch
        self._offset = self.initial_step if self._first_epoch else 0
        if self._first_epoch and self.initial_step and self.resume is not None:
            self._pending_totals = {name[len("metric/"):]: value
                                    for name, value in self._saved_values.items()
                                    if name.startswith("metric/")}
            self._corrupt_at_epoch_start = dict(self.resume.corrupt_at_epoch_start)
            for callback in self.fit_callbacks:  # the epoch's corrupt count starts where it did
                if hasattr(callback, "epoch_start"):
                    callback.epoch_start(self._corrupt_at_epoch_start)
        else:
            self._corrupt_at_epoch_start = self._counter_values()
        self._first_epoch = False

    # ------------------------------------------------------------ save

    def _counter_values(self) -> Dict[str, int]:
        return {name: int(counter.numpy()) for name, counter in self.counters.items()}

    def _best(self) -> Optional[Dict[str, Any]]:
        from trainer.training import callbacks as callbacks_lib  # pylint: disable=g-import-not-at-top
        return callbacks_lib.best_of(self.fit_callbacks)

    def save(self, epoch: int, step: int, reason: str) -> ResumeState:
        """Writes a backup of (epoch, step): its files, then state.json in one rename."""
        tf.io.gfile.makedirs(self.folder)
        previous = load_state(self.folder)
        name = f"e{epoch}-s{step}"
        state = ResumeState(epoch=epoch, step=step, weights=f"{name}.weights.h5",
                            variables=f"{name}.variables.npz", reason=reason, best=self._best(),
                            corrupt_at_epoch_start=self._corrupt_at_epoch_start if step else {})
        self.model.save_weights(os.path.join(self.folder, state.weights), overwrite=True)
        values = {f"metric/{v.path}": np.asarray(v.numpy()) for v in self.model.metrics_variables}
        values.update({f"random/{i}": np.asarray(v.numpy())
                       for i, v in enumerate(self._random_states())})
        values.update({f"counter/{name_}": np.asarray(value)
                       for name_, value in self._counter_values().items()})
        buffer = io.BytesIO()
        np.savez(buffer, **values)
        with tf.io.gfile.GFile(os.path.join(self.folder, state.variables), "wb") as f:
            f.write(buffer.getvalue())
        path = os.path.join(self.folder, STATE_JSON)
        with tf.io.gfile.GFile(path + ".tmp", "w") as f:
            f.write(json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True))
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        if previous is not None and previous.weights != state.weights:
            for old in (previous.weights, previous.variables):
                try:
                    tf.io.gfile.remove(os.path.join(self.folder, old))
                except tf.errors.NotFoundError:
                    pass
        return state

    def _preempt(self, epoch: int, step: int) -> None:
        state = self.save(epoch, step, "sigterm")
        received = self.watch.received if self.watch else None
        when = (f"{time.monotonic() - received:.1f}s after SIGTERM" if received is not None
                else "at another worker's SIGTERM")
        message = (f"preempted: backed up epoch {epoch + 1} step {step} in {self.folder} {when}; "
                   f"the same command resumes there")
        logger.info("%s", message)
        raise Preempted(message, state)

    def _requested(self) -> bool:
        return self.agree(bool(self.watch and self.watch.requested))

    def on_train_batch_end(self, batch, logs=None):
        if self._pending_totals is not None:
            self._add_saved_totals()
        if batch + 1 >= self.params.get("steps", 0):
            return  # the epoch's last step: its end (validation, history) backs up after it
        step = self._offset + batch + 1
        epoch = self._epoch_now
        if self._requested():
            self._preempt(epoch, step)
        if self.every_steps and step % self.every_steps == 0:
            self.save(epoch, step, "steps")

    def on_epoch_end(self, epoch, logs=None):
        if self._requested():  # a SIGTERM during validation: the epoch is done, back up after it
            self._preempt(epoch + 1, 0)
        self.save(epoch + 1, 0, "epoch")
