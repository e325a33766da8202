"""trainer.training.compat: each patch's bug shows without the patch and is gone with it; version guards.

The multi-worker bugs need two processes: each test starts two workers on
127.0.0.1 (TF_CONFIG, as tests/test_train.py does) that apply every patch but
the one under test.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from trainer.training import compat  # noqa: E402
from trainer.data import dataset_options, reader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import keras
    from trainer.training import compat
    for patch in compat.PATCHES:
        if patch.__name__ != sys.argv[1]:
            patch()
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING))

    def dataset_fn(input_context):
        x = np.arange(32, dtype="float32").reshape(16, 2)
        ds = tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True)))
        return ds.repeat().batch(input_context.get_per_replica_batch_size(4))

    with strategy.scope():
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(1e-3), "mse", metrics=["mae"])
    try:
        history = model.fit(strategy.distribute_datasets_from_function(dataset_fn), epochs=1,
                            steps_per_epoch=2, verbose=0)
        result = {"loss": history.history["loss"]}
    except Exception as err:  # the bug: report it, both workers fail alike
        result = {"error": f"{type(err).__name__}: {' '.join(str(err).split())}"}
    print("RESULT " + json.dumps(result), flush=True)
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_workers(skip: str):
    """Runs `_WORKER` as a two-worker MultiWorkerMirroredStrategy cluster; each worker's result."""
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, skip], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        outs = [proc.communicate(timeout=50)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    results = []
    for proc, out in zip(procs, outs):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, out[-3000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


def test_multi_worker_fit_with_all_patches():
    results = _two_workers(skip="")
    assert all("loss" in r and np.isfinite(r["loss"][0]) for r in results), results
    assert results[0]["loss"] == results[1]["loss"]  # one all-reduced loss


@pytest.mark.parametrize("skip,error", [
    # keras#20585: the scalar loss is reduced along axis 0.
    ("patch_reduce_per_replica_scalar_mean",
     "ValueError: Invalid reduction dimension 0 for input with 0 dimensions"),
    # keras#20585 / tensorflow#72388: the first batch is averaged across workers to build.
    ("patch_symbolic_build_first_replica_batch",
     "ValueError: Attempt to convert a value (PerReplica:"),
])
def test_multi_worker_fit_fails_without_the_patch(skip, error):
    results = _two_workers(skip=skip)
    for result in results:
        assert error in result.get("error", ""), result


class _Killed(Exception):
    pass


def _interrupted_backup(backup_dir):
    """A backup as a head phase killed after its first of two epochs leaves it."""
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise _Killed()

    model = _tiny_model()
    with pytest.raises(_Killed):
        model.fit(np.zeros((4, 1)), np.zeros((4, 1)), epochs=2, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup_dir), Interrupt()])
    with open(os.path.join(backup_dir, "training_metadata.json")) as f:
        assert json.load(f)["epoch"] == 1


def _tiny_model():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


