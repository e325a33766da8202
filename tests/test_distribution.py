"""trainer.training.distribution: strategies by name, CPU replicas, chief rules, fit on distributed datasets."""
import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from trainer.training import distribution  # noqa: E402
from schemas.errors import UsageError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_strategy_from_name():
    assert distribution.get_distribution_strategy("default") is tf.distribute.get_strategy()
    one = distribution.get_distribution_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    mirrored = distribution.get_distribution_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == max(1, len(tf.config.list_logical_devices("GPU")))


def test_unknown_strategy():
    with pytest.raises(UsageError, match="mirrored, multi_worker"):
        distribution.get_distribution_strategy("parameter_server")


def test_cpu_replicas_mirrored_in_fresh_process():
    # Logical CPU devices must be set before TensorFlow initializes: a fresh interpreter.
    script = textwrap.dedent("""
        import json
        import tensorflow as tf
        from trainer.training import distribution
        strategy = distribution.get_distribution_strategy("mirrored", cpu_replicas=2)
        ctx = tf.distribute.get_replica_context
        per_replica = strategy.run(lambda: tf.cast(ctx().replica_id_in_sync_group + 1, tf.float32))
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "sum": float(total),
                          "devices": list(strategy.extended.worker_devices),
                          "ops": type(strategy.extended._cross_device_ops).__name__}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["sum"] == 3.0  # replica 0 gave 1, replica 1 gave 2
    assert [d.split("/")[-1] for d in result["devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert result["ops"] == "ReductionToOneDevice"


def _tf_config(monkeypatch, cluster, task_type, index):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster, "task": {"type": task_type, "index": index}}))


def test_chief_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribution.is_chief() and distribution.task_type_and_id() == (None, 0)
    with_chief = {"chief": ["localhost:1"], "worker": ["localhost:2"]}
    _tf_config(monkeypatch, with_chief, "chief", 0)
    assert distribution.is_chief()
    _tf_config(monkeypatch, with_chief, "worker", 0)
    assert not distribution.is_chief()
    workers = {"worker": ["localhost:1", "localhost:2"]}
    _tf_config(monkeypatch, workers, "worker", 0)
    assert distribution.is_chief()
    assert distribution.write_dirpath(str(tmp_path / "logs")) == str(tmp_path / "logs")
    _tf_config(monkeypatch, workers, "worker", 1)
    assert not distribution.is_chief()
    temp = distribution.write_dirpath(str(tmp_path / "logs"))
    assert not temp.startswith(str(tmp_path)) and temp.endswith("logs")
    assert distribution.backup_dirpath(str(tmp_path / "backup")) == str(
        tmp_path / "backup_workertemp_worker_1")
    os.makedirs(temp)
    distribution.remove_temp_dirpath(str(tmp_path / "logs"))
    assert not os.path.exists(temp)


def test_fit_takes_datasets_from_function():
    # Keras >= 3.9 accepts DistributedDatasetsFromFunction in fit (keras#20134): no patch.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    contexts = []

    def dataset_fn(input_context):
        contexts.append(input_context)
        x = np.arange(16, dtype="float32").reshape(16, 1)
        batch = input_context.get_per_replica_batch_size(4)
        return tf.data.Dataset.from_tensor_slices((x, 2 * x)).repeat().batch(batch)

    with strategy.scope():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(1e-3), "mse")
    ds = strategy.distribute_datasets_from_function(dataset_fn)
    history = model.fit(ds, epochs=2, steps_per_epoch=3, verbose=0)
    assert len(history.history["loss"]) == 2
    assert contexts and contexts[0].num_input_pipelines == 1
