"""The fit loop: a task's phases fitted under a strategy, each resumed from its step backup.

As Model Garden's `base_trainer`, the loop knows nothing of the problem: the
task (`trainer.training.play_task`) says what the phases are, builds each
phase's model and inputs, and counts what its input pipelines skip. The loop
builds each phase's model inside the strategy's scope, fits it with
callbacks made for each fit, and keeps the run's best and last epochs.

What it writes under JOB_DIR:
  checkpoints/       best.weights.h5 (+ best.json: which epoch), last.weights.h5 (chief)
  backup/phase{n}    step backups (`trainer.training.preemption`): a job preempted (SIGTERM)
                     or killed, started again with the same command, continues at the step
                     of the epoch where its last backup was taken
  logs/              TensorBoard (chief)
  history.csv        one row per epoch, appended on resume (chief); also the task's input
                     counts (corrupt_records, val_corrupt_records)
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import (TYPE_CHECKING, Any, Callable, ContextManager, Dict, List, Optional, Protocol,
                    Tuple)

import keras
import tensorflow as tf

from trainer.data import reader
from trainer.training import callbacks as callbacks_lib
from trainer.training import compat, distribution, hypertune, preemption
from trainer.training.config import RuntimeConfig

if TYPE_CHECKING:
    from trainer.training.play_task import Phase

logger = logging.getLogger(__name__)

HISTORY_CSV = "history.csv"
BEST_WEIGHTS = "best.weights.h5"
BEST_RECORD = "best.json"
LAST_WEIGHTS = "last.weights.h5"


class Task(Protocol):
    """What the loop asks of a task (`play_task.PlayClassificationTask` is one)."""

    def phases(self) -> List["Phase"]: ...
    def build_phase_model(self, phase: "Phase", previous: Optional[keras.Model]) -> keras.Model: ...
    def steps_per_epoch(self, phase: "Phase") -> int: ...
    def validates(self, phase: "Phase") -> bool: ...
    def validation_steps(self, phase: "Phase") -> Optional[int]: ...
    def dataset_fn(self, phase: "Phase", split: str, plan: Optional[reader.EpochPlan]
                   ) -> Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]: ...
    def input_counters(self, validating: bool) -> Dict[str, tf.Variable]: ...
    def reading(self) -> ContextManager[None]: ...


class FitLoop:
    """Fits a task's phases; `best` and `last` are the run's epoch records (`callbacks.BestWeights`)."""

    def __init__(self, task: Task, strategy: tf.distribute.Strategy,
                 runtime: RuntimeConfig, watch: Optional[preemption.SigtermWatch] = None):
        self.task = task
        self.strategy = strategy
        self.runtime = runtime
        self.watch = watch
        self.phases = task.phases()
        self.total_epochs = self.phases[-1].epochs
        # The best epoch so far: kept from a killed run's checkpoints when its backup says
        # this is a resume, else a new run starts afresh.
        self.best: Optional[Dict[str, Any]] = None
        self.last: Optional[Dict[str, Any]] = None
        if self.is_chief:
            if self._resuming():
                self.best = callbacks_lib.read_best(self.best_paths()[1])
            else:
                for path in self.best_paths():
                    if tf.io.gfile.exists(path):
                        tf.io.gfile.remove(path)

    @property
    def is_chief(self) -> bool:
        return distribution.is_chief(self.strategy)

    def _resuming(self) -> bool:
        """Whether a killed run left a backup (a finished run's backup folders are empty)."""
        if not tf.io.gfile.exists(self.runtime.backup_path):
            return False
        return any(files for _, _, files in tf.io.gfile.walk(self.runtime.backup_path))

    def best_paths(self) -> Tuple[str, str]:
        """(best.weights.h5, best.json) of this worker."""
        folder = distribution.write_dirpath(self.runtime.checkpoints_path, self.strategy)
        return os.path.join(folder, BEST_WEIGHTS), os.path.join(folder, BEST_RECORD)

    # ------------------------------------------------------------ run

    def run(self) -> Tuple[keras.Model, "Phase"]:
        """Fits every phase; returns the last phase's model and that phase.

        Raises `preemption.Preempted` after a SIGTERM, once the backup is written.
        """
        model: Optional[keras.Model] = None
        for phase in self.phases:
            with self.strategy.scope():
                model = self.task.build_phase_model(phase, model)
            self.fit(model, phase)
        return model, self.phases[-1]

    def finish(self) -> None:
        """Removes the step backups (kept until now: a restart skips what is done) and a
        non-chief worker's temp folders."""
        if not self.is_chief:
            for path in (self.runtime.checkpoints_path, self.runtime.logs_path,
                         os.path.join(self.runtime.job_dir, "history")):
                distribution.remove_temp_dirpath(path, self.strategy)
        for phase in self.phases:
            shutil.rmtree(self._backup_dir(phase.number), ignore_errors=True)

    def fit(self, model: keras.Model, phase: "Phase") -> None:
        """The `model.fit`s of `phase`, from its last backup if any.

        A backup inside an epoch is resumed in two fits: the rest of that epoch
        (its metric totals put back, its first steps' records skipped by the
        reader), then the epochs after it. The best epoch so far carries over
        from the phase before while the model is the same.
        """
        if (self.best or {}).get("model") != model.name:
            self.best = None  # the checkpoints of another model's weights
        steps = self.task.steps_per_epoch(phase)
        state = preemption.load_state(self._backup_dir(phase.number))
        epoch, step = (state.epoch, state.step) if state else (phase.initial_epoch, 0)
        if state is not None:
            self.best = state.best
            logger.info("resuming the %s phase at epoch %d step %d of %d (backup taken at %s)",
                        phase.name, epoch + 1, step, steps,
                        "a SIGTERM" if state.reason == "sigterm" else
                        "an epoch's end" if state.reason == "epoch" else "a periodic step")
        if step and epoch < phase.epochs:
            self._fit_epochs(model, phase, epoch, epoch + 1, steps, step, state)
            epoch, step, state = epoch + 1, 0, None
        self._fit_epochs(model, phase, epoch, phase.epochs, steps, 0, state)

    def _fit_epochs(self, model: keras.Model, phase: "Phase", initial_epoch: int, epochs: int,
                    steps: int, initial_step: int,
                    state: Optional[preemption.ResumeState]) -> None:
        """One `model.fit` of epochs [initial_epoch, epochs), the first from `initial_step`."""
        task, strategy = self.task, self.strategy
        plan = reader.EpochPlan(steps, initial_epoch, initial_step)
        train_ds = strategy.distribute_datasets_from_function(task.dataset_fn(phase, "train", plan))
        val_ds, val_steps = None, None
        if task.validates(phase):
            val_steps = task.validation_steps(phase)
            val_ds = strategy.distribute_datasets_from_function(task.dataset_fn(
                phase, "val", reader.EpochPlan(val_steps) if val_steps else None))
        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        callbacks = self.build_callbacks(phase, monitor, state=state, initial_step=initial_step)
        compat.reset_initial_epoch(model)
        with task.reading():
            model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch,
                      steps_per_epoch=steps - initial_step if initial_step else steps,
                      validation_data=val_ds, validation_steps=val_steps,
                      callbacks=callbacks, shuffle=False, verbose=1 if self.is_chief else 0)
        self.best = callbacks_lib.best_of(callbacks)
        best = [c for c in callbacks if isinstance(c, callbacks_lib.BestWeights)]
        if best and best[0].last is not None:
            self.last = best[0].last

    def _history_path(self) -> str:
        if self.is_chief:
            return os.path.join(self.runtime.job_dir, HISTORY_CSV)
        folder = distribution.write_dirpath(os.path.join(self.runtime.job_dir, "history"),
                                            self.strategy)
        return os.path.join(folder, HISTORY_CSV)

    def _backup_dir(self, phase_number: int) -> str:
        return distribution.backup_dirpath(
            os.path.join(self.runtime.backup_path, f"phase{phase_number}"), self.strategy)

    def build_callbacks(self, phase: "Phase", monitor: str, *,
                        state: Optional[preemption.ResumeState] = None,
                        initial_step: int = 0) -> List[keras.callbacks.Callback]:
        """The callbacks of one fit, new for each fit.

        The task's input counts into the epoch's logs; checkpoints (best =
        best of the run while the model stays the same: the highest `monitor`,
        ties broken by the lower loss), TensorBoard, history; the progress bar,
        then the per-epoch line (the chief's, unless --log_all_workers); the
        val_accuracy report to a Vertex AI tuning job (chief, `hypertune`); last
        the step backup (resume after a preemption or a kill: it loads `state`
        when the fit begins), so that an epoch's backup follows its history row.
        """
        runtime, strategy = self.runtime, self.strategy
        checkpoints = distribution.write_dirpath(runtime.checkpoints_path, strategy)
        logs = distribution.write_dirpath(runtime.logs_path, strategy)
        history = self._history_path()
        for folder in (checkpoints, logs, os.path.dirname(history)):
            tf.io.gfile.makedirs(folder)
        callbacks: List[keras.callbacks.Callback] = []
        counters = self.task.input_counters(validating=monitor.startswith("val_"))
        if counters:
            callbacks.append(callbacks_lib.CorruptRecordCount(counters))
        callbacks += [
            callbacks_lib.BestWeights(os.path.join(checkpoints, BEST_WEIGHTS),
                                      os.path.join(checkpoints, BEST_RECORD), monitor=monitor,
                                      tie_break=monitor.replace("accuracy", "loss"),
                                      best=self.best),
            keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, LAST_WEIGHTS),
                                            save_weights_only=True),
            keras.callbacks.TensorBoard(logs),
            keras.callbacks.CSVLogger(history, append=True),
        ]
        if self.is_chief:  # the progress bar first, so that the summary line follows it
            callbacks.append(keras.callbacks.ProgbarLogger())
        if self.is_chief or runtime.log_all_workers:
            callbacks.append(callbacks_lib.EpochSummary(self.total_epochs, phase=phase.name))
        if self.is_chief and hypertune.enabled(runtime.hypertune):
            if monitor == hypertune.METRIC:
                callbacks.append(hypertune.HypertuneReport())
            else:
                logger.warning("no val split: nothing to report to the tuning job")
        backup = preemption.StepBackup(
            self._backup_dir(phase.number), self.watch, every_steps=runtime.backup_every_steps,
            resume=state, initial_step=initial_step,
            agree=preemption.agreement(strategy, getattr(strategy.extended, "_num_workers", 1)),
            counters=counters)
        backup.fit_callbacks = callbacks
        return callbacks + [backup]
