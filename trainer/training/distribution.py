"""tf.distribute strategies by name (Model Garden's distribute_utils style), the run's strategy,
seed and precision (`set_up`), and chief helpers.

`get_distribution_strategy("mirrored", cpu_replicas=2)` runs MirroredStrategy
for real on a machine without GPUs: the CPU is split into logical devices
(which must happen before TensorFlow initializes its devices, so call it
first) and gradients are all-reduced with ReductionToOneDevice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from typing import Optional, Tuple

import keras
import tensorflow as tf

from backbone import precision
from schemas.errors import UsageError
from trainer.training.config import STRATEGIES, RuntimeConfig, TrainingConfig

logger = logging.getLogger(__name__)

_POLICIES = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def configure_cpu_replicas(num: int) -> None:
    """Splits the first physical CPU into `num` logical devices (before TF initializes)."""
    if num <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current and len(current) == num:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num)])
    except RuntimeError as err:
        raise UsageError(
            f"cannot split the CPU into {num} replicas: TensorFlow already initialized its devices "
            f"({err}); choose the strategy before running any TensorFlow op") from None


def get_distribution_strategy(name: str = "mirrored", *, cpu_replicas: int = 0,
                              tpu_address: str = "") -> tf.distribute.Strategy:
    """Maps a strategy name to a tf.distribute.Strategy.

    Args:
      name: mirrored (all local GPUs, or `cpu_replicas` CPU devices without GPUs),
        multi_worker (MultiWorkerMirroredStrategy, cluster from TF_CONFIG),
        one_device (the first GPU, else the CPU), default (no distribution) or
        tpu (TPUStrategy at `tpu_address`, "" for the local/Cloud TPU VM).
      cpu_replicas: CPU replicas for mirrored on a machine without GPUs.
      tpu_address: the TPU name or grpc:// address.
    """
    name = (name or "default").lower()
    if name not in STRATEGIES:
        raise UsageError(f"unknown --strategy={name!r}: use one of {', '.join(STRATEGIES)}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as err:
            raise UsageError(f"--strategy=tpu: no TPU available ({str(err).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker":
        gpus = tf.config.list_physical_devices("GPU")
        implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                          else tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation))

    # Local strategies: GPUs when there are any.
    if cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
        configure_cpu_replicas(cpu_replicas)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if cpu_replicas > 1:
        cpus = cpus[:cpu_replicas]
    else:
        cpus = cpus[:1]
    return tf.distribute.MirroredStrategy(
        devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=cpus[0]))


def set_up(training: TrainingConfig, runtime: RuntimeConfig) -> tf.distribute.Strategy:
    """The run's strategy, random seed, op determinism and mixed-precision policy.

    Called first: --cpu_replicas splits the CPU before TensorFlow starts.
    """
    if (training.jit_compile == "true" and runtime.strategy == "mirrored"
            and runtime.cpu_replicas > 1 and not tf.config.list_physical_devices("GPU")):
        raise UsageError("--jit_compile=true cannot run MirroredStrategy over logical CPU "
                         "devices (XLA keeps each replica's variables on its own device): drop "
                         "--cpu_replicas or use --jit_compile=false")
    strategy = get_distribution_strategy(
        runtime.strategy, cpu_replicas=runtime.cpu_replicas, tpu_address=runtime.tpu)
    replicas = strategy.num_replicas_in_sync
    if training.batch_size % replicas:
        raise UsageError(f"--batch_size={training.batch_size} must be a multiple of the "
                         f"{replicas} replicas")
    if training.seed is not None:
        keras.utils.set_random_seed(training.seed)
    if runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    warning = precision.mixed_precision_warning(training.mixed_precision, runtime.strategy == "tpu")
    if warning:
        logger.warning("%s", warning)
    keras.mixed_precision.set_global_policy(_POLICIES[training.mixed_precision])
    return strategy


def task_type_and_id(strategy: Optional[tf.distribute.Strategy] = None) -> Tuple[Optional[str], int]:
    """This task's (type, index) in the cluster; (None, 0) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None and getattr(resolver, "task_type", None):
        return resolver.task_type, int(resolver.task_id or 0)
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    return task.get("type"), int(task.get("index", 0))


def is_chief(strategy: Optional[tf.distribute.Strategy] = None) -> bool:
    """True for the task that writes exports and summaries (chief, or worker 0 without a chief)."""
    task_type, task_id = task_type_and_id(strategy)
    if task_type in (None, "chief"):
        return True
    if task_type == "worker" and task_id == 0:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
        return "chief" not in tf_config.get("cluster", {})
    return False


def write_dirpath(dirpath: str, strategy: Optional[tf.distribute.Strategy] = None) -> str:
    """Where this task writes `dirpath`'s files: dirpath itself on the chief, a temp dir elsewhere.

    Non-chief workers must still save (saving may need every worker) but into
    their own temp directory, as the tf.distribute multi-worker guide does.
    """
    if is_chief(strategy):
        return dirpath
    task_type, task_id = task_type_and_id(strategy)
    return os.path.join(tempfile.gettempdir(), "playclips_workertemp",
                        f"{task_type}_{task_id}_{os.getpid()}", os.path.basename(dirpath.rstrip("/")))


def backup_dirpath(dirpath: str, strategy: Optional[tf.distribute.Strategy] = None) -> str:
    """Where this task keeps its BackupAndRestore state: persistent, one folder per task.

    A non-chief's folder sits next to the chief's, not inside it: each task
    deletes its own at the end of training, and a nested folder made the
    chief's delete race with the worker's.
    """
    if is_chief(strategy):
        return dirpath
    task_type, task_id = task_type_and_id(strategy)
    return f"{dirpath.rstrip('/')}_workertemp_{task_type}_{task_id}"


def remove_temp_dirpath(dirpath: str, strategy: Optional[tf.distribute.Strategy] = None) -> None:
    """Deletes a non-chief's temp directory from `write_dirpath`."""
    if not is_chief(strategy):
        temp = write_dirpath(dirpath, strategy)
        shutil.rmtree(temp, ignore_errors=True)
        with contextlib.suppress(OSError):  # the task's folder, once empty
            os.rmdir(os.path.dirname(temp))