@pytest.mark.parametrize("reset", [False, True])
def test_reset_initial_epoch(tmp_path, reset):
    backup = str(tmp_path / "phase1")
    _interrupted_backup(backup)
    x = y = np.zeros((4, 1))
    model = _tiny_model()  # the restarted job: head phase restored at epoch 1, then fine-tune
    head = model.fit(x, y, epochs=2, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert head.epoch == [1]
    assert model._initial_epoch == 1  # the bug: still set after fit returned
    if reset:
        compat.reset_initial_epoch(model)
    fine_tune = model.fit(x, y, initial_epoch=2, epochs=4, verbose=0)
    assert fine_tune.epoch == ([2, 3] if reset else [1, 2, 3])  # unpatched: head epoch 1 again


def _per_device_options(monkeypatch, patched: bool):
    """autotune.enabled of the per-device datasets a mirrored iterator builds over an autotune-off dataset."""
    from tensorflow.python.data.ops import multi_device_iterator_ops as mdi
    upstream = compat.original(mdi._create_device_dataset)
    monkeypatch.setattr(mdi, "_create_device_dataset", upstream)
    if patched:
        compat.patch_per_device_datasets_without_autotune()
        compat.patch_per_device_datasets_without_autotune()  # idempotent: wrapped once
        assert compat.original(mdi._create_device_dataset) is upstream
    made = []
    current = mdi._create_device_dataset

    def spy(*args, **kwargs):
        made.append(current(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(mdi, "_create_device_dataset", spy)
    ds = dataset_options.without_autotune(tf.data.Dataset.range(8).batch(2))
    iterator = iter(tf.distribute.MirroredStrategy(["/cpu:0"]).experimental_distribute_dataset(ds))
    assert list(next(iterator).numpy()) == [0, 1]
    assert ds.options().autotune.enabled is False and made
    return [d.options().autotune.enabled for d in made]


@pytest.mark.parametrize("patched", [False, True])
def test_per_device_datasets_autotune(monkeypatch, patched):
    enabled = _per_device_options(monkeypatch, patched)
    # Unpatched the input's autotune=False is lost (None: tf.data's default, autotuning on).
    assert enabled == ([False] if patched else [None])


def test_keras_accepts_datasets_from_function_unpatched():
    # keras#20134 (fixed in Keras 3.9): why compat has no is_tf_dataset patch any more.
    from keras.src.trainers import data_adapters
    assert not getattr(data_adapters.is_tf_dataset, "_playclips_patched", False)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    ds = strategy.distribute_datasets_from_function(lambda ctx: tf.data.Dataset.range(4).batch(2))
    assert data_adapters.is_tf_dataset(ds)


def test_apply_all_is_idempotent():
    from keras.src.backend.tensorflow import trainer as tf_trainer
    compat.apply_all()
    first = (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    compat.apply_all()
    assert (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build) == first
    assert compat.original(first[0]) is not first[0]
    assert not hasattr(compat.original(first[0]), "_playclips_patched")


@pytest.mark.parametrize("version,patch", [
    ("3.16.0", "reduce_per_replica scalar mean"),  # above every Keras range
    ("3.10.0", "_maybe_symbolic_build first-replica batch"),  # 2-tuple epoch iterator
])
def test_keras_outside_the_range_raises(monkeypatch, version, patch):
    from keras.src.backend.tensorflow import trainer as tf_trainer
    compat.apply_all()
    before = (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    monkeypatch.setattr(keras, "__version__", version)
    with pytest.raises(RuntimeError, match=f"{patch}.*keras-team/keras#20585.*installed") as err:
        compat.apply_all()
    assert f"keras {version} is installed" in str(err.value)
    assert (tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build) == before
    if version == "3.16.0":
        with pytest.raises(RuntimeError, match=r"_initial_epoch.*keras >=3.6,<3.16 but keras 3.16.0"):
            compat.reset_initial_epoch(_tiny_model())


def test_tensorflow_outside_the_range_raises(monkeypatch):
    monkeypatch.setattr(tf, "__version__", "2.17.0")
    with pytest.raises(RuntimeError, match=r"_create_device_dataset.*tensorflow >=2.16,<2.17 but "
                                           r"tensorflow 2.17.0 is installed"):
        compat.patch_per_device_datasets_without_autotune()


def test_changed_targets_raise(monkeypatch):
    from keras.src.backend.tensorflow import trainer as tf_trainer
    upstream = compat.original(tf_trainer.reduce_per_replica)
    monkeypatch.setattr(tf_trainer, "reduce_per_replica", lambda values, strategy: values)
    with pytest.raises(RuntimeError, match=r"reduce_per_replica takes \['values', 'strategy'\]"):
        compat.patch_reduce_per_replica_scalar_mean()
    monkeypatch.delattr(tf_trainer, "_collective_all_reduce_multi_worker")
    monkeypatch.setattr(tf_trainer, "reduce_per_replica", upstream)
    with pytest.raises(RuntimeError, match="_collective_all_reduce_multi_worker no longer exists"):
        compat.patch_reduce_per_replica_scalar_mean()
    with pytest.raises(RuntimeError, match="has no _initial_epoch"):
        compat.reset_initial_epoch(object())
