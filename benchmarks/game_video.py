"""Plays cut from one long game video: the grouped decode against decoding from the start per play.

One synthetic h264 video (solid colours and a moving box, a keyframe every 2 s)
and N plays at random times over it, each sampled to 40 frames at 224 px, two ways:
  grouped  media.video_clips.cut_clips on all plays: one open, one forward decode,
           seeking over gaps (what the records job's CutGameVideos does per video)
  naive    one cut_clips call per play with seek_gap=None: opens the video and
           decodes it from the start up to the end of the play
Both produce the same frames (checked on the plays the naive run cuts). Prints
key=value lines, with speedup_grouped_vs_naive = grouped plays/s / naive plays/s.
`--naive_plays` cuts only every k-th play the naive way (spread evenly over the
video, so their mean position is the whole set's) to keep the run short.

    python benchmarks/game_video.py [--plays 100] [--minutes 10] [--size 1280x720]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # pylint: disable=wrong-import-position

from demo_data import games as demo_games  # pylint: disable=wrong-import-position
from media import video_clips  # pylint: disable=wrong-import-position
from schemas.sampling import FrameSampling  # pylint: disable=wrong-import-position

FPS = 25
GOP = 50  # a keyframe every 2 s


def _yuv_frames(num_frames: int, width: int, height: int):
    """yuv420p frames [H*3/2, W]: a slowly changing background and a moving box, cheap to make."""
    frame = np.empty((height * 3 // 2, width), np.uint8)
    box = max(8, height // 9)
    for t in range(num_frames):
        frame[:height] = 60 + (t // (10 * FPS)) % 8 * 15  # a new "scene" every 10 s
        frame[height:] = 128
        x = (t * 7) % (width - box)
        y = (t * 3) % (height - box)
        frame[y:y + box, x:x + box] = 235
        yield frame


def write_video(path: str, minutes: float, width: int, height: int, preset: str) -> int:
    num_frames = int(minutes * 60 * FPS)
    demo_games.write_h264(path, _yuv_frames(num_frames, width, height), fps=FPS, gop=GOP, crf=28,
                          preset=preset, pixel_format="yuv420p")
    return num_frames


def make_plays(num_plays: int, seconds: float, seed: int = 0):
    """Plays of 3-6 s at random times over the video, like a play-by-play table."""
    rng = random.Random(seed)
    clips = []
    for i in range(num_plays):
        length = rng.uniform(3.0, 6.0)
        start = round(rng.uniform(0.0, seconds - length - 0.1), 2)
        clips.append(video_clips.Clip(f"play{i:04d}", start, round(start + length, 2)))
    return sorted(clips, key=lambda c: c.start)


def run_grouped(path, clips, num_frames, frame_size):
    stats = video_clips.CutStats()
    start = time.perf_counter()
    results = dict(video_clips.cut_clips(
        path, clips, FrameSampling.of(num_frames, frame_size), stats=stats))
    return time.perf_counter() - start, results, stats


def run_naive(path, clips, num_frames, frame_size):
    stats = video_clips.CutStats()
    start = time.perf_counter()
    results = {}
    for clip in clips:
        results.update(video_clips.cut_clips(path, [clip], FrameSampling.of(num_frames, frame_size),
                                             seek_gap=None, stats=stats))
    return time.perf_counter() - start, results, stats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plays", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the game video")
    parser.add_argument("--size", default="1280x720", help="WxH of the video")
    parser.add_argument("--preset", default="veryfast", help="libx264 preset of the video")
    parser.add_argument("--naive_plays", type=int, default=25,
                        help="plays cut the naive way, evenly spread (0: all)")
    parser.add_argument("--num_frames", type=int, default=40)
    parser.add_argument("--frame_size", type=int, default=224)
    parser.add_argument("--video", default="", help="reuse this video instead of writing one")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    tmp = tempfile.mkdtemp(prefix="game_video_bench_")
    try:
        path = args.video or os.path.join(tmp, "game.mp4")
        start = time.perf_counter()
        if not args.video:
            write_video(path, args.minutes, width, height, args.preset)
        generate = time.perf_counter() - start
        clips = make_plays(args.plays, args.minutes * 60)
        step = max(1, len(clips) // args.naive_plays) if args.naive_plays else 1
        naive_clips = clips[step // 2::step][:args.naive_plays or None]
        print(f"video={width}x{height}", f"video_minutes={args.minutes}", f"fps={FPS}",
              f"gop={GOP}", f"preset={args.preset}",
              f"video_mb={os.path.getsize(path) / 1e6:.1f}", f"generate_seconds={generate:.1f}",
              f"plays={len(clips)}", f"naive_plays={len(naive_clips)}",
              f"num_frames={args.num_frames}", f"frame_size={args.frame_size}",
              f"cpus={os.cpu_count()}", f"loadavg_1min_before={os.getloadavg()[0]:.2f}",
              sep="\n", flush=True)
        grouped_s, grouped, g_stats = run_grouped(path, clips, args.num_frames, args.frame_size)
        naive_s, naive, n_stats = run_naive(path, naive_clips, args.num_frames, args.frame_size)
        failed = [k for k, v in grouped.items() if isinstance(v, Exception)]
        if failed:
            raise SystemExit(f"grouped: {len(failed)} plays failed, e.g. {grouped[failed[0]]}")
        same = all(naive[c.clip_id].frames == grouped[c.clip_id].frames for c in naive_clips)
        grouped_rate = len(clips) / grouped_s
        naive_rate = len(naive_clips) / naive_s
        print(f"grouped_seconds={grouped_s:.2f}", f"grouped_plays_per_s={grouped_rate:.2f}",
              f"grouped_opens={g_stats.opens}", f"grouped_seeks={g_stats.seeks}",
              f"grouped_frames_decoded={g_stats.frames_decoded}",
              f"grouped_max_held_plays={g_stats.max_held_plays}",
              f"grouped_max_held_packets={g_stats.max_held_packets}",
              f"naive_seconds={naive_s:.2f}", f"naive_plays_per_s={naive_rate:.3f}",
              f"naive_opens={n_stats.opens}", f"naive_frames_decoded={n_stats.frames_decoded}",
              f"same_frames={same}",
              f"speedup_grouped_vs_naive={grouped_rate / naive_rate:.1f}", sep="\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
