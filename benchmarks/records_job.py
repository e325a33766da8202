"""Records job throughput: plays/s of the Beam job against a plain Python loop.

One workload (frame folders of JPEG frames written to a temp dir), three ways:
  loop       single process: read_play + encode_play + tf.io.TFRecordWriter
  direct     the Beam job on the DirectRunner, in memory (one process)
  multiproc  the Beam job on the DirectRunner, multi_processing, --direct_num_workers=2
Prints key=value lines. Wall-clock times include each run's start-up (for
multiproc: starting the worker processes and their imports); CPU
seconds (this process plus the finished worker processes) show the work and the
overhead independently of other load on the machine (loadavg is printed too).

    python benchmarks/records_job.py [--plays 300] [--source_frames 60] [--source_size 1280x720]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)

import numpy as np  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position

from beam_jobs import make_records, plays  # pylint: disable=wrong-import-position
from media import frames  # pylint: disable=wrong-import-position
from schemas import play_record  # pylint: disable=wrong-import-position
from schemas.sampling import FrameSampling  # pylint: disable=wrong-import-position

LABELS = ("cut", "isolation", "post_up", "spot_up")


def _source_frame(t: int, width: int, height: int) -> np.ndarray:
    """A smooth broadcast-like frame (gradients + moving blobs), cheap to make."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([x / width * 200, y / height * 160 + 40, (x + y) / (width + height) * 120], -1)
    for k in range(6):
        cx = (width * (0.1 + 0.15 * k) + 9 * t) % width
        cy = height * (0.3 + 0.08 * k)
        frame[((x - cx) ** 2 + (y - cy) ** 2) < (height * 0.03) ** 2] = (240, 240 - 30 * k, 30 * k)
    return frame.astype(np.uint8)


def make_workload(folder: str, num_plays: int, num_frames: int, width: int, height: int) -> str:
    """Frame folders (hard links of one rendered frame set) and a manifest; returns its path."""
    source = os.path.join(folder, "source")
    os.makedirs(source)
    for t in range(num_frames):
        Image.fromarray(_source_frame(t, width, height)).save(
            os.path.join(source, f"frame_{t}.jpg"), quality=90)
    lines = ["play_id,label,path,game_id"]
    for i in range(num_plays):
        play_dir = os.path.join(folder, "plays", f"p{i:04d}")
        os.makedirs(play_dir)
        for name in os.listdir(source):
            os.link(os.path.join(source, name), os.path.join(play_dir, name))
        lines.append(f"p{i:04d},{LABELS[i % len(LABELS)]},plays/p{i:04d},g{i // 5}")
    manifest = os.path.join(folder, "plays.csv")
    with open(manifest, "w") as f:
        f.write("\n".join(lines) + "\n")
    return manifest


def run_loop(manifest: str, output: str, num_frames: int, frame_size: int) -> int:
    """The same work without Beam: one process, one TFRecord file."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    specs = [s for s in plays.read_manifest(manifest) if isinstance(s, plays.PlaySpec)]
    labels = sorted({s.label for s in specs})
    written = 0
    with tf.io.TFRecordWriter(output) as writer:
        for spec in specs:
            sampled = frames.read_play(spec.path, FrameSampling.of(num_frames, frame_size),
                                       frame_rate=30.0)
            record = play_record.PlayRecord(
                play_id=spec.play_id, label=spec.label, label_index=labels.index(spec.label),
                frames=sampled.frames, timestamps_us=sampled.timestamps_us, height=frame_size,
                width=frame_size, game_id=spec.game_id, data_path=spec.path,
                frame_rate=sampled.frame_rate, source_num_frames=sampled.source_num_frames)
            writer.write(play_record.encode_play(record))
            written += 1
    return written


def run_job(manifest: str, output_dir: str, num_frames: int, frame_size: int, beam_args) -> int:
    card = make_records.run([f"--input={manifest}", f"--output_dir={output_dir}",
                             f"--num_frames={num_frames}", f"--frame_size={frame_size}",
                             "--runner=DirectRunner", "--overwrite", *beam_args],
                            save_main_session=False)
    return sum(card.counts.values())


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the multi-processing workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plays", type=int, default=300,
                        help="plays in the workload (default 300: per-play work dominates the fixed start-up)")
    parser.add_argument("--source_frames", type=int, default=60)
    parser.add_argument("--source_size", default="1280x720", help="WxH of the source frames")
    parser.add_argument("--num_frames", type=int, default=40)
    parser.add_argument("--frame_size", type=int, default=224)
    parser.add_argument("--modes", default="loop,direct,multiproc",
                        help="which runs, in this order (default loop,direct,multiproc)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.source_size.split("x"))
    # TensorFlow loaded before any timed run, so that no run pays for its import.
    import tensorflow as tf  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import

    tmp = tempfile.mkdtemp(prefix="records_bench_")
    try:
        manifest = make_workload(tmp, args.plays, args.source_frames, width, height)
        all_runs = {
            "loop": lambda: run_loop(manifest, os.path.join(tmp, "loop.tfrecord"),
                                     args.num_frames, args.frame_size),
            "direct": lambda: run_job(manifest, os.path.join(tmp, "direct"), args.num_frames,
                                      args.frame_size, ["--direct_running_mode=in_memory",
                                                        "--direct_num_workers=1"]),
            "multiproc": lambda: run_job(manifest, os.path.join(tmp, "multiproc"), args.num_frames,
                                         args.frame_size, ["--direct_running_mode=multi_processing",
                                                           "--direct_num_workers=2"]),
        }
        runs = {name: all_runs[name] for name in args.modes.split(",")}
        print(f"plays={args.plays}", f"source={args.source_frames}x{width}x{height}",
              f"num_frames={args.num_frames}", f"frame_size={args.frame_size}",
              f"cpus={os.cpu_count()}", f"loadavg_1min_before={os.getloadavg()[0]:.2f}", sep="\n")
        rates = {}
        for name, fn in runs.items():
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            written = fn()
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu_start
            if written != args.plays:
                raise SystemExit(f"{name}: wrote {written} of {args.plays} plays")
            rates[name] = args.plays / seconds
            print(f"{name}_seconds={seconds:.2f}", f"{name}_cpu_seconds={cpu:.2f}", sep="\n",
                  flush=True)
        for name in runs:
            print(f"{name}_plays_per_s={rates[name]:.2f}")
        for name in ("direct", "multiproc"):
            if name in rates and "loop" in rates:
                print(f"speedup_{name}_vs_loop={rates[name] / rates['loop']:.2f}")
        print(f"loadavg_1min_after={os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
