"""Training: records -> tf.distribute Keras fit (head, then optional fine-tune) -> eval + export.

`PlayClassificationTask` holds one run's steps, in the shape of Model Garden's
`VideoClassificationTask`: `build_strategy`, `build_inputs`, `build_model`,
`compile_model`, `build_callbacks`, `fit_phase`, `evaluate_and_export`.
`train(config)` runs them in order; every worker of a cluster calls it.

JOB_DIR layout:
  config.json        the run's full configuration (chief)
  checkpoints/       best.weights.h5, last.weights.h5 (ModelCheckpoint; chief)
  backup/phase{1,2}  BackupAndRestore state: a killed job started again with the
                     same command continues at the epoch where it stopped
  logs/              TensorBoard (chief)
  history.csv        one row per epoch, appended on resume (chief); with
                     --skip_corrupt_records also the corrupt records skipped
                     (corrupt_records, val_corrupt_records)
  eval.json, confusion_matrix.png, model.keras, saved_model/   results (chief)
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any, Dict, List, Optional

import keras
import tensorflow as tf

from schemas import sampling
from schemas.errors import UsageError
from trainer import callbacks as callbacks_lib
from trainer import compat, distribution, evaluate, export, inputs as inputs_lib
from trainer import model as model_lib
from trainer.config import TrainConfig

CONFIG_JSON = "config.json"
HISTORY_CSV = "history.csv"
_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


class PlayClassificationTask:
    """One training run of the play classifier, step by step."""

    def __init__(self, config: TrainConfig):
        self.config = config.validate()
        self.strategy: Optional[tf.distribute.Strategy] = None
        self.inputs: Optional[inputs_lib.Inputs] = None
        self.features: Optional[inputs_lib.FeatureInputs] = None
        self.corrupt_counters: Optional[Dict[str, tf.Variable]] = None
        self._callbacks: Optional[List[keras.callbacks.Callback]] = None

    # ------------------------------------------------------------ set-up

    def build_strategy(self) -> tf.distribute.Strategy:
        """The tf.distribute strategy (first: --cpu_replicas splits the CPU before TF starts)."""
        config = self.config
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
        if config.mixed_precision != "none" and not (tf.config.list_logical_devices("GPU")
                                                     or config.strategy == "tpu"):
            print(f"warning: --mixed_precision={config.mixed_precision} is meant for "
                  f"accelerators; on CPU it is slow")
        keras.mixed_precision.set_global_policy(_POLICIES[config.mixed_precision])
        self.strategy = strategy
        return strategy

    def build_inputs(self) -> inputs_lib.Inputs:
        """Finds the shards and clip settings (and cached features); checks the model flags."""
        config = self.config
        if config.features_dir:
            card = inputs_lib.load_features_card(config.features_dir)
            self.inputs = inputs_lib.resolve_inputs(config, config.data_dir or card.records_dir)
            self.features = inputs_lib.resolve_feature_inputs(config, self.inputs)
        else:
            self.inputs = inputs_lib.resolve_inputs(config)
        model_lib.check_cut(self.cut_layer, self.fine_tune_from if config.fine_tune_epochs else None)
        if self.features:
            self.features.card.check_base(self.cut_layer, self.weights, *self.inputs.image_size)
        if config.skip_corrupt_records:
            # Host variables outside any strategy scope: the input pipelines add to them.
            with tf.device("/cpu:0"):
                self.corrupt_counters = {split: tf.Variable(0, dtype=tf.int64, trainable=False,
                                                            name=f"corrupt_{split}_records")
                                         for split in ("train", "val")}
            for split_inputs in (self.inputs, self.features):
                if split_inputs is not None:
                    split_inputs.counters = self.corrupt_counters
        return self.inputs

    def input_files(self):
        """(path, compression) of every shard this run reads, to name a corrupt one."""
        files = [(path, self.inputs.compression) for split in inputs_lib.SPLITS
                 for path in self.inputs.files[split]]
        if self.features:
            files += [(path, "none") for split in inputs_lib.SPLITS
                      for path in self.features.files[split]]
        return files

    @property
    def cut_layer(self) -> str:
        """--cut_layer, else the features card's, else the whole convolutional base."""
        card = self.features.card if self.features else None
        return self.config.cut_layer or (card.cut_layer if card else model_lib.DEFAULT_CUT_LAYER)

    @property
    def weights(self) -> str:
        """--weights, else the features card's, else ImageNet."""
        card = self.features.card if self.features else None
        return self.config.weights or (card.weights if card else model_lib.DEFAULT_WEIGHTS)

    @property
    def fine_tune_from(self) -> str:
        return self.config.fine_tune_from or model_lib.default_fine_tune_from(self.cut_layer)

    @property
    def is_chief(self) -> bool:
        return distribution.is_chief(self.strategy)

    @property
    def head_flags(self) -> Dict[str, Any]:
        config = self.config
        return dict(rnn=config.rnn, rnn_units=config.rnn_units, bidirectional=config.bidirectional,
                    dropout=config.dropout, feature_norm=config.feature_norm)

    def build_model(self, weights: Optional[str] = None,
                    trainable_from: Optional[str] = None) -> keras.Model:
        """The classifier on uint8 clips (weights and trainable_from overridable).

        With cached features and no `weights` override, the base is the embed
        job's saved base, so that the model uses exactly the weights that made
        the features (random-initialized bases included).
        """
        base = None
        if self.features and weights is None:
            base = keras.models.load_model(self.features.base_path, compile=False,
                                           safe_mode=True)
        return model_lib.build_model(
            len(self.inputs.labels), image_size=self.inputs.image_size, num_frames=None,
            cut_layer=self.cut_layer, weights=self.weights if weights is None else weights,
            trainable_from=self.config.trainable_from if trainable_from is None else trainable_from,
            base=base, **self.head_flags)

    def build_head_model(self) -> keras.Model:
        """The head alone, on cached features [B, T, C] (see `model.build_head_model`)."""
        return model_lib.build_head_model(len(self.inputs.labels), self.features.card.feature_dim,
                                          **self.head_flags)

    def compile_model(self, model: keras.Model, learning_rate: float) -> None:
        """Adam, sparse categorical cross-entropy and accuracy (XLA on GPUs unless told)."""
        jit = self.config.jit_compile
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            steps_per_execution=self.config.steps_per_execution,
            jit_compile=(bool(tf.config.list_logical_devices("GPU")) if jit == "auto"
                         else jit == "true"))

    def distributed_datasets(self, features: bool = False):
        """(train, val or None) distributed datasets, repeated, one pipeline per worker.

        Of the cached features when `features`, else of the play records.
        """
        config = self.config
        inputs = self.features if features else self.inputs

        def distribute(split: str, training: bool):
            return self.strategy.distribute_datasets_from_function(inputs.dataset_fn(
                split, training=training, batch_size=config.batch_size, seed=config.seed))

        val = distribute("val", training=False) if inputs.files["val"] else None
        return distribute("train", training=True), val

    def write_config(self) -> None:
        """JOB_DIR/config.json: the flags and what they resolved to (chief)."""
        inputs, strategy = self.inputs, self.strategy
        record = {"config": self.config.to_dict(),
                  "resolved": {"num_frames": inputs.num_frames, "image_size": list(inputs.image_size),
                               "compression": inputs.compression, "labels": list(inputs.labels),
                               "train_files": inputs.files["train"],
                               "eval_files": inputs.files["val"],
                               "test_files": inputs.files["test"],
                               "num_train": inputs.counts["train"],
                               "num_eval": inputs.counts["val"],
                               "num_test": inputs.counts["test"],
                               "num_replicas": strategy.num_replicas_in_sync,
                               "strategy": type(strategy).__name__,
                               "cut_layer": self.cut_layer, "weights": self.weights,
                               "features_dir": self.config.features_dir,
                               "tensorflow": tf.__version__, "keras": keras.__version__}}
        path = os.path.join(self.config.job_dir, CONFIG_JSON)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(record, indent=2, sort_keys=True))

    # ------------------------------------------------------------ fit

    def _history_path(self) -> str:
        if self.is_chief:
            return os.path.join(self.config.job_dir, HISTORY_CSV)
        folder = distribution.write_dirpath(os.path.join(self.config.job_dir, "history"),
                                            self.strategy)
        return os.path.join(folder, HISTORY_CSV)

    def build_callbacks(self, monitor: str) -> List[keras.callbacks.Callback]:
        """Checkpoints, TensorBoard and history, shared by both phases (best = best of the run)."""
        if self._callbacks is None:
            config, strategy = self.config, self.strategy
            checkpoints = distribution.write_dirpath(config.checkpoints_path, strategy)
            logs = distribution.write_dirpath(config.logs_path, strategy)
            history = self._history_path()
            for folder in (checkpoints, logs, os.path.dirname(history)):
                tf.io.gfile.makedirs(folder)
            self._callbacks = [
                keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "best.weights.h5"),
                                                monitor=monitor, mode="max", save_best_only=True,
                                                save_weights_only=True),
                keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "last.weights.h5"),
                                                save_weights_only=True),
                keras.callbacks.TensorBoard(logs),
                keras.callbacks.CSVLogger(history, append=True),
            ]
        return self._callbacks

    def reset_callbacks(self) -> None:
        """The next phase gets new checkpoint callbacks (the model they save has changed)."""
        self._callbacks = None

    def _phase_callbacks(self, phase: int, name: str, keep_backup: bool,
                         monitor: str) -> List[keras.callbacks.Callback]:
        """The phase's backup (resume after a kill), the shared callbacks, then progress.

        With --skip_corrupt_records the first puts the epoch's skipped records in the logs.
        """
        backup = distribution.backup_dirpath(
            os.path.join(self.config.backup_path, f"phase{phase}"), self.strategy)
        # double_checkpoint: the previous backup is kept as a copy until the new one is written,
        # so a kill in the middle of writing a backup still resumes from the one before.
        callbacks = [keras.callbacks.BackupAndRestore(backup, double_checkpoint=True,
                                                      delete_checkpoint=not keep_backup),
                     *self.build_callbacks(monitor)]
        if self.corrupt_counters is not None:
            counters = {"corrupt_records": self.corrupt_counters["train"]}
            if monitor.startswith("val_"):
                counters["val_corrupt_records"] = self.corrupt_counters["val"]
            callbacks.insert(0, callbacks_lib.CorruptRecordCount(counters))
        if self.is_chief:  # the progress bar first, so that the summary line follows it
            callbacks.append(keras.callbacks.ProgbarLogger())
        callbacks.append(callbacks_lib.EpochSummary(self.total_epochs, phase=name))
        return callbacks

    @property
    def total_epochs(self) -> int:
        return self.config.epochs + self.config.fine_tune_epochs

    def fit_phase(self, model: keras.Model, datasets, counts: Dict[str, int], phase: int,
                  name: str, initial_epoch: int, epochs: int, keep_backup: bool) -> None:
        """One `model.fit` from `initial_epoch` to `epochs` (resumes from its backup).

        `counts` are the plays per split of `datasets` (for the steps per epoch).
        """
        config = self.config
        train_ds, val_ds = datasets
        steps = config.steps_per_epoch or max(1, counts["train"] // config.batch_size)
        val_steps = config.validation_steps or (
            math.ceil(counts["val"] / config.batch_size) if counts["val"] else None)
        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        compat.reset_initial_epoch(model)
        with inputs_lib.corrupt_records_named(self.input_files()):
            model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                      validation_data=val_ds, validation_steps=val_steps,
                      callbacks=self._phase_callbacks(phase, name, keep_backup, monitor),
                      verbose=1 if self.is_chief else 0)

    def remove_backup(self, phase: int) -> None:
        shutil.rmtree(distribution.backup_dirpath(
            os.path.join(self.config.backup_path, f"phase{phase}"), self.strategy),
            ignore_errors=True)

    def remove_worker_temp_dirs(self) -> None:
        """Non-chief workers: delete the temp folders their checkpoints and logs went to."""
        for path in (self.config.checkpoints_path, self.config.logs_path,
                     os.path.join(self.config.job_dir, "history")):
            distribution.remove_temp_dirpath(path, self.strategy)

    # ------------------------------------------------------------ results

    def evaluate_and_export(self, model: keras.Model, trainable_from: str) -> Dict[str, Any]:
        """Chief only: copies the weights into a plain model, evaluates on test, exports."""
        inputs, config = self.inputs, self.config
        # A model outside the strategy: evaluation and export need no other worker.
        plain = self.build_model(weights="none", trainable_from=trainable_from)
        plain.set_weights(model.get_weights())
        split = "test" if inputs.files["test"] else "val"
        result: Dict[str, Any] = {}
        if inputs.files[split]:
            ds = inputs.dataset(split, training=False, batch_size=config.batch_size)
            with inputs_lib.corrupt_records_named(self.input_files()):
                report = evaluate.evaluate_model(plain, ds, list(inputs.labels), config.job_dir)
            if inputs.corrupt_files and inputs.corrupt_files.get(split):
                print(f"{split}: skipped {len(inputs.corrupt_files[split])} corrupt record(s) "
                      f"(with the rest of their files)", flush=True)
            result["eval"] = {"split": split, "accuracy": report["accuracy"],
                              "num_examples": report["num_examples"]}
            print(f"{split} accuracy: {report['accuracy']:.4f} ({report['num_examples']} plays)",
                  flush=True)
        else:
            print("no test or val split: skipped evaluation", flush=True)
        card = inputs.card
        exported = export.export_model(
            plain, config.job_dir, labels=list(inputs.labels), image_size=inputs.image_size,
            num_frames=inputs.num_frames,
            record_num_frames=card.num_frames if card else inputs.num_frames,
            resize_mode=card.resize_mode if card else sampling.DEFAULT_RESIZE_MODE,
            pad_short=card.pad_short if card else "",
            jpeg_quality=card.jpeg_quality if card else sampling.DEFAULT_JPEG_QUALITY,
            frame_rate=card.frame_rate if card else None)
        result["export"] = {"model_path": exported["model_path"],
                            "saved_model_dir": exported["saved_model_dir"]}
        print(f"exported {exported['model_path']} and {exported['saved_model_dir']}", flush=True)
        return result


