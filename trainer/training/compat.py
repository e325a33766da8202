"""Every Keras/TensorFlow monkey patch playclips needs, each pinned to the versions it was written for.

Call `apply_all()` once before training (idempotent); call `reset_initial_epoch(model)`
before each `model.fit` that follows another one on the same model.

Each patch:
  * runs only inside its version range (lower bound included, upper bound
    excluded). Outside it raises RuntimeError naming the patch, the upstream
    issue and the versions: a newer release may have fixed the bug (then delete
    the patch) or changed the patched code (then re-verify it); the patch never
    silently replaces an upstream function it was not checked against;
  * checks that its target still exists with the expected signature;
  * has a test in tests/test_compat.py that shows the bug without the patch.

Patches deleted because the pinned Keras fixed the bug:
  * `keras.src.trainers.data_adapters.is_tf_dataset` did not accept
    `DistributedDatasetsFromFunction` (keras-team/keras#20134): fixed in Keras
    3.9 (keras-team/keras#20829); playclips pins a later Keras.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence, Tuple

from packaging.version import Version

_MARK = "_playclips_patched"
_ORIGINAL = "_playclips_original"

# [lower, upper): versions whose patched source was read and whose tests passed.
KERAS_SCALAR_MEAN_RANGE = ("3.6", "3.16")
KERAS_SYMBOLIC_BUILD_RANGE = ("3.11", "3.16")  # 3.11 made epoch iterators yield 3-tuples
KERAS_INITIAL_EPOCH_RANGE = ("3.6", "3.16")
TF_DEVICE_DATASET_RANGE = ("2.16", "2.17")

ISSUE_20585 = "keras-team/keras#20585 (tensorflow/tensorflow#72388)"
ISSUE_INITIAL_EPOCH = "BackupAndRestore leaves model._initial_epoch set after fit (no upstream issue filed)"
ISSUE_AUTOTUNE = "tf.data per-device datasets ignore the input's autotune option (no upstream issue filed)"


def _version(package: str) -> str:
    if package == "keras":
        import keras  # pylint: disable=g-import-not-at-top
        return keras.__version__
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.__version__


def check_range(patch: str, issue: str, package: str, version_range: Tuple[str, str]) -> None:
    """Raises RuntimeError unless `package`'s installed version lies in [lower, upper)."""
    lower, upper = version_range
    installed = _version(package)
    if not Version(lower) <= Version(installed) < Version(upper):
        raise RuntimeError(
            f"playclips compat patch {patch!r} ({issue}) was written for {package} >={lower},<{upper} "
            f"but {package} {installed} is installed: check whether {package} fixed the bug (then "
            f"delete the patch from trainer/training/compat.py) or re-verify the patch against this version "
            f"and widen its range")


def _target(patch: str, issue: str, owner, name: str, params: Sequence[str]) -> Callable:
    """`owner.name` as upstream wrote it (under our patch, if applied), checked against `params`."""
    current = getattr(owner, name, None)
    if current is None:
        raise RuntimeError(f"playclips compat patch {patch!r} ({issue}): "
                           f"{getattr(owner, '__name__', owner)}.{name} no longer exists")
    original = getattr(current, _ORIGINAL, current)
    actual = list(inspect.signature(original).parameters)
    if actual != list(params):
        raise RuntimeError(f"playclips compat patch {patch!r} ({issue}): "
                           f"{getattr(owner, '__name__', owner)}.{name} takes {actual}, the patch "
                           f"expects {list(params)}")
    return current


def _mark(func: Callable, original: Callable) -> Callable:
    setattr(func, _MARK, True)
    setattr(func, _ORIGINAL, original)
    return func


def original(func: Callable) -> Callable:
    """The upstream function behind a playclips patch (`func` itself when unpatched)."""
    return getattr(func, _ORIGINAL, func)


