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
import os
import signal
import sys
import threading
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position

from schemas.errors import EXIT_USAGE, UsageError, one_line  # noqa: E402
from trainer.data.service import start_dispatcher, start_worker  # noqa: E402

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
