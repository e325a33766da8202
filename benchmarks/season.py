"""The find-plays job against the timeline run game after game, and the timeline's memory by game length.

    python benchmarks/season.py [--model=JOB_DIR] [--games=8] [--workers=2] [--chunk_seconds=20]
        [--short_plays=27] [--long_plays=800] [--seed_seconds=8] [--min_confidence=0]
        [--work_dir=DIR]

1. `--games` demo game videos (`demo_data.games.write_demo_games`, seed 7, 10
   plays each, about 50 s) through `beam_jobs/find_plays.py` on the
   DirectRunner with `--workers` worker processes (multi_processing), against
   the same games through `python -m trainer.timeline` one after the other (a
   process per game, as a user would loop): `speedup_vs_timeline_loop` =
   loop wall seconds / job wall seconds (both include starting Python and loading
   the model). `plays_equal` checks that the two found the same plays.
2. Peak RSS of `python -m trainer.timeline` on a short and a long demo game
   (`--short_plays` and `--long_plays` plays), each in its own child process
   (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` of a wrapper that runs
   only it): `rss_ratio_game_length` = long / short (the timeline holds one
   window of features, so it should stay near 1). The defaults make a game of
   about 2 minutes and one of about 60 (64 px, h264).
3. The timeline at the seed's settings (`benchmarks/timeline.py`'s seed model:
   224 px, VGG16 to block5_pool, 40 of 40 frames at 25 frames/s, LSTM 256,
   random weights) on a `--seed_seconds` 720p video, in float32 and in bfloat16
   (the float32 export rebuilt, `--compute_dtype`), one after the other in this
   process: `real_time_factor_seed_float32`, `real_time_factor_seed_bfloat16`
   and their ratio, with the CPU's bf16/AMX flags (real time needs >= 1.0).

Without `--model` a random model at the demo's settings is exported (32 px,
VGG16 to block2_pool, 8 of 40 frames at 25 frames/s, GRU 64, the demo labels
without no_play): speed does not depend on what the weights learned.
Prints key=value lines.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from backbone import precision  # noqa: E402
from demo_data import games as demo_games  # noqa: E402
from demo_data import plays as demo_plays  # noqa: E402

PY = sys.executable
RSS_WRAPPER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
               "stdout=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def random_demo_model(path: str) -> str:
    """A random model at the demo's settings, exported as the trainer exports."""
    import keras  # pylint: disable=g-import-not-at-top
    from schemas.sampling import FrameSampling  # pylint: disable=g-import-not-at-top
    from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
    from trainer.serving import export  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(0)
    labels = sorted(demo_plays.DEMO_LABELS)  # no no_play: a random model names one label everywhere
    model = model_lib.build_model(len(labels), image_size=(32, 32), num_frames=8,
                                  cut_layer="block2_pool", weights="none", rnn="gru",
                                  rnn_units=64)
    export.export_model(model, path, labels=labels, image_size=32, num_frames=8,
                        sampling=FrameSampling(num_frames=40, frame_rate=25.0))
    return path


def timeline_command(model: str, video: str, out: str, min_confidence: float = 0.5):
    return [PY, "-m", "trainer.timeline", f"--model={model}", video, f"--output_dir={out}",
            "--compute_dtype=float32", f"--min_confidence={min_confidence}"]


def plays_of(path: str):
    with open(path) as f:
        return sorted((r["game_id"], r["label"], r["start"], r["end"]) for r in csv.DictReader(f))