def patch_reduce_per_replica_scalar_mean() -> None:
    """Averages scalar step logs across workers with axis=None, not axis=0.

    Bug: under MultiWorkerMirroredStrategy with more than one worker, `fit`
    reduces each step's logs (loss, metrics) with
    `keras.src.backend.tensorflow.trainer.reduce_per_replica(..., "auto")`,
    which calls `strategy.reduce("MEAN", v, axis=0)`. The logs are scalars, and
    reducing a scalar along axis 0 fails when the train function is traced
    (keras-team/keras#20585, tensorflow/tensorflow#72388; open in Keras 3.15).

    Fix: for "auto"/"mean" reductions across workers, scalars are averaged with
    `strategy.reduce("MEAN", v, axis=None)`, the mean over replicas, which is
    what axis=0 means for a per-replica vector of scalars. Everything else
    (other reductions, non-scalars, single-worker strategies) goes to Keras's
    own function unchanged.

    Range: Keras >=3.6,<3.16 (`reduce_per_replica` has the same axis=0 code in
    3.6-3.15; this body ran with 3.6.0 before and is tested with 3.15.1).
    """
    patch = "reduce_per_replica scalar mean"
    check_range(patch, ISSUE_20585, "keras", KERAS_SCALAR_MEAN_RANGE)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from keras.src import tree  # pylint: disable=g-import-not-at-top
    from keras.src.backend.tensorflow import trainer as tf_trainer  # pylint: disable=g-import-not-at-top

    current = _target(patch, ISSUE_20585, tf_trainer, "reduce_per_replica",
                      ["values", "strategy", "reduction"])
    _target(patch, ISSUE_20585, tf_trainer, "_collective_all_reduce_multi_worker", ["strategy"])
    if getattr(current, _MARK, False):
        return
    upstream = current

    def reduce_per_replica(values, strategy, reduction):
        if (reduction not in ("auto", "mean")
                or not tf_trainer._collective_all_reduce_multi_worker(strategy)):  # pylint: disable=protected-access
            return upstream(values, strategy, reduction)

        def reduce_one(v):
            local = (strategy.experimental_local_results(v)[0]
                     if isinstance(v, tf.distribute.DistributedValues) else v)
            if getattr(getattr(local, "shape", None), "rank", None) == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return upstream(v, strategy, reduction)

        return tree.map_structure(reduce_one, values)

    tf_trainer.reduce_per_replica = _mark(reduce_per_replica, upstream)


def patch_symbolic_build_first_replica_batch() -> None:
    """Builds the model from the first local replica's batch instead of a cross-replica mean.

    Bug: before the first step, `TensorFlowTrainer._maybe_symbolic_build` takes
    one distributed input batch and averages it across replicas
    (`strategy.reduce("MEAN", batch, axis=None)`) only to learn its shapes.
    Under MultiWorkerMirroredStrategy with more than one worker that collective
    fails on the nested per-replica batch (keras-team/keras#20585,
    tensorflow/tensorflow#72388; open in Keras 3.15).

    Fix: take `strategy.experimental_local_results(v)[0]` of each value: the
    same shapes and dtypes (every replica gets the same per-replica batch
    shape), no collective, so no worker has to take part. The batch is only
    used to build the model symbolically, never trained on.

    Range: Keras >=3.11,<3.16. The body follows Keras 3.11+'s epoch iterator,
    which yields (begin_step, end_step, iterator); Keras 3.6-3.10 yielded
    (step, iterator), so this body does not fit them.
    """
    patch = "TensorFlowTrainer._maybe_symbolic_build first-replica batch"
    check_range(patch, ISSUE_20585, "keras", KERAS_SYMBOLIC_BUILD_RANGE)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from keras.src import tree  # pylint: disable=g-import-not-at-top
    from keras.src.backend.tensorflow import trainer as tf_trainer  # pylint: disable=g-import-not-at-top

    trainer_cls = tf_trainer.TensorFlowTrainer
    current = _target(patch, ISSUE_20585, trainer_cls, "_maybe_symbolic_build",
                      ["self", "iterator", "data_batch"])
    _target(patch, ISSUE_20585, trainer_cls, "_symbolic_build", ["self", "iterator", "data_batch"])
    if getattr(current, _MARK, False):
        return
    upstream = current

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                if all(isinstance(v, tf.distribute.DistributedValues) for v in tree.flatten(batch)):
                    strategy = self.distribute_strategy
                    batch = tree.map_structure(
                        lambda v: strategy.experimental_local_results(v)[0], batch)
                data_batch = batch
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer_cls._maybe_symbolic_build = _mark(_maybe_symbolic_build, upstream)


