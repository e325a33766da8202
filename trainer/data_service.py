"""The tf.data service: run the training input pipeline on other hosts' CPUs.

    python -m trainer.data_service --dispatcher_port=5050 [--work_dir=gs://b/dispatcher]
    python -m trainer.data_service --worker --dispatcher_address=HOST:5050 [--worker_port=5051]
    python -m trainer.task ... --data_service=grpc://HOST:5050

The trainer registers its training dataset (parse, frame choice, decode,
augment, batch) with the dispatcher; the workers run it and send the batches
back, uncompressed. Batches, not records, cross the network: the records are
small JPEGs, but decoding them is the work the service takes off the
accelerator host (decoded batches are large: docs/history.md).

Every trainer worker registers the same unsharded dataset under one job name in
the "distributed_epoch" mode: the dispatcher hands the shard files out to the
service workers as they ask (dynamic sharding) and each batch goes to one
trainer, so no trainer waits on a share of empty shards. Validation, test and
export stay on the trainer hosts.

A dispatcher with --work_dir journals its state there and, restarted with the
same flags, continues its jobs (workers re-register by themselves; while it is
down, training waits as soon as a service worker needs its next shard file).
Give it a fixed --dispatcher_port: restarted on another port, nobody finds it.
Without --work_dir a restarted dispatcher starts from scratch, and so does a
restarted trainer's job. A killed service worker's jobs go on on the others (or
on a worker started again), short of the records it held: docs/clusters.md,
"tf.data service faults", gives what each fault costs. The servers take port 0 for a free port and print the address they listen
on. The workers need the repo's Python code only for file systems other than
local and gs:// (they import tensorflow-io for those): the pipeline travels as
a TensorFlow graph.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import threading
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position

from schemas.errors import EXIT_USAGE, UsageError, one_line  # noqa: E402

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
    dataset does not inherit `dataset`'s options): see `reader.without_autotune`.
    """
    dataset = dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=PROCESSING_MODE, service=parse_address(address), job_name=name,
        compression=compression))
    # Imported here: the reader imports this module.
    from trainer import reader  # pylint: disable=g-import-not-at-top
    return reader.without_autotune(dataset)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.data_service",
        description="Start a tf.data service dispatcher (default) or worker for "
                    "python -m trainer.task --data_service=grpc://HOST:PORT.")
    parser.add_argument("--dispatcher_port", type=int, default=5050,
                        help="the dispatcher's port (0: a free one)")
    parser.add_argument("--work_dir", default="",
                        help="dispatcher: journal folder (local or gs://) so that a restarted "
                             "dispatcher continues its jobs")
    parser.add_argument("--worker", action="store_true", help="start a worker, not a dispatcher")
    parser.add_argument("--dispatcher_address", default="",
                        help="worker: the dispatcher's HOST:PORT (or grpc://HOST:PORT)")
    parser.add_argument("--worker_port", type=int, default=0,
                        help="worker: its port (0: a free one)")
    parser.add_argument("--worker_host", default="localhost",
                        help="worker: the host name trainers reach it at (its own host name on a "
                             "cluster)")
    return parser


def run(argv: Optional[Sequence[str]] = None, stop: Optional[threading.Event] = None) -> int:
    """Starts the server the flags ask for and serves until SIGTERM/SIGINT (or `stop`)."""
    args = build_parser().parse_args(argv)
    try:
        if args.worker:
            if not args.dispatcher_address:
                raise UsageError("--worker needs --dispatcher_address=HOST:PORT")
            server = start_worker(args.dispatcher_address, args.worker_port, args.worker_host)
            print(f"tf.data service worker listening on port {server._address.rsplit(':', 1)[-1]}"  # pylint: disable=protected-access
                  f", dispatcher {args.dispatcher_address}", flush=True)
        else:
            if args.work_dir:
                tf.io.gfile.makedirs(args.work_dir)
            server = start_dispatcher(args.dispatcher_port, args.work_dir)
            print(f"tf.data service dispatcher listening on {server.target}", flush=True)
            if args.work_dir and not args.dispatcher_port:
                print("warning: --work_dir with --dispatcher_port=0: restarted, this dispatcher "
                      "would listen on another port, where the workers and trainers do not look; "
                      "give a fixed --dispatcher_port", flush=True)
    except UsageError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
