"""Training: records -> tf.distribute Keras fit (head, then optional fine-tune) -> eval + export.

JOB_DIR layout:
  config.json        the run's full configuration (chief)
  checkpoints/       best.weights.h5, last.weights.h5 (ModelCheckpoint; chief)
  backup/phase{1,2}  BackupAndRestore state: a killed job started again with the
                     same command continues at the epoch where it stopped
  logs/              TensorBoard (chief)
  history.csv        one row per epoch, appended on resume (chief)
  eval.json, confusion_matrix.png, model.keras, saved_model/   results (chief)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from typing import Any, Dict, List, Optional

import keras
import tensorflow as tf

from schemas import dataset_card, play_record
from trainer import callbacks as callbacks_lib
from trainer import data, distribution, evaluate, export
from trainer import model as model_lib
from trainer.config import TrainConfig, UsageError

CONFIG_JSON = "config.json"
HISTORY_CSV = "history.csv"
_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@contextlib.contextmanager
def _usage_errors(what: str):
    """Turns input problems (missing files, bad shards, too few shards) into UsageError."""
    try:
        yield
    except (UsageError, play_record.SchemaError):
        raise
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        raise UsageError(f"{what}: {err}") from None


@dataclasses.dataclass
class Inputs:
    """The resolved input side of a run."""

    input_config: data.InputConfig
    card: Optional[dataset_card.DatasetCard]
    train_files: List[str]
    eval_files: List[str]
    test_files: List[str]
    num_train: int
    num_eval: int
    num_test: int


def _count_records(files: List[str], compression: Optional[str]) -> int:
    ds = tf.data.TFRecordDataset(files, compression_type=data.compression_type(compression))
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def _card_beside(files: List[str]) -> Optional[dataset_card.DatasetCard]:
    folder = os.path.dirname(files[0])
    if tf.io.gfile.exists(os.path.join(folder, dataset_card.CARD_NAME)):
        return data.load_card(folder)
    return None


def resolve_inputs(config: TrainConfig) -> Inputs:
    """Finds the shards of each split and the clip settings (dataset.json, else flags)."""
    with _usage_errors("input data"):
        card = data.load_card(config.data_dir) if config.data_dir else None
        train_files = (data.match_files(config.train_files) if config.train_files
                       else data.split_files(config.data_dir, "train", card))
        if card is None:
            card = _card_beside(train_files)
        base = dict(num_frames=config.num_frames, height=config.height, width=config.width,
                    compression=config.compression, labels=config.labels)
        if card is not None:  # flags win over the card
            base = dict(num_frames=config.num_frames or card.num_frames,
                        height=config.height or card.height, width=config.width or card.width,
                        compression=config.compression or card.compression,
                        labels=config.labels or list(card.labels))
        input_config = data.InputConfig(
            data_dir=config.data_dir, train_files=config.train_files, eval_files=config.eval_files,
            shuffle_buffer=config.shuffle_buffer, **base).resolve()
        if not input_config.labels:
            raise UsageError("no label vocabulary: give --data_dir, put dataset.json beside the "
                             "--train_files, or pass --labels")
        if not input_config.num_frames:
            raise UsageError("no frame count: give --data_dir or --num_frames")

        def split(split_name: str, globs: str) -> List[str]:
            if globs:
                return data.match_files(globs)
            if config.data_dir and card is not None and card.counts.get(split_name):
                return data.split_files(config.data_dir, split_name, card)
            return []

        eval_files = split("val", config.eval_files)
        test_files = split("test", config.test_files)
        compression = input_config.compression
        for files in (train_files, eval_files, test_files):
            if files:
                data.check_files(files, compression)

        def count(files: List[str], split_name: str, globs: str) -> int:
            if not files:
                return 0
            if card is not None and not globs and split_name in card.counts:
                return int(card.counts[split_name])
            return _count_records(files, compression)

        counts = [count(train_files, "train", config.train_files),
                  count(eval_files, "val", config.eval_files),
                  count(test_files, "test", config.test_files)]
        for name, files, num in zip(("train", "val", "test"),
                                    (train_files, eval_files, test_files), counts):
            if files and not num:
                # A repeated empty dataset never yields: training would hang, not fail.
                raise UsageError(f"no play records in the {name} files ({len(files)} file(s), "
                                 f"e.g. {files[0]!r}): every file is empty or not a complete "
                                 f"TFRecord file")
        return Inputs(input_config, card, train_files, eval_files, test_files, *counts)


def _dataset_fn(inputs: Inputs, files: List[str], *, training: bool, batch_size: int,
                seed: Optional[int]):
    ic = inputs.input_config

    def fn(input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        return data.make_dataset(
            files, training=training, global_batch_size=batch_size, num_frames=ic.num_frames,
            image_size=(ic.height, ic.width), compression=ic.compression,
            input_context=input_context, seed=seed, shuffle_buffer=ic.shuffle_buffer, repeat=True)

    return fn


def _compile(model: keras.Model, learning_rate: float, jit_compile: bool) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile)


def _jit(config: TrainConfig) -> bool:
    if config.jit_compile == "auto":
        return bool(tf.config.list_logical_devices("GPU"))
    return config.jit_compile == "true"


def build_from_config(config: TrainConfig, num_classes: int, image_size, weights: Optional[str] = None,
                      trainable_from: Optional[str] = None) -> keras.Model:
    """`model.build_model` with the config's architecture flags."""
    return model_lib.build_model(
        num_classes, image_size=image_size, num_frames=None, cut_layer=config.cut_layer,
        weights=config.weights if weights is None else weights,
        trainable_from=config.trainable_from if trainable_from is None else trainable_from,
        rnn=config.rnn, rnn_units=config.rnn_units, bidirectional=config.bidirectional,
        dropout=config.dropout, feature_norm=config.feature_norm)


