"""The game timeline (`trainer.timeline`): how well it finds the plays, and how fast it runs.

    python benchmarks/timeline.py [--model=JOB_DIR] [--games=10] [--profile=default|hard]
        [--no_baseline] [--seed_seconds=8] [--work_dir=DIR]

1. The timeline as a detector, on demo game videos made with `--game_seed` (7)
   whose plays no model saw (they train on demo seed 0). The detector is trained
   as a user would: the records job cuts the 330 plays of 33 demo game videos and
   as many `no_play` clips from their dead-ball time (`--no_play_clips=1x`), the
   embed job caches the features and the head trains from them with the demo's
   settings. Each test game runs through the timeline at the default hop (0.5 s);
   its detected plays are scored as `trainer.timeline --plays` scores them
   (`trainer.evaluation.detection`: ActivityNet's mAP at tIoU, precision, recall
   and F1 at tIoU 0.5, 95% bootstrap intervals over games) with
   `play_majority_accuracy` (the share of true plays whose most overlapping
   segment has the right label; n plays, 95% Wilson interval) and
   `detections_inside_long_dead_ball` (detected plays lying wholly inside a
   dead-ball span longer than a window: false plays a coach would get). The
   baseline, `baseline_*`, is `make demo`'s model (plays only, no no_play class)
   on the same games, and `*_vs_baseline` the ratios.
2. Speed: `real_time_factor` (video seconds per wall second) of those runs, and
   `speedup_vs_per_window`: the timeline (the base once per used frame, the head
   per window) against the full model run on each window's frames, on the same
   decode at the same hop. The gain is bounded by how many of its frames a
   window shares with the next ones: at the demo's settings (8 of 40 frames per
   1.6 s window) a window needs 8 base frames alone and about 5 shared, at the
   seed's (40 of 40) 40 against 12.5 per 0.5 s hop. `speedup_vs_predict_loop` is
   against today's tool, `trainer.predict --start --end` once per window (each call
   cuts its window from the video), timed on a sample of the windows. The demo's
   speed lines are repeated at `--more_hops` (0.4 s and 0.2 s: multiples of the
   demo model's frame stride, 5 frames = 0.2 s, so that windows share all the
   frames they use; at 0.2 s each window needs one new frame against 8).
3. The seed's settings (224 px, VGG16 to block5_pool, random-init weights, 40
   of 40 frames at 25 frames/s, an LSTM 256 head), on a `--seed_seconds` 720p h264
   video: real_time_factor and speedup_vs_per_window again.

Prints key=value lines.
"""

from __future__ import annotations

import argparse
import csv
import glob
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from game_video import write_video  # noqa: E402  (benchmarks/game_video.py)
from backbone import precision  # noqa: E402
from beam_jobs import no_play  # noqa: E402  (free_spans: the dead-ball spans)
from demo_data import games as demo_games  # noqa: E402
from demo_data import plays as demo_plays  # noqa: E402
from schemas.sampling import FrameSampling  # noqa: E402
from trainer.evaluation import detection  # noqa: E402
from trainer.serving import timeline, timeline_outputs  # noqa: E402
from trainer.serving.timeline_model import TimelineModel  # noqa: E402

DEMO_RECORD_FLAGS = ["--frame_size=32", "--demo_plays=330"]
# The detector: the same 330 plays cut from 33 demo game videos, with background clips of
# no_play (one per play: three quarters from dead-ball time, a quarter hard negatives).
DETECTOR_RECORD_FLAGS = ["--frame_size=32", "--demo_game_videos=33"]
DEMO_EMBED_FLAGS = ["--weights=none", "--cut_layer=block2_pool"]
DEMO_TRAIN_FLAGS = ["--num_frames=8", "--trainable_from=none", "--rnn=gru", "--rnn_units=64",
                    "--epochs=60", "--batch_size=8", "--learning_rate=3e-3"]


