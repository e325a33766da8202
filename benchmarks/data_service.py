"""Benchmark: the training input pipeline inline against the same pipeline on a tf.data service.

On synthetic plays (224x224, 40 stored frames, --clip_frames chosen per clip) written to
a temp dir:
  inline    trainer.data.reader.make_dataset (training) in this process (parse, frame
            choice, decode, augment, batch), as training without --data_service
  service   the same dataset registered with a dispatcher in this process and run by
            --workers `python -m trainer.data_service --worker` processes on this machine;
            this process only receives the batches, uncompressed, as with --data_service
            (trainer.data.service.distribute)
  service_snappy  the same, batches snappy-compressed (tf.data's default, "AUTO")
Both alternate for --rounds rounds (each round a new service job); each reports its best
round in clips/s and the lowest CPU time per clip of this process (the trainer's host
side: with the service, what is left of the input pipeline on the accelerator host).
On one machine the service's workers share the CPU with this process, so the service
cannot be faster here; the CPU time it leaves on the trainer side is what a cluster gains.

Usage: python benchmarks/data_service.py [--workers 1] [--rounds 3] [--num_clips 160]
Prints key=value lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from backbone import precision  # noqa: E402
from demo_data import synthetic_records as record_fixtures  # noqa: E402
from trainer.data import service as data_service  # noqa: E402
from trainer.data import parsers, reader, sources  # noqa: E402

from input_pipeline import measure  # noqa: E402  (benchmarks/, this script's folder)

LABELS = tuple(f"play_{i}" for i in range(11))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_plays", type=int, default=48)
    parser.add_argument("--num_frames", type=int, default=40, help="stored frames per play")
    parser.add_argument("--clip_frames", type=int, default=16, help="frames per training clip")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_clips", type=int, default=160, help="clips timed per round")
    parser.add_argument("--warmup_batches", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    args = parser.parse_args(argv)

    root = tempfile.mkdtemp(prefix="playclips_bench_service_")
    workers = []
    try:
        card = record_fixtures.write_dataset(
            os.path.join(root, "records"), num_plays=args.num_plays, num_frames=args.num_frames,
            size=args.size, labels=LABELS, num_shards=args.num_shards, noise=6.0, jpeg_quality=90)
        files = sources.split_files(os.path.join(root, "records"), "train", card)
        dispatcher = data_service.start_dispatcher()
        address = dispatcher.target[len("grpc://"):]
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        for _ in range(args.workers):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "trainer.data_service", "--worker",
                 f"--dispatcher_address={address}"], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        print(f"cpu_model={precision.cpu_model()} cpus={os.cpu_count()} plays={args.num_plays} "
              f"stored_frames={args.num_frames} clip_frames={args.clip_frames} size={args.size} "
              f"batch_size={args.batch_size} timed_clips={args.num_clips} "
              f"service_workers={args.workers}")

        def pipeline():
            return reader.make_dataset(
                files, parsers.ClipParser(args.clip_frames, (args.size, args.size)),
                reader.ReaderConfig(args.batch_size, seed=0, shuffle_buffer=64),
                training=True, compression=card.compression, repeat=True)

        rates, cpu_ms = {}, {}
        for round_index in range(args.rounds):
            variants = (("inline", pipeline()),
                        ("service", data_service.distribute(pipeline(), address,
                                                            f"bench-{round_index}")),
                        ("service_snappy", data_service.distribute(
                            pipeline(), address, f"bench-snappy-{round_index}",
                            compression="AUTO")))
            for name, ds in variants:
                rate, ms = measure(ds, args.num_clips, args.warmup_batches)
                rates[name] = max(rates.get(name, 0.0), rate)
                cpu_ms[name] = min(cpu_ms.get(name, float("inf")), ms)
                print(f"round {name}_clips_per_s={rate:.2f} {name}_trainer_cpu_ms_per_clip={ms:.2f}",
                      flush=True)
        for name in ("inline", "service", "service_snappy"):
            print(f"clips_per_s_{name}={rates[name]:.2f}")
            print(f"trainer_cpu_ms_per_clip_{name}={cpu_ms[name]:.2f}")
        print(f"ratio_service_vs_inline={rates['service'] / rates['inline']:.3f}")
        print(f"ratio_service_snappy_vs_inline={rates['service_snappy'] / rates['inline']:.3f}")
        for name in ("service", "service_snappy"):
            print(f"trainer_cpu_ratio_{name}_vs_inline={cpu_ms[name] / cpu_ms['inline']:.3f}")
        clip_mb = args.clip_frames * args.size * args.size * 3 / 1e6
        print(f"clip_mb={clip_mb:.2f} service_mb_per_s={rates['service'] * clip_mb:.1f}")
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
