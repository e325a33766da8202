"""The tf.data service's client and servers: the training pipeline run on other hosts' CPUs.

The command that starts a dispatcher or a worker is `python -m trainer.data_service`
(its docstring says how the service is used, and what each fault costs); the
reader calls `distribute` when the run has `--data_service`.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import tensorflow as tf

from schemas.errors import UsageError
from trainer.data import dataset_options

PROCESSING_MODE = "distributed_epoch"


def parse_address(address: str) -> str:
    """`grpc://HOST:PORT` (or `HOST:PORT`) -> `grpc://HOST:PORT`; UsageError otherwise."""
    host_port = address[len("grpc://"):] if address.startswith("grpc://") else address
    host, _, port = host_port.rpartition(":")
    if "://" in host_port or not host or not port.isdigit():
        raise UsageError(f"--data_service={address!r}: expected grpc://HOST:PORT, the "
                         f"dispatcher's address (python -m trainer.data_service --dispatcher_port)")
    return f"grpc://{host_port}"


def job_name(job_dir: str, split: str, record_kind: str) -> str:
    """The service job that every trainer worker of one run joins (one per run, split, record kind)."""
    digest = hashlib.sha1(job_dir.rstrip("/").encode("utf-8")).hexdigest()[:12]
    return f"playclips-{digest}-{split}-{record_kind}"


def distribute(dataset: tf.data.Dataset, address: str, name: str,
               compression: Optional[str] = None) -> tf.data.Dataset:
    """`dataset` processed by the service at `address`, shared by every consumer of job `name`.

    `compression`: None (raw tensors, the default) or "AUTO" (tf.data's
    default: snappy). Decoded uint8 clips compress little, and decompressing
    them costs the trainer host about as much CPU as decoding the JPEGs
    (benchmarks/data_service.py), which is what the service is there to save.
    The client side gets tf.data's autotuning turned off again (the returned
    dataset does not inherit `dataset`'s options): see `dataset_options.without_autotune`.
    """
    dataset = dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=PROCESSING_MODE, service=parse_address(address), job_name=name,
        compression=compression))
    return dataset_options.without_autotune(dataset)


def start_dispatcher(port: int = 0, work_dir: str = "") -> tf.data.experimental.service.DispatchServer:
    """A started dispatcher (port 0: a free one; `work_dir`: journal for a restart)."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir or None, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher_address: str, port: int = 0,
                 worker_host: str = "localhost") -> tf.data.experimental.service.WorkerServer:
    """A started worker registered with the dispatcher at `dispatcher_address` (HOST:PORT).

    `worker_host` is the name the trainers reach this worker at (the dispatcher
    gives it to them).
    """
    dispatcher = parse_address(dispatcher_address)[len("grpc://"):]
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher, worker_address=f"{worker_host}:%port%", port=port)
    return tf.data.experimental.service.WorkerServer(config)
