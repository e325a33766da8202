"""Patches of Keras and TensorFlow internals, in one place (placeholder: being reworked)."""

from __future__ import annotations

import tensorflow as tf

from trainer import data


def apply_all() -> None:
    """Applies every patch once (idempotent)."""
    patch_keras_for_tf_distribute()
    patch_per_device_datasets_without_autotune()


def reset_initial_epoch(model) -> None:
    """Clears the epoch BackupAndRestore restored into the model (kept after fit returns)."""
    model._initial_epoch = None  # pylint: disable=protected-access


def patch_keras_for_tf_distribute() -> None:
    """Three narrow fixes that let Keras 3.6 `Model.fit` run our tf.distribute setups. Idempotent.

    1. `fit` rejects `strategy.distribute_datasets_from_function` output: its
       data-adapter check knows `DistributedDataset` but not
       `DistributedDatasetsFromFunction` (keras-team/keras#20134, fixed by
       #20829 in a later Keras), although the TF trainer handles both alike.
    2. Before the first step `fit` averages one input batch across replicas
       (`strategy.reduce("MEAN", batch)`) only to learn its shapes; with
       MultiWorkerMirroredStrategy across workers that collective fails on a
       nested PerReplica batch (keras-team/keras#20585, tensorflow#72388). The
       fix takes the first local replica's batch instead: same shapes, no
       collective.
    3. Across workers, `fit` averages each step's scalar logs (loss, metrics)
       with `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars (same
       Keras issue); scalars are averaged with axis=None instead.
    """
    from keras.src import tree  # pylint: disable=g-import-not-at-top
    from keras.src.backend.tensorflow import trainer as tf_trainer  # pylint: disable=g-import-not-at-top
    from keras.src.trainers import data_adapters  # pylint: disable=g-import-not-at-top

    original = data_adapters.is_tf_dataset
    if not getattr(original, "_playclips_patched", False):
        def is_tf_dataset(x) -> bool:
            if original(x):
                return True
            return any(parent.__name__ == "DistributedDatasetsFromFunction"
                       and "tensorflow.python." in str(parent.__module__)
                       for parent in type(x).__mro__)

        is_tf_dataset._playclips_patched = True
        data_adapters.is_tf_dataset = is_tf_dataset

    original_reduce = tf_trainer.reduce_per_replica
    if not getattr(original_reduce, "_playclips_patched", False):
        def reduce_per_replica(values, strategy, reduction):
            if (reduction not in ("auto", "mean")
                    or not tf_trainer._collective_all_reduce_multi_worker(strategy)):  # pylint: disable=protected-access
                return original_reduce(values, strategy, reduction)

            def reduce_one(v):
                local = (strategy.experimental_local_results(v)[0]
                         if isinstance(v, tf.distribute.DistributedValues) else v)
                if getattr(getattr(local, "shape", None), "rank", None) == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original_reduce(v, strategy, reduction)

            return tree.map_structure(reduce_one, values)

        reduce_per_replica._playclips_patched = True
        tf_trainer.reduce_per_replica = reduce_per_replica

    trainer_cls = tf_trainer.TensorFlowTrainer
    if getattr(trainer_cls._maybe_symbolic_build, "_playclips_patched", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, it in iterator.enumerate_epoch():
                batch = next(it)
                if all(isinstance(v, tf.distribute.DistributedValues) for v in tree.flatten(batch)):
                    strategy = self.distribute_strategy
                    batch = tree.map_structure(
                        lambda v: strategy.experimental_local_results(v)[0], batch)
                data_batch = batch
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    _maybe_symbolic_build._playclips_patched = True
    trainer_cls._maybe_symbolic_build = _maybe_symbolic_build


def patch_per_device_datasets_without_autotune() -> None:
    """Turns tf.data autotuning off in the per-replica datasets that tf.distribute builds.

    A distributed iterator feeds each replica through a small dataset of its own
    (`multi_device_iterator_ops._create_device_dataset`) with default options,
    so each runs an autotuning thread and has the iterator-deletion stall
    described in `data.without_autotune`, even when the input dataset has
    autotuning off. Idempotent; TF 2.16 (the pinned version).
    """
    from tensorflow.python.data.ops import multi_device_iterator_ops  # pylint: disable=g-import-not-at-top

    original = multi_device_iterator_ops._create_device_dataset  # pylint: disable=protected-access
    if getattr(original, "_playclips_patched", False):
        return

    def create_device_dataset(*args, **kwargs):
        return data.without_autotune(original(*args, **kwargs))

    create_device_dataset._playclips_patched = True
    multi_device_iterator_ops._create_device_dataset = create_device_dataset  # pylint: disable=protected-access
