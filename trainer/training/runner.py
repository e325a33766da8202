"""The runner: a training job around the task (strategy, phases, callbacks, folders, results).

`Runner(config).run()` builds the strategy and the mixed-precision policy,
asks the task (`trainer.training.play_task`) for its model and inputs, writes
config.json, fits the phases (the head, then an optional fine-tune) with
callbacks built for each phase, and on the chief evaluates and exports.
Every worker of a cluster runs it.

JOB_DIR layout:
  config.json        the run's full configuration (chief)
  checkpoints/       best.weights.h5 (+ best.json: which epoch), last.weights.h5 (chief)
  backup/phase{1,2}  step backups (`trainer.training.preemption`): a job preempted (SIGTERM)
                     or killed, started again with the same command, continues at
                     the step of the epoch where its last backup was taken
  logs/              TensorBoard (chief)
  history.csv        one row per epoch, appended on resume (chief); with
                     --skip_corrupt_records also the corrupt records skipped
                     (corrupt_records, val_corrupt_records)
  eval.json, confusion_matrix.png, model.keras, saved_model/   results (chief): of the
                     best validation epoch's weights (--export_weights=best) or the last's
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from typing import Any, Dict, List, Optional

import keras
import tensorflow as tf

from backbone import precision
from schemas import sampling
from schemas.errors import UsageError
from trainer.training import callbacks as callbacks_lib
from trainer.training import compat, distribution
from trainer.data import corrupt
from trainer.evaluation import evaluate
from trainer.serving import export
from trainer.modeling import model as model_lib
from trainer.training import preemption
from trainer.data import reader, sources
from trainer.config import TrainConfig
from trainer.training.play_task import PlayClassificationTask

logger = logging.getLogger(__name__)

CONFIG_JSON = "config.json"
HISTORY_CSV = "history.csv"
BEST_WEIGHTS = "best.weights.h5"
BEST_RECORD = "best.json"
_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclasses.dataclass(frozen=True)
class Phase:
    """One `model.fit` of the run: epochs [initial_epoch, epochs) on `source`."""

    number: int  # names the backup folder (backup/phase{number})
    name: str  # in the per-epoch lines
    source: sources.Source
    initial_epoch: int
    epochs: int


def build_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The strategy, the random seed and the mixed-precision policy (first: --cpu_replicas
    splits the CPU before TensorFlow starts)."""
    if (config.jit_compile == "true" and config.strategy == "mirrored"
            and config.cpu_replicas > 1 and not tf.config.list_physical_devices("GPU")):
        raise UsageError("--jit_compile=true cannot run MirroredStrategy over logical CPU "
                         "devices (XLA keeps each replica's variables on its own device): drop "
                         "--cpu_replicas or use --jit_compile=false")
    strategy = distribution.get_distribution_strategy(
        config.strategy, cpu_replicas=config.cpu_replicas, tpu_address=config.tpu)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch_size={config.batch_size} must be a multiple of the "
                         f"{replicas} replicas")
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    warning = precision.mixed_precision_warning(config.mixed_precision, config.strategy == "tpu")
    if warning:
        logger.warning("%s", warning)
    keras.mixed_precision.set_global_policy(_POLICIES[config.mixed_precision])
    return strategy