def wilson(successes: int, n: int, z: float = 1.96):
    """The 95% Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def train_demo_model(work: str, record_flags=DEMO_RECORD_FLAGS, profile: str = "default",
                     train_flags=()) -> str:
    """A demo model as `make demo` makes it (records, embed, head from the cache)."""
    py = sys.executable
    records, features, job = (os.path.join(work, name) for name in ("records", "features", "job"))
    steps = [
        [py, "beam_jobs/make_records.py", "--runner=DirectRunner", f"--output_dir={records}",
         "--overwrite", f"--demo_profile={profile}", *record_flags],
        [py, "beam_jobs/embed_records.py", "--runner=DirectRunner", f"--records_dir={records}",
         f"--output_dir={features}", "--overwrite", *DEMO_EMBED_FLAGS],
        [py, "-m", "trainer.task", f"--features_dir={features}", f"--job_dir={job}",
         *DEMO_TRAIN_FLAGS, *train_flags],
    ]
    for step in steps:
        subprocess.run(step, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return job


def train_split_rows(manifest: str):
    """(header, all rows, the rows of the games the records job puts in the train split)."""
    from beam_jobs import splits as splits_lib  # pylint: disable=g-import-not-at-top
    splits = splits_lib.parse_splits(splits_lib.DEFAULT_SPLITS)
    with open(manifest, newline="") as f:
        table = list(csv.reader(f))
    header, rows = table[0], table[1:]
    game = header.index("game_id")
    return header, rows, [r for r in rows if splits_lib.assign_split(r[game], splits) == "train"]


def mine_false_plays(job: str, manifest: str, work: str, round_name: str,
                     find_flags: Sequence[str] = ()):
    """The detector's false plays on its own training games (train split only): the find-plays
    job over them with their true plays, its false_plays-*.csv rows (play ids made unique per
    round)."""
    header, _, train = train_split_rows(manifest)
    folder = os.path.dirname(manifest)
    train_manifest = os.path.join(folder, f"train_games_{round_name}.csv")
    with open(train_manifest, "w", newline="") as f:
        csv.writer(f).writerows([header] + train)
    out = os.path.join(work, f"mined_{round_name}")
    subprocess.run([sys.executable, "beam_jobs/find_plays.py", f"--model={job}",
                    f"--input={train_manifest}", f"--output_dir={out}", "--overwrite",
                    "--runner=DirectRunner", "--direct_num_workers=2",
                    "--direct_running_mode=multi_processing", *find_flags],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    rows = []
    for shard in sorted(glob.glob(os.path.join(out, "false_plays-*-of-*.csv"))):
        with open(shard, newline="") as f:
            rows += [r[:len(header)] for r in list(csv.reader(f))[1:]]
    games = len({r[header.index("game_id")] for r in train})
    return [[f"{round_name}-{r[0]}"] + r[1:] for r in rows], games


def train_mined_detector(args, work: str, first_job: str) -> str:
    """Hard-negative mining, `--mine_rounds` times: the detector's false plays on its training
    games go back into the records job as no_play rows of the manifest, and the detector is
    trained again from the records, as a user would (docs/timeline.md)."""
    manifest = os.path.join(work, "detector", "records", "demo_games", "plays.csv")
    header, rows, _ = train_split_rows(manifest)
    job, mined = first_job, []
    for k in range(1, args.mine_rounds + 1):
        found, games = mine_false_plays(job, manifest, work, f"round{k}",
                                        args.mine_flags.split())
        mined += found
        print(f"mined_false_plays_round{k}={len(found)} train_games={games}", flush=True)
        with_mined = os.path.join(os.path.dirname(manifest), f"with_mined_round{k}.csv")
        with open(with_mined, "w", newline="") as f:
            csv.writer(f).writerows([header] + rows + mined)
        job = train_demo_model(
            os.path.join(work, f"detector_mined_round{k}"),
            ["--frame_size=32", f"--input={with_mined}",
             f"--frame_rate={demo_plays.DEMO_FRAME_RATE}", *detector_clip_flags(args)],
            args.profile, args.train_flags.split())
    return job


def detector_clip_flags(args):
    """The records job's flags for the detector's extra clips."""
    return [f"--no_play_clips={args.no_play_clips}", f"--shifted_plays={args.shifted_plays}"]


def timed(model, video, mode, hop):
    stats = timeline.TimelineStats()
    result = timeline.compute_timeline(model, video, hop_seconds=hop, mode=mode, stats=stats)
    return result, stats


def predict_loop_seconds(model_dir: str, result, sample: int) -> float:
    """Seconds per window of today's tool: `trainer.predict` on each window's --start/--end.

    Each call cuts the window from the video (`media.video_clips`: open, seek, decode)
    and runs the SavedModel; measured on `sample` windows spread over the video.
    """
    from trainer.serving.predictor import Predictor  # pylint: disable=g-import-not-at-top
    predictor = Predictor(model_dir)
    windows = result["windows"]
    chosen = windows[::max(1, len(windows) // sample)][:sample]
    predictor.classify(result["video"], start=chosen[0]["start"], end=chosen[0]["end"])  # warm-up
    began = time.perf_counter()
    for window in chosen:
        predictor.classify(result["video"], start=window["start"], end=window["end"])
    return (time.perf_counter() - began) / len(chosen)


def speed_lines(prefix: str, model, video: str, hop: float, sample: int = 12,
                warmup_video: str = ""):
    """real_time_factor, frames_per_s and the speedups of one video at one hop."""
    for mode in ("cached", "per_window"):  # warm-up: tracing
        timed(model, warmup_video or video, mode, hop)
    cached, cached_stats = timed(model, video, "cached", hop)
    _, naive_stats = timed(model, video, "per_window", hop)
    windows = cached_stats.windows
    loop_s = predict_loop_seconds(os.path.dirname(model.model_path), cached, sample) * windows
    return [
        f"{prefix}video_seconds={cached_stats.duration:.1f}",
        f"{prefix}windows={windows}",
        f"{prefix}real_time_factor={cached_stats.real_time_factor:.2f}",
        f"{prefix}frames_per_s={cached_stats.frames_per_s:.1f}",
        f"{prefix}per_window_real_time_factor={naive_stats.real_time_factor:.2f}",
        f"{prefix}base_frames_per_window={cached_stats.frames_embedded / windows:.2f}",
        f"{prefix}per_window_base_frames_per_window={naive_stats.frames_embedded / windows:.2f}",
        f"{prefix}speedup_vs_per_window="
        f"{naive_stats.wall_seconds / cached_stats.wall_seconds:.2f}",
        f"{prefix}predict_loop_real_time_factor={cached_stats.duration / loop_s:.2f}",
        f"{prefix}speedup_vs_predict_loop={loop_s / cached_stats.wall_seconds:.2f}",
    ]


def score_games(model, games: str, manifest: str, args):
    """The timeline of each test game, scored as `trainer.timeline --plays` scores it."""
    correct = n = inside_dead_ball = 0
    duration = wall = 0.0
    truth, found = [], []
    for game in range(args.games):
        video = os.path.join(games, f"demo-game-{game:04d}.mp4")
        result, stats = timed(model, video, "cached", args.hop_seconds)
        plays = timeline_outputs.read_plays(manifest, video)
        score = timeline_outputs.score_plays(result, plays)
        correct, n = correct + score["correct"], n + score["n"]
        duration, wall = duration + stats.duration, wall + stats.wall_seconds
        name = os.path.basename(video)
        truth += timeline_outputs.true_segments(plays, name)
        detected = timeline_outputs.detected_plays(result, name)
        found += detected
        long_spans = [(a, b) for a, b in no_play.free_spans(
                          stats.duration, [(p["start"], p["end"]) for p in plays])
                      if b - a > result["window_seconds"]]
        inside_dead_ball += sum(1 for d in detected for a, b in long_spans
                                if d.start >= a - 1e-6 and d.end <= b + 1e-6)
    report = detection.detection_report(truth, found)
    return correct, n, duration / wall, report, inside_dead_ball


def detection_lines(prefix: str, model, games: str, manifest: str, args):
    correct, n, real_time, report, inside = score_games(model, games, manifest, args)
    low, high = wilson(correct, n)
    lines = [f"{prefix}play_majority_accuracy={correct / n:.4f} n={n} wilson95_low={low:.3f} "
             f"wilson95_high={high:.3f}",
             f"{prefix}demo_real_time_factor_all_games={real_time:.2f}",
             f"{prefix}num_true_plays={report['num_true_plays']} "
             f"num_detections={report['num_detections']}",
             f"{prefix}detections_inside_long_dead_ball={inside}"]
    for key, (low, high) in report["intervals"].items():  # bootstrap over games
        lines.append(f"{prefix}{key}={report[key]:.4f} boot95_low={low:.3f} boot95_high={high:.3f}")
    return lines, report


def demo_part(args, work: str):
    """The detector (trained with no_play clips from demo games) against the clip-only model."""
    games = os.path.join(work, "games")
    manifest = demo_games.write_demo_games(games, args.games, args.game_seed,
                                           profile=args.profile)
    print(f"game_seed={args.game_seed} games={args.games} hop_seconds={args.hop_seconds} "
          f"profile={args.profile}", flush=True)
    model_dir = args.model
    if not model_dir:
        model_dir = train_demo_model(os.path.join(work, "detector"),
                                     DETECTOR_RECORD_FLAGS + detector_clip_flags(args),
                                     args.profile, args.train_flags.split())
        if args.mine_rounds:
            lines, _ = detection_lines("unmined_", TimelineModel(model_dir), games, manifest,
                                       args)
            print("\n".join(lines), flush=True)
            model_dir = train_mined_detector(args, work, model_dir)
    model = TimelineModel(model_dir)
    print(f"detector_model={model_dir} labels={len(model.labels)}", flush=True)
    lines, report = detection_lines("", model, games, manifest, args)
    print("\n".join(lines), flush=True)
    if args.baseline:
        baseline_dir = args.baseline_model or train_demo_model(
            os.path.join(work, "baseline"), DEMO_RECORD_FLAGS, args.profile)
        baseline = TimelineModel(baseline_dir)
        print(f"baseline_model={baseline_dir} (plays only, no no_play class)", flush=True)
        base_lines, base = detection_lines("baseline_", baseline, games, manifest, args)
        print("\n".join(base_lines), flush=True)
        for key in ("map_tiou_0_5", "f1_tiou_0_5"):
            ratio = report[key] / base[key] if base[key] > 0 else math.inf
            print(f"{key}_vs_baseline={ratio:.2f}")
    for hop in [args.hop_seconds] + [float(h) for h in args.more_hops.split(",") if h]:
        prefix = "demo_" if hop == args.hop_seconds else f"demo_hop{hop:g}_"
        for line in speed_lines(prefix, model, os.path.join(games, "demo-game-0000.mp4"), hop):
            print(line, flush=True)


def seed_model(work: str) -> str:
    """A model of the seed's shape (224 px, VGG16 to block5_pool, 40 of 40 frames at 25 frames/s,
    LSTM 256, random weights: speed does not depend on what they learned), exported."""
    import keras  # pylint: disable=g-import-not-at-top
    from trainer.serving import export  # pylint: disable=g-import-not-at-top
    from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(0)
    labels = demo_plays.DEMO_LABELS
    model = model_lib.build_model(len(labels), image_size=(224, 224), num_frames=40,
                                  cut_layer="block5_pool", weights="none", rnn="lstm",
                                  rnn_units=256)
    job = os.path.join(work, "seed_job")
    export.export_model(model, job, labels=labels, image_size=224, num_frames=40,
                        sampling=FrameSampling(num_frames=40, frame_rate=25.0))
    return job


def seed_videos(work: str, seconds: float):
    """A 720p h264 video of `seconds` and a 2 s one to warm up on."""
    video = os.path.join(work, "seed_720p.mp4")
    write_video(video, seconds / 60, 1280, 720, "veryfast")
    warmup = os.path.join(work, "warmup_720p.mp4")
    write_video(warmup, 2.0 / 60, 1280, 720, "veryfast")
    return video, warmup


def seed_part(args, work: str):
    job = seed_model(work)
    video, warmup = seed_videos(work, args.seed_seconds)
    tl_model = TimelineModel(job)
    print("seed_settings=224px_block5_pool_40of40_frames_25fps_lstm256_720p_h264")
    for line in speed_lines("seed_", tl_model, video, args.hop_seconds, sample=2,
                            warmup_video=warmup):
        print(line, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None,
                        help="the detector's JOB_DIR (default: train one on demo games with "
                             "no_play clips)")
    parser.add_argument("--baseline_model", default=None,
                        help="the baseline's JOB_DIR (default: train `make demo`'s model)")
    parser.add_argument("--no_baseline", dest="baseline", action="store_false",
                        help="skip the baseline (the plays-only model)")
    parser.add_argument("--profile", default="default", choices=("default", "hard"),
                        help="demo profile of the training and test games")
    parser.add_argument("--no_play_clips", default="1x",
                        help="the detector's background clips (the records job's flag)")
    parser.add_argument("--shifted_plays", type=int, default=2,
                        help="the detector's shifted copies of each training play")
    parser.add_argument("--mine_rounds", type=int, default=1,
                        help="rounds of hard-negative mining: the detector's false plays on its "
                             "training games become no_play rows and it trains again (0: none)")
    parser.add_argument("--mine_flags", default="--min_play_seconds=0 --min_confidence=0",
                        help="find-plays job flags for mining (space-separated; default: every "
                             "run of play windows counts, however short or unsure)")
    parser.add_argument("--train_flags", default="",
                        help="more trainer.task flags for the detector (space-separated)")
    parser.add_argument("--work_dir", default="",
                        help="keep the models, records and games here (default: a temporary "
                             "folder)")
    parser.add_argument("--games", type=int, default=10, help="demo game videos (10 plays each)")
    parser.add_argument("--game_seed", type=int, default=7,
                        help="demo seed of the games (the demo model trains on seed 0)")
    parser.add_argument("--hop_seconds", type=float, default=timeline.DEFAULT_HOP_SECONDS)
    parser.add_argument("--more_hops", default="0.4,0.2",
                        help="more hops (seconds, comma-separated) for the demo's speed lines")
    parser.add_argument("--seed_seconds", type=float, default=4.0,
                        help="length of the 720p video at the seed's settings (0: skip)")
    args = parser.parse_args(argv)
    print(f"cpu_model={precision.cpu_model()} cpus={os.cpu_count()} "
          f"loadavg_1min_before={os.getloadavg()[0]:.2f}", flush=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="timeline_bench_") as temp:
        work = args.work_dir or temp
        os.makedirs(work, exist_ok=True)
        demo_part(args, work)
        if args.seed_seconds > 0:
            seed_part(args, work)
    print(f"benchmark_wall_s={time.perf_counter() - began:.1f}")


if __name__ == "__main__":
    main()