def _write_config(config: TrainConfig, inputs: Inputs, strategy, path: str) -> None:
    ic = inputs.input_config
    record = {"config": config.to_dict(),
              "resolved": {"num_frames": ic.num_frames, "image_size": [ic.height, ic.width],
                           "compression": ic.compression, "labels": list(ic.labels),
                           "train_files": inputs.train_files, "eval_files": inputs.eval_files,
                           "test_files": inputs.test_files, "num_train": inputs.num_train,
                           "num_eval": inputs.num_eval, "num_test": inputs.num_test,
                           "num_replicas": strategy.num_replicas_in_sync,
                           "strategy": type(strategy).__name__,
                           "tensorflow": tf.__version__, "keras": keras.__version__}}
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))


def train(config: TrainConfig) -> Dict[str, Any]:
    """Runs one training job (every worker calls this); returns a summary dict."""
    config.validate()
    if (config.jit_compile == "true" and config.strategy == "mirrored" and config.cpu_replicas > 1
            and not tf.config.list_physical_devices("GPU")):
        raise UsageError("--jit_compile=true cannot run MirroredStrategy over logical CPU devices "
                         "(XLA keeps each replica's variables on its own device): drop --cpu_replicas "
                         "or use --jit_compile=false")
    # The strategy first: --cpu_replicas must split the CPU before TensorFlow initializes.
    strategy = distribution.get_distribution_strategy(
        config.strategy, cpu_replicas=config.cpu_replicas, tpu_address=config.tpu)
    chief = distribution.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch_size={config.batch_size} must be a multiple of the "
                         f"{replicas} replicas")
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if config.mixed_precision != "none" and not (tf.config.list_logical_devices("GPU")
                                                 or config.strategy == "tpu"):
        print(f"warning: --mixed_precision={config.mixed_precision} is meant for accelerators; "
              f"on CPU it is slow")
    keras.mixed_precision.set_global_policy(_POLICIES[config.mixed_precision])

    inputs = resolve_inputs(config)
    ic = inputs.input_config
    labels = list(ic.labels)
    image_size = (ic.height, ic.width)
    valid_layers = model_lib.vgg16_layer_names()
    if config.cut_layer not in valid_layers:
        raise UsageError(f"unknown --cut_layer={config.cut_layer!r}: use one of {', '.join(valid_layers)}")
    fine_tune_from = config.fine_tune_from or model_lib.default_fine_tune_from(config.cut_layer)
    kept = valid_layers[:valid_layers.index(config.cut_layer) + 1]
    if config.fine_tune_epochs and fine_tune_from not in kept:
        raise UsageError(f"unknown --fine_tune_from={fine_tune_from!r}: use a layer kept by the cut: "
                         f"{', '.join(kept)}")

    steps = config.steps_per_epoch or max(1, inputs.num_train // config.batch_size)
    val_steps = config.validation_steps or (math.ceil(inputs.num_eval / config.batch_size)
                                            if inputs.num_eval else 0)
    if chief:
        _write_config(config, inputs, strategy, os.path.join(config.job_dir, CONFIG_JSON))
        print(f"strategy {type(strategy).__name__} with {replicas} replica(s); "
              f"{inputs.num_train} train / {inputs.num_eval} val / {inputs.num_test} test plays; "
              f"{steps} steps per epoch; {len(labels)} labels", flush=True)

    with strategy.scope():
        model = build_from_config(config, len(labels), image_size)
        _compile(model, config.learning_rate, _jit(config))
    distribution.patch_keras_for_tf_distribute()
    distribution.patch_per_device_datasets_without_autotune()
    with _usage_errors("input data"):
        train_ds = strategy.distribute_datasets_from_function(
            _dataset_fn(inputs, inputs.train_files, training=True, batch_size=config.batch_size,
                        seed=config.seed))
        val_ds = (strategy.distribute_datasets_from_function(
            _dataset_fn(inputs, inputs.eval_files, training=False, batch_size=config.batch_size,
                        seed=config.seed)) if inputs.eval_files else None)

    total_epochs = config.epochs + config.fine_tune_epochs
    checkpoints = distribution.write_dirpath(config.checkpoints_path, strategy)
    logs = distribution.write_dirpath(config.logs_path, strategy)
    history_dir = distribution.write_dirpath(os.path.join(config.job_dir, "history"), strategy)
    history_path = (os.path.join(config.job_dir, HISTORY_CSV) if chief
                    else os.path.join(history_dir, HISTORY_CSV))
    for folder in (checkpoints, logs, os.path.dirname(history_path)):
        tf.io.gfile.makedirs(folder)
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    common = [
        keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "best.weights.h5"), monitor=monitor,
                                        mode="max", save_best_only=True, save_weights_only=True),
        keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "last.weights.h5"),
                                        save_weights_only=True),
        keras.callbacks.TensorBoard(logs),
        keras.callbacks.CSVLogger(history_path, append=True),
    ]
    verbose = 1 if chief else 0

    def fit(phase: int, name: str, initial_epoch: int, epochs: int, keep_backup: bool):
        backup = distribution.backup_dirpath(os.path.join(config.backup_path, f"phase{phase}"), strategy)
        callbacks = [keras.callbacks.BackupAndRestore(backup, delete_checkpoint=not keep_backup),
                     *common]
        if verbose:  # the progress bar first, so that the summary line follows it
            callbacks.append(keras.callbacks.ProgbarLogger())
        callbacks.append(callbacks_lib.EpochSummary(total_epochs, phase=name))
        # BackupAndRestore restores the epoch into model._initial_epoch, which Keras 3.6
        # keeps after fit returns; clear it so that each phase starts where it should.
        model._initial_epoch = None  # pylint: disable=protected-access
        model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                  validation_data=val_ds, validation_steps=val_steps or None,
                  callbacks=callbacks, verbose=verbose)

    # Phase 1: the head on the (partly) frozen base. Its backup is kept until the
    # fine-tune phase ends, so that a restart skips a finished phase 1.
    fit(1, "head", 0, config.epochs, keep_backup=config.fine_tune_epochs > 0)
    trainable_from = config.trainable_from
    if config.fine_tune_epochs:
        # Phase 2: unfreeze the top blocks, recompile at the fine-tune learning rate.
        with strategy.scope():
            model_lib.set_trainable_from(model_lib.base_of(model), fine_tune_from)
            _compile(model, config.fine_tune_learning_rate, _jit(config))
        fit(2, "fine_tune", config.epochs, total_epochs, keep_backup=False)
        trainable_from = fine_tune_from
        shutil.rmtree(distribution.backup_dirpath(os.path.join(config.backup_path, "phase1"), strategy),
                      ignore_errors=True)

    summary: Dict[str, Any] = {"chief": chief, "epochs": total_epochs,
                               "num_replicas": replicas}
    if chief:
        summary.update(_finish(config, inputs, model, trainable_from))
    else:
        for path in (config.checkpoints_path, config.logs_path, os.path.join(config.job_dir, "history")):
            distribution.remove_temp_dirpath(path, strategy)
    return summary