class Runner:
    """One training job: the strategy and everything around the task."""

    def __init__(self, config: TrainConfig):
        self.config = config.validate()
        self.strategy = build_strategy(self.config)
        self.task = PlayClassificationTask.from_config(self.config)
        # The best epoch so far (callbacks.BestWeights' record): kept from a killed run's
        # checkpoints when its backup says this is a resume, else a new run starts afresh.
        self._best: Optional[Dict[str, Any]] = None
        self._last: Optional[Dict[str, Any]] = None
        if self.is_chief:
            if self._resuming():
                self._best = callbacks_lib.read_best(self._best_paths()[1])
            else:
                for path in self._best_paths():
                    if tf.io.gfile.exists(path):
                        tf.io.gfile.remove(path)
        self._watch: Optional[preemption.SigtermWatch] = None

    @property
    def is_chief(self) -> bool:
        return distribution.is_chief(self.strategy)

    @property
    def total_epochs(self) -> int:
        return self.config.epochs + self.config.fine_tune_epochs

    def _resuming(self) -> bool:
        """Whether a killed run left a backup (a finished run's backup folders are empty)."""
        if not tf.io.gfile.exists(self.config.backup_path):
            return False
        return any(files for _, _, files in tf.io.gfile.walk(self.config.backup_path))

    def _best_paths(self):
        """(best.weights.h5, best.json) of this worker."""
        folder = distribution.write_dirpath(self.config.checkpoints_path, self.strategy)
        return os.path.join(folder, BEST_WEIGHTS), os.path.join(folder, BEST_RECORD)

    def phases(self) -> List[Phase]:
        """The head on the (partly) frozen base or on its cached features, then the fine-tune."""
        config = self.config
        head = Phase(1, "head", self.task.first_source, 0, config.epochs)
        if not config.fine_tune_epochs:
            return [head]
        return [head, Phase(2, "fine_tune", self.task.plays, config.epochs, self.total_epochs)]

    # ------------------------------------------------------------ run

    def run(self) -> Dict[str, Any]:
        """Fits the phases; the chief evaluates and exports. Returns a summary dict.

        Raises `preemption.Preempted` after a SIGTERM, once the backup is written.
        """
        with preemption.SigtermWatch(self.config.preemption_grace_seconds) as watch:
            self._watch = watch
            return self._run()

    def _run(self) -> Dict[str, Any]:
        config, task, strategy = self.config, self.task, self.strategy
        if self.is_chief:
            self.write_config()
            counts = task.first_source.counts
            logger.info("strategy %s with %d replica(s); %d train / %d val / %d test plays%s; "
                        "%d labels", type(strategy).__name__, strategy.num_replicas_in_sync,
                        counts["train"], counts["val"], counts["test"],
                        " (cached features)" if task.features else "", len(task.plays.labels))
        head, *fine_tune = self.phases()
        with strategy.scope():
            model = task.build_first_model()
            task.compile_model(model, config.learning_rate)
        self.fit(model, head)
        trainable_from = config.trainable_from
        for phase in fine_tune:
            with strategy.scope():
                full = task.full_model(model)
            if full is not model and (self._best or {}).get("model") != full.name:
                self._best = None  # checkpoints of phase 2 hold the full model's weights
            model = full
            # Unfreeze the top blocks, recompile at the fine-tune learning rate.
            trainable_from = task.fine_tune_from
            with strategy.scope():
                model_lib.set_trainable_from(model_lib.base_of(model), trainable_from)
                task.compile_model(model, config.fine_tune_learning_rate)
            self.fit(model, phase)

        summary: Dict[str, Any] = {"chief": self.is_chief, "epochs": self.total_epochs,
                                   "num_replicas": strategy.num_replicas_in_sync}
        if self.is_chief:
            summary.update(self.evaluate_and_export(model, trainable_from))
        else:
            self.remove_worker_temp_dirs()
        for phase in (head, *fine_tune):  # kept until now: a restart skips what is done
            self.remove_backup(phase.number)
        return summary

    def write_config(self) -> None:
        """JOB_DIR/config.json: the flags and what they resolved to (chief)."""
        plays, strategy = self.task.plays, self.strategy
        record = {"config": self.config.to_dict(),
                  "resolved": {"num_frames": plays.num_frames, "image_size": list(plays.image_size),
                               "compression": plays.compression, "labels": list(plays.labels),
                               "train_files": plays.files["train"],
                               "eval_files": plays.files["val"],
                               "test_files": plays.files["test"],
                               "num_train": plays.counts["train"],
                               "num_eval": plays.counts["val"],
                               "num_test": plays.counts["test"],
                               "num_replicas": strategy.num_replicas_in_sync,
                               "strategy": type(strategy).__name__,
                               "cut_layer": self.task.cut_layer, "weights": self.task.weights,
                               "features_dir": self.config.features_dir,
                               "head": self.config.head,
                               "class_weights": (dict(zip(plays.labels, self.task.class_weights))
                                                 if self.task.class_weights else None),
                               "balanced_sampling": self.config.balanced_sampling,
                               "eval_views": self.config.eval_views,
                               "eval_flip": self.config.eval_flip,
                               "export_weights": self.config.export_weights,
                               "tensorflow": tf.__version__, "keras": keras.__version__}}
        path = os.path.join(self.config.job_dir, CONFIG_JSON)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(record, indent=2, sort_keys=True))

    # ------------------------------------------------------------ fit

    def fit(self, model: keras.Model, phase: Phase) -> None:
        """The `model.fit`s of `phase`, from its last backup if any.

        A backup inside an epoch is resumed in two fits: the rest of that epoch
        (its metric totals put back, its first steps' records skipped by the
        reader), then the epochs after it.
        """
        config, source = self.config, phase.source
        steps = config.steps_per_epoch or max(1, source.counts["train"] // config.batch_size)
        state = preemption.load_state(self._backup_dir(phase.number))
        epoch, step = (state.epoch, state.step) if state else (phase.initial_epoch, 0)
        if state is not None:
            self._best = state.best
            logger.info("resuming the %s phase at epoch %d step %d of %d (backup taken at %s)",
                        phase.name, epoch + 1, step, steps,
                        "a SIGTERM" if state.reason == "sigterm" else
                        "an epoch's end" if state.reason == "epoch" else "a periodic step")
        if step and epoch < phase.epochs:
            self._fit_epochs(model, phase, epoch, epoch + 1, steps, step, state)
            epoch, step, state = epoch + 1, 0, None
        self._fit_epochs(model, phase, epoch, phase.epochs, steps, 0, state)

    def _fit_epochs(self, model: keras.Model, phase: Phase, initial_epoch: int, epochs: int,
                    steps: int, initial_step: int,
                    state: Optional[preemption.ResumeState]) -> None:
        """One `model.fit` of epochs [initial_epoch, epochs), the first from `initial_step`."""
        config, source = self.config, phase.source
        plan = reader.EpochPlan(steps, initial_epoch, initial_step)
        val_steps = config.validation_steps or (
            math.ceil(source.counts["val"] / config.batch_size) if source.counts["val"] else None)
        train_ds = self.strategy.distribute_datasets_from_function(
            self.task.build_inputs(source, "train", training=True, plan=plan))
        val_ds = (self.strategy.distribute_datasets_from_function(
            self.task.build_inputs(source, "val", training=False,
                                   plan=reader.EpochPlan(val_steps) if val_steps else None))
            if source.files["val"] else None)
        if config.data_service and initial_step:
            logger.warning("with --data_service the resumed epoch's records are the service's: "
                           "its first %d steps are not skipped", initial_step)
        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        callbacks = self.build_callbacks(phase, monitor, state=state, initial_step=initial_step)
        compat.reset_initial_epoch(model)
        with corrupt.corrupt_records_named(self.task.input_files()):
            model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch,
                      steps_per_epoch=steps - initial_step if initial_step else steps,
                      validation_data=val_ds, validation_steps=val_steps,
                      callbacks=callbacks, shuffle=False, verbose=1 if self.is_chief else 0)
        self._best = callbacks_lib.best_of(callbacks)
        best = [c for c in callbacks if isinstance(c, callbacks_lib.BestWeights)]
        if best and best[0].last is not None:
            self._last = best[0].last

    def _history_path(self) -> str:
        if self.is_chief:
            return os.path.join(self.config.job_dir, HISTORY_CSV)
        folder = distribution.write_dirpath(os.path.join(self.config.job_dir, "history"),
                                            self.strategy)
        return os.path.join(folder, HISTORY_CSV)

    def _backup_dir(self, phase_number: int) -> str:
        return distribution.backup_dirpath(
            os.path.join(self.config.backup_path, f"phase{phase_number}"), self.strategy)

    def build_callbacks(self, phase: Phase, monitor: str, *,
                        state: Optional[preemption.ResumeState] = None,
                        initial_step: int = 0) -> List[keras.callbacks.Callback]:
        """The callbacks of one fit, new for each fit.

        With --skip_corrupt_records the epoch's skipped records into the logs;
        checkpoints (best = best of the run while the model stays the same: the
        highest `monitor`, ties broken by the lower loss), TensorBoard, history;
        the progress bar, then the per-epoch line (the chief's, unless
        --log_all_workers); last the step backup (resume after a preemption or a
        kill: it loads `state` when the fit begins), so that an epoch's backup
        follows its history row.
        """
        config, strategy = self.config, self.strategy
        checkpoints = distribution.write_dirpath(config.checkpoints_path, strategy)
        logs = distribution.write_dirpath(config.logs_path, strategy)
        history = self._history_path()
        for folder in (checkpoints, logs, os.path.dirname(history)):
            tf.io.gfile.makedirs(folder)
        callbacks: List[keras.callbacks.Callback] = []
        counters, logged = self.task.corrupt_counters, {}
        if counters is not None:
            logged = {"corrupt_records": counters["train"]}
            if monitor.startswith("val_"):
                logged["val_corrupt_records"] = counters["val"]
            callbacks.append(callbacks_lib.CorruptRecordCount(logged))
        callbacks += [
            callbacks_lib.BestWeights(os.path.join(checkpoints, BEST_WEIGHTS),
                                      os.path.join(checkpoints, BEST_RECORD), monitor=monitor,
                                      tie_break=monitor.replace("accuracy", "loss"),
                                      best=self._best),
            keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "last.weights.h5"),
                                            save_weights_only=True),
            keras.callbacks.TensorBoard(logs),
            keras.callbacks.CSVLogger(history, append=True),
        ]
        if self.is_chief:  # the progress bar first, so that the summary line follows it
            callbacks.append(keras.callbacks.ProgbarLogger())
        if self.is_chief or config.log_all_workers:
            callbacks.append(callbacks_lib.EpochSummary(self.total_epochs, phase=phase.name))
        backup = preemption.StepBackup(
            self._backup_dir(phase.number), self._watch, every_steps=config.backup_every_steps,
            resume=state, initial_step=initial_step,
            agree=preemption.agreement(strategy, getattr(strategy.extended, "_num_workers", 1)),
            counters=logged)
        backup.fit_callbacks = callbacks
        return callbacks + [backup]

    def remove_backup(self, phase_number: int) -> None:
        shutil.rmtree(self._backup_dir(phase_number), ignore_errors=True)

    def remove_worker_temp_dirs(self) -> None:
        """Non-chief workers: delete the temp folders their checkpoints and logs went to."""
        for path in (self.config.checkpoints_path, self.config.logs_path,
                     os.path.join(self.config.job_dir, "history")):
            distribution.remove_temp_dirpath(path, self.strategy)

    # ------------------------------------------------------------ results

    def final_models(self, model: keras.Model, trainable_from: str):
        """Plain models (outside the strategy) holding the weights to evaluate and export.

        Returns (the model the evaluation runs: the head on cached features or
        the classifier on clips, the classifier to export, the weights record).
        With --export_weights=best, the best epoch's weights (best.weights.h5)
        replace the last epoch's when the run recorded them for this model.
        """
        task, config = self.task, self.config
        if task.features and model.name == model_lib.HEAD_MODEL_NAME:  # trained on cached features
            plain = task.build_first_model()
        else:
            plain = task.build_model(weights="none", trainable_from=trainable_from)
        plain.set_weights(model.get_weights())
        record = dict(self._last or {"epoch": self.total_epochs, "value": None})
        if config.export_weights == "best" and self._best and self._best.get("model") == model.name:
            try:
                plain.load_weights(self._best_paths()[0])
            except (ValueError, OSError, KeyError) as err:
                raise UsageError(f"{self._best_paths()[0]} does not fit this model "
                                 f"({type(err).__name__}: {str(err).splitlines()[0][:160]}): "
                                 f"it holds another run's weights; use a new --job_dir or "
                                 f"--export_weights=last") from None
            record = dict(self._best)
        elif config.export_weights == "best":
            logger.warning("no best epoch recorded for this model: evaluating the last epoch's "
                           "weights")
        weights = {"export_weights": config.export_weights, "epoch": record.get("epoch"),
                   "monitor": record.get("monitor"), "value": record.get("value"),
                   "tie_break": record.get("tie_break"),
                   "tie_break_value": record.get("tie_break_value")}
        full = task.full_model(plain) if plain.name == model_lib.HEAD_MODEL_NAME else plain
        evaluated = plain if task.eval_source is task.features else full
        return evaluated, full, weights

    def evaluate_and_export(self, model: keras.Model, trainable_from: str) -> Dict[str, Any]:
        """Chief only: the chosen weights (best or last) in plain models, evaluated on test
        (or val) over the play's views, exported with the same views."""
        task, config = self.task, self.config
        plays = task.plays
        evaluated, exported_model, weights = self.final_models(model, trainable_from)
        logger.info("evaluating and exporting the weights of epoch %s (--export_weights=%s)",
                    weights["epoch"], config.export_weights)
        source, views = task.eval_source, task.eval_views
        split = "test" if source.files["test"] else "val"
        result: Dict[str, Any] = {}
        if source.files[split]:
            with corrupt.corrupt_records_named(task.input_files()):
                labels, scores = evaluate.predict_views(evaluated, task.eval_dataset(split))
            report = evaluate.view_report(labels, scores, list(plays.labels),
                                          averaged=views.count, centre=views.centre,
                                          flip=views.flip)
            report["views"]["source"] = source.record_kind
            report["weights"] = weights
            evaluate.write_report(report, list(plays.labels), config.job_dir)
            if source.corrupt_files and source.corrupt_files.get(split):
                logger.info("%s: skipped %d corrupt record(s) (with the rest of their files)",
                            split, len(source.corrupt_files[split]))
            result["eval"] = {"split": split, "accuracy": report["accuracy"],
                              "num_examples": report["num_examples"],
                              "clip": report["clip"], "play": report["play"],
                              "weights": weights}
            logger.info(evaluate.format_summary(split, report["clip"], "clip"))
            logger.info(evaluate.format_summary(split, report["play"], "play"))
        else:
            logger.info("no test or val split: skipped evaluation")
        card = plays.card
        exported = export.export_model(
            exported_model, config.job_dir, labels=list(plays.labels),
            image_size=plays.image_size, num_frames=plays.num_frames,
            record_num_frames=card.num_frames if card else plays.num_frames,
            resize_mode=card.resize_mode if card else sampling.DEFAULT_RESIZE_MODE,
            pad_short=card.pad_short if card else "",
            jpeg_quality=card.jpeg_quality if card else sampling.DEFAULT_JPEG_QUALITY,
            frame_rate=card.frame_rate if card else None,
            eval_views=views.windows, eval_flip=views.flip)
        result["export"] = {"model_path": exported["model_path"],
                            "saved_model_dir": exported["saved_model_dir"]}
        logger.info("exported %s and %s", exported["model_path"], exported["saved_model_dir"])
        return result