def season_lines(args, work: str, model: str):
    games = os.path.join(work, "games")
    demo_games.write_demo_games(games, args.games, seed=7, size=64)
    videos = sorted(glob.glob(os.path.join(games, "*.mp4")))
    began = time.perf_counter()
    loop_plays = []
    for video in videos:
        out = os.path.join(work, "loop", os.path.basename(video)[:-4])
        subprocess.run(timeline_command(model, video, out, args.min_confidence), cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        loop_plays += plays_of(os.path.join(out, "plays.csv"))
    loop_s = time.perf_counter() - began
    out = os.path.join(work, "season")
    began = time.perf_counter()
    subprocess.run([PY, "beam_jobs/find_plays.py", f"--model={model}", f"--input={games}",
                    f"--output_dir={out}", "--overwrite", f"--chunk_seconds={args.chunk_seconds}",
                    "--compute_dtype=float32", f"--min_confidence={args.min_confidence}",
                    "--runner=DirectRunner",
                    f"--direct_num_workers={args.workers}",
                    "--direct_running_mode=multi_processing"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    job_s = time.perf_counter() - began
    with open(os.path.join(out, "find_plays.json")) as f:
        card = json.load(f)
    job_plays = sorted(p for shard in glob.glob(os.path.join(out, "plays-*.csv"))
                       for p in plays_of(shard))
    seconds = sum(float(json.load(open(path))["duration"])
                  for path in glob.glob(os.path.join(out, "*", "timeline.json")))
    print(f"games={len(videos)} video_seconds={seconds:.1f} chunks={card['num_chunks']} "
          f"windows={card['num_windows']} plays={card['num_plays']}")
    print(f"timeline_loop_s={loop_s:.1f}")
    print(f"find_plays_s={job_s:.1f} workers={args.workers} chunk_seconds={args.chunk_seconds}")
    print(f"speedup_vs_timeline_loop={loop_s / job_s:.2f}")
    print(f"plays_equal={sorted(loop_plays) == job_plays}")


def peak_rss_kb(model: str, video: str, out: str) -> int:
    done = subprocess.run([PY, "-c", RSS_WRAPPER, *timeline_command(model, video, out)],
                          cwd=ROOT, check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1])


def rss_lines(args, work: str, model: str):
    rss = {}
    for name, plays in (("short", args.short_plays), ("long", args.long_plays)):
        video = os.path.join(work, f"{name}.mp4")
        table = demo_games.write_game_video(video, seed=7, game=0, plays_per_game=plays, size=64)
        rss[name] = peak_rss_kb(model, video, os.path.join(work, f"{name}_timeline"))
        print(f"{name}_game_seconds={table[-1].end:.1f} {name}_peak_rss_mb={rss[name] / 1024:.0f}")
    print(f"rss_ratio_game_length={rss['long'] / rss['short']:.3f}")


def seed_lines(args, work: str):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import timeline as timeline_bench  # pylint: disable=g-import-not-at-top
    from trainer.serving import timeline  # pylint: disable=g-import-not-at-top
    from trainer.serving.timeline_model import TimelineModel  # pylint: disable=g-import-not-at-top
    flags = sorted(precision.cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_int8", "avx2",
                                             "avx512f"})
    print(f"cpu_flags={','.join(flags) or 'none'}")
    job = timeline_bench.seed_model(work)
    video, warmup = timeline_bench.seed_videos(work, args.seed_seconds)
    factors = {}
    for dtype in ("float32", "bfloat16"):
        model = TimelineModel(job, dtype)
        timeline.compute_timeline(model, warmup)  # tracing
        stats = timeline.TimelineStats()
        timeline.compute_timeline(model, video, stats=stats)
        factors[dtype] = stats.real_time_factor
        print(f"real_time_factor_seed_{dtype}={stats.real_time_factor:.3f} "
              f"frames_per_s_seed_{dtype}={stats.frames_per_s:.2f}", flush=True)
    print(f"seed_bf16_speedup={factors['bfloat16'] / factors['float32']:.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="", help="a JOB_DIR (default: a random demo model)")
    parser.add_argument("--games", type=int, default=8,
                        help="demo games of part 1 (the job pays its start once, the loop per "
                             "game: the speedup grows with the games)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk_seconds", type=float, default=20.0)
    parser.add_argument("--short_plays", type=int, default=27,
                        help="plays of the short game (27: about 2 minutes)")
    parser.add_argument("--long_plays", type=int, default=800,
                        help="plays of the long game (800: about 60 minutes; 0: skip the "
                             "memory part)")
    parser.add_argument("--seed_seconds", type=float, default=8.0,
                        help="the 720p video at the seed's settings (0: skip)")
    parser.add_argument("--min_confidence", type=float, default=0.0,
                        help="both commands' (default 0: a random model is never sure, and "
                             "plays_equal should compare some plays)")
    parser.add_argument("--work_dir", default="")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="season-")
    model = args.model or random_demo_model(os.path.join(work, "job"))
    print(f"cpus={os.cpu_count()} load_average={os.getloadavg()[0]:.1f}")
    season_lines(args, work, model)
    if args.long_plays > 0:
        rss_lines(args, work, model)
    if args.seed_seconds > 0:
        seed_lines(args, work)


if __name__ == "__main__":
    main()
