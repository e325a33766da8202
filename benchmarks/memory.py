"""Peak RSS of the records job and the embed job at two data sizes (does memory grow with the data?).

Each job runs as its own process (`python beam_jobs/...py`, the DirectRunner in
memory) on the demo plays; its peak RSS comes from the kernel (`os.wait4`).
The ratio of the large run's peak to the small one's is the figure to watch:
1.0 means memory flat in the number of plays.

    python benchmarks/memory.py [--small 200] [--large 2000] [--frame_size 64] [--root REPO]

`--root` runs another checkout's jobs (a before/after comparison). Prints
key=value lines: rss_records_<n> and rss_embed_<n> (MB), rss_ratio_records,
rss_ratio_embed, and the output sizes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd: str) -> float:
    """Peak RSS (MB) of one job process, measured with wait4 on its pid."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{args[0]} failed:\n{err.read().decode()[-3000:]}")
    return usage.ru_maxrss / 1024


def _size_mb(folder: str) -> float:
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)
               if n.endswith(".tfrecord")) / 2 ** 20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--frame_size", type=int, default=64, help="records job output size")
    parser.add_argument("--embed_frame_size", type=int, default=32,
                        help="frame size of the records the embed job reads (the records job "
                             "runs once more when it differs from --frame_size)")
    parser.add_argument("--root", default=ROOT, help="the checkout whose jobs run")
    args = parser.parse_args(argv)
    records_job = os.path.join(args.root, "beam_jobs", "make_records.py")
    embed_job = os.path.join(args.root, "beam_jobs", "embed_records.py")
    tmp = tempfile.mkdtemp(prefix="memory_")
    rss = {}
    try:
        for n in (args.small, args.large):
            for job, size in (("records", args.frame_size), ("embed", args.embed_frame_size)):
                records = os.path.join(tmp, f"records_{n}_{size}")
                if not os.path.exists(records):
                    start = time.perf_counter()
                    peak = _run([records_job, "--runner=DirectRunner", f"--output_dir={records}",
                                 f"--demo_plays={n}", f"--frame_size={size}"], tmp)
                    if job == "records":
                        rss[("records", n)] = peak
                        print(f"records_{n}_seconds={time.perf_counter() - start:.1f}")
                        print(f"records_{n}_output_mb={_size_mb(records):.1f}")
                if job == "embed":
                    features = os.path.join(tmp, f"features_{n}")
                    start = time.perf_counter()
                    rss[("embed", n)] = _run(
                        [embed_job, "--runner=DirectRunner", f"--records_dir={records}",
                         f"--output_dir={features}", "--weights=none",
                         "--cut_layer=block1_pool"], tmp)
                    print(f"embed_{n}_seconds={time.perf_counter() - start:.1f}")
                    print(f"embed_{n}_input_mb={_size_mb(records):.1f}")
                    print(f"embed_{n}_output_mb={_size_mb(features):.1f}")
        for job in ("records", "embed"):
            for n in (args.small, args.large):
                print(f"rss_{job}_{n}={rss[(job, n)]:.0f}")
        for job in ("records", "embed"):
            print(f"rss_ratio_{job}={rss[(job, args.large)] / rss[(job, args.small)]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