def _finish(config: TrainConfig, inputs: Inputs, model: keras.Model, trainable_from: str) -> Dict[str, Any]:
    """Chief only: copies the weights into a plain model, evaluates on test, exports."""
    ic = inputs.input_config
    labels = list(ic.labels)
    # A model outside the strategy: evaluation and export need no other worker.
    plain = build_from_config(config, len(labels), (ic.height, ic.width), weights="none",
                              trainable_from=trainable_from)
    plain.set_weights(model.get_weights())
    files, split = (inputs.test_files, "test") if inputs.test_files else (inputs.eval_files, "val")
    result: Dict[str, Any] = {}
    if files:
        with _usage_errors(f"{split} data"):
            ds = data.make_dataset(files, training=False, global_batch_size=config.batch_size,
                                   num_frames=ic.num_frames, image_size=(ic.height, ic.width),
                                   compression=ic.compression)
        report = evaluate.evaluate_model(plain, ds, labels, config.job_dir)
        result["eval"] = {"split": split, "accuracy": report["accuracy"],
                          "num_examples": report["num_examples"]}
        print(f"{split} accuracy: {report['accuracy']:.4f} ({report['num_examples']} plays)", flush=True)
    else:
        print("no test or val split: skipped evaluation", flush=True)
    card = inputs.card
    exported = export.export_model(
        plain, config.job_dir, labels=labels, image_size=(ic.height, ic.width),
        num_frames=ic.num_frames,
        record_num_frames=card.num_frames if card else ic.num_frames,
        resize_mode=card.resize_mode if card else "crop",
        pad_short=card.pad_short if card else "",
        jpeg_quality=card.jpeg_quality if card else 90,
        frame_rate=card.frame_rate if card else None)
    result["export"] = {"model_path": exported["model_path"],
                        "saved_model_dir": exported["saved_model_dir"]}
    print(f"exported {exported['model_path']} and {exported['saved_model_dir']}", flush=True)
    return result