def patch_per_device_datasets_without_autotune() -> None:
    """Turns tf.data autotuning off in the per-replica datasets that tf.distribute builds.

    Bug: a distributed iterator feeds each replica through a small dataset of
    its own (`multi_device_iterator_ops._create_device_dataset`) built with
    default options, so each runs an autotuning thread even when the input
    dataset has autotuning off. In TF 2.16 deleting an iterator waits for that
    thread's next wake-up (docs/history.md), which `trainer.data.dataset_options.without_autotune`
    avoids for the input pipeline (see its docstring); the per-device datasets
    undid it.

    Fix: wrap the per-device dataset in `dataset_options.without_autotune`: options only,
    the elements are the same.

    Range: TensorFlow >=2.16,<2.17 (the pinned TensorFlow; tfio 0.37.1 ties
    playclips to it).
    """
    patch = "multi_device_iterator_ops._create_device_dataset without autotune"
    check_range(patch, ISSUE_AUTOTUNE, "tensorflow", TF_DEVICE_DATASET_RANGE)
    from tensorflow.python.data.ops import multi_device_iterator_ops  # pylint: disable=g-import-not-at-top

    from trainer.data import dataset_options  # pylint: disable=g-import-not-at-top

    current = _target(patch, ISSUE_AUTOTUNE, multi_device_iterator_ops, "_create_device_dataset",
                      ["prototype_ds", "incarnation_id", "prefetch_buffer_size", "experimental_slack"])
    if getattr(current, _MARK, False):
        return
    upstream = current

    def create_device_dataset(prototype_ds, incarnation_id, prefetch_buffer_size, experimental_slack):
        return dataset_options.without_autotune(
            upstream(prototype_ds, incarnation_id, prefetch_buffer_size, experimental_slack))

    multi_device_iterator_ops._create_device_dataset = _mark(create_device_dataset, upstream)  # pylint: disable=protected-access


def reset_initial_epoch(model) -> None:
    """Clears the epoch that BackupAndRestore restored, before the next `model.fit`.

    Bug: `BackupAndRestore.on_train_begin` restores the saved epoch into
    `model._initial_epoch`, `fit` starts at `model._initial_epoch or
    initial_epoch`, and nothing clears it when `fit` returns. A second `fit`
    on the same model (playclips' fine-tune phase) without a backup of its own
    then starts at the first phase's restored epoch instead of its
    `initial_epoch` (e.g. a run killed in epoch 2 of the head phase re-ran a
    head epoch inside the fine-tune phase).

    Fix: set it back to None, the value a fresh model has, so that each `fit`
    starts at its `initial_epoch` unless its own BackupAndRestore restores one.

    Range: Keras >=3.6,<3.16 (`fit` reads `self._initial_epoch or initial_epoch`
    and BackupAndRestore writes it in 3.6-3.15; tested with 3.15.1).
    """
    patch = "reset model._initial_epoch between fits"
    check_range(patch, ISSUE_INITIAL_EPOCH, "keras", KERAS_INITIAL_EPOCH_RANGE)
    if not hasattr(model, "_initial_epoch"):
        raise RuntimeError(f"playclips compat patch {patch!r} ({ISSUE_INITIAL_EPOCH}): "
                           f"{type(model).__name__} has no _initial_epoch attribute")
    model._initial_epoch = None  # pylint: disable=protected-access


PATCHES = (patch_reduce_per_replica_scalar_mean, patch_symbolic_build_first_replica_batch,
           patch_per_device_datasets_without_autotune)


def apply_all() -> None:
    """Applies every patch (idempotent: a second call checks the versions and changes nothing)."""
    for patch in PATCHES:
        patch()