def train(config: TrainConfig) -> Dict[str, Any]:
    """Runs one training job (every worker calls this); returns a summary dict."""
    compat.apply_all()
    task = PlayClassificationTask(config)
    strategy = task.build_strategy()
    inputs = task.build_inputs()
    features = task.features
    if task.is_chief:
        task.write_config()
        counts = (features or inputs).counts
        print(f"strategy {type(strategy).__name__} with {strategy.num_replicas_in_sync} "
              f"replica(s); {counts['train']} train / {counts['val']} val / {counts['test']} test "
              f"plays{' (cached features)' if features else ''}; {len(inputs.labels)} labels",
              flush=True)
    # Phase 1: the head on the (partly) frozen base, or on the base's cached features. Its
    # backup is kept until the fine-tune phase ends, so that a restart skips a finished phase 1.
    with strategy.scope():
        model = task.build_head_model() if features else task.build_model()
        task.compile_model(model, config.learning_rate)
    task.fit_phase(model, task.distributed_datasets(features=bool(features)),
                   (features or inputs).counts, 1, "head", 0, config.epochs,
                   keep_backup=config.fine_tune_epochs > 0)
    if features:  # the trained head on the base that made the features
        with strategy.scope():
            full = task.build_model()
            model_lib.copy_head_weights(model, full)
        model = full
        task.reset_callbacks()  # checkpoints of phase 2 hold the full model's weights
    trainable_from = config.trainable_from
    if config.fine_tune_epochs:
        # Phase 2: unfreeze the top blocks, recompile at the fine-tune learning rate.
        trainable_from = task.fine_tune_from
        with strategy.scope():
            model_lib.set_trainable_from(model_lib.base_of(model), trainable_from)
            task.compile_model(model, config.fine_tune_learning_rate)
        task.fit_phase(model, task.distributed_datasets(), inputs.counts, 2, "fine_tune",
                       config.epochs, task.total_epochs, keep_backup=False)
        task.remove_backup(1)

    summary: Dict[str, Any] = {"chief": task.is_chief, "epochs": task.total_epochs,
                               "num_replicas": strategy.num_replicas_in_sync}
    if task.is_chief:
        summary.update(task.evaluate_and_export(model, trainable_from))
    else:
        task.remove_worker_temp_dirs()
    return summary
