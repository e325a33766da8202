"""Benchmark: the training input pipeline against its ceiling and the usual alternatives.

On the same synthetic plays (224x224, 40 frames) written to a temp dir:
  pipeline    trainer.data.reader.make_dataset (training) from the TFRecord shards
              (interleave, shuffle, parse, frame choice, decode, augment, batch);
              it decodes only the window of each frame that the crop keeps
  ceiling     the same JPEG strings already in memory: from_tensor_slices ->
              parallel decode (the same trainer.data.clips.decode_frames) -> batch;
              no file I/O, no parsing, no frame choice, no augmentation
  read_file   one JPEG file per frame on disk, tf.io.read_file + the same decode
  generator   Python generator decoding 1280x720 mp4 files with PyAV and
              resizing to 224 in Python, into Dataset.from_generator (as in the
              TensorFlow video-classification tutorial)
  ceiling_frames  (extra) every frame its own tf.data element, decoded in
              parallel, then grouped into clips (the pipeline's earlier design)
Every variant is warmed up, then timed over the same number of clips; the
tf.data variants alternate for --rounds rounds and report their best round
(clips/s) and their lowest CPU time per clip (all threads of the process: on
a shared machine it moves less than clips/s does). ratio_to_ceiling compares
clips/s, ratio_to_ceiling_cpu compares CPU time.

Usage: python benchmarks/input_pipeline.py [--num_clips 320] [--rounds 5] [--keep_dir DIR]
Prints key=value lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Iterator, List, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import av  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from schemas import play_record  # noqa: E402
from demo_data import synthetic_records as record_fixtures  # noqa: E402
from trainer.data import clips, parsers, reader, sources  # noqa: E402

AUTOTUNE = tf.data.AUTOTUNE
LABELS = tuple(f"play_{i}" for i in range(11))


def measure(ds: tf.data.Dataset, num_clips: int, warmup_batches: int) -> Tuple[float, float]:
    """(clips/s, CPU ms per clip) of a dataset of (clips [B, ...], labels) after a warm-up.

    CPU time is the whole process's (every tf.data thread): on a shared,
    noisy machine it moves less than wall-clock throughput.
    """
    it = iter(ds)
    for _ in range(warmup_batches):
        next(it)
    seen = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while seen < num_clips:
        batch, _ = next(it)
        seen += int(batch.shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return seen / wall, 1000.0 * cpu / seen


def read_plays(files: Sequence[str]) -> List[play_record.PlayRecord]:
    plays = []
    for path in files:
        for serialized in tf.data.TFRecordDataset(path):
            plays.append(play_record.decode_play(serialized.numpy()))
    return plays


def write_frame_files(plays: Sequence[play_record.PlayRecord], root: str) -> np.ndarray:
    """One JPEG file per frame; returns the paths as [num_plays, T]."""
    paths = []
    for play in plays:
        folder = os.path.join(root, play.play_id)
        os.makedirs(folder, exist_ok=True)
        row = []
        for t, jpeg in enumerate(play.frames):
            path = os.path.join(folder, f"{t:03d}.jpg")
            with open(path, "wb") as f:
                f.write(jpeg)
            row.append(path)
        paths.append(row)
    return np.array(paths)


def write_videos(root: str, num_videos: int, num_frames: int) -> List[str]:
    """Broadcast-resolution (1280x720, 25 fps, H.264) mp4 files of synthetic plays."""
    os.makedirs(root, exist_ok=True)
    paths = []
    for v in range(num_videos):
        path = os.path.join(root, f"play_{v}.mp4")
        frames = record_fixtures.play_frames(v % len(LABELS), len(LABELS), num_frames, 720, 1280,
                                             "square", play_seed=v, noise=6.0)
        with av.open(path, "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "23"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        paths.append(path)
    return paths


def video_clips(paths: Sequence[str], size: int) -> Iterator:
    """The tutorial-style generator: decode with PyAV, resize in Python."""
    i = 0
    while True:
        with av.open(paths[i % len(paths)]) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # give the baseline PyAV's frame threads
            frames = [np.asarray(frame.to_image().resize((size, size), Image.BILINEAR))
                      for frame in container.decode(stream)]
        yield np.stack(frames), np.int32(i % len(LABELS))
        i += 1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_plays", type=int, default=48)
    parser.add_argument("--num_frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_clips", type=int, default=320, help="clips timed per variant and round")
    parser.add_argument("--warmup_batches", type=int, default=8)
    parser.add_argument("--num_videos", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="alternating pipeline/ceiling rounds")
    parser.add_argument("--keep_dir", default="", help="write here and keep it (default: temp dir)")
    args = parser.parse_args(argv)

    root = args.keep_dir or tempfile.mkdtemp(prefix="playclips_bench_")
    try:
        t0 = time.perf_counter()
        card = record_fixtures.write_dataset(
            os.path.join(root, "records"), num_plays=args.num_plays, num_frames=args.num_frames,
            size=args.size, labels=LABELS, num_shards=args.num_shards, noise=6.0, jpeg_quality=90)
        files = sources.split_files(os.path.join(root, "records"), "train", card)
        sources.check_files(files, card.compression)
        plays = read_plays(files)
        frame_paths = write_frame_files(plays, os.path.join(root, "frames"))
        videos = write_videos(os.path.join(root, "videos"), args.num_videos, args.num_frames)
        jpeg_bytes = np.mean([len(f) for p in plays for f in p.frames])
        print(f"setup_s={time.perf_counter() - t0:.1f}")
        print(f"plays={len(plays)} frames_per_clip={args.num_frames} size={args.size} "
              f"batch_size={args.batch_size} timed_clips={args.num_clips} "
              f"mean_jpeg_bytes={jpeg_bytes:.0f} cpus={os.cpu_count()}")

        size, batch = args.size, args.batch_size
        pipeline = reader.make_dataset(
            files, parsers.ClipParser(args.num_frames, (size, size)),
            reader.ReaderConfig(batch, seed=0, shuffle_buffer=64), training=True,
            compression=card.compression, repeat=True)

        jpegs = tf.constant([p.frames for p in plays])  # [N, T] strings
        ceiling = (tf.data.Dataset.from_tensor_slices((jpegs, tf.zeros(len(plays), tf.int32)))
                   .repeat()
                   .map(lambda j, l: (clips.decode_frames(j, size, size), l),
                        num_parallel_calls=AUTOTUNE, deterministic=False)
                   .batch(batch).prefetch(AUTOTUNE))

        # A stricter ceiling: every frame its own element, decoded in parallel.
        ceiling_frames = (tf.data.Dataset.from_tensor_slices(tf.reshape(jpegs, [-1]))
                          .repeat()
                          .map(lambda j: tf.ensure_shape(tf.io.decode_image(
                              j, channels=3, expand_animations=False), [size, size, 3]),
                               num_parallel_calls=AUTOTUNE, deterministic=True)
                          .batch(args.num_frames)
                          .map(lambda clip: (clip, tf.constant(0, tf.int32)))
                          .batch(batch).prefetch(AUTOTUNE))

        def read_clip(paths, label):
            contents = tf.map_fn(tf.io.read_file, paths, fn_output_signature=tf.string)
            return clips.decode_frames(contents, size, size), label

        read_file = (tf.data.Dataset.from_tensor_slices(
                         (frame_paths, tf.zeros(len(plays), tf.int32)))
                     .shuffle(len(plays), seed=0).repeat()
                     .map(read_clip, num_parallel_calls=AUTOTUNE, deterministic=False)
                     .batch(batch).prefetch(AUTOTUNE))

        generator = (tf.data.Dataset.from_generator(
                         lambda: video_clips(videos, size),
                         output_signature=(
                             tf.TensorSpec([args.num_frames, size, size, 3], tf.uint8),
                             tf.TensorSpec([], tf.int32)))
                     .batch(batch).prefetch(AUTOTUNE))

        # Other processes share the CPU: time the tf.data variants in alternating
        # rounds and keep each one's best round; the slow generator runs once.
        rates, cpu_ms = {}, {}
        for _ in range(args.rounds):
            for name, ds in (("ceiling", ceiling), ("pipeline", pipeline),
                             ("ceiling_frames", ceiling_frames), ("read_file", read_file)):
                rate, ms = measure(ds, args.num_clips, args.warmup_batches)
                rates[name] = max(rates.get(name, 0.0), rate)
                cpu_ms[name] = min(cpu_ms.get(name, float("inf")), ms)
                print(f"round {name}_clips_per_s={rate:.2f} {name}_cpu_ms_per_clip={ms:.2f}",
                      flush=True)
        rates["generator"], _ = measure(generator, min(args.num_clips, 48),
                                        args.warmup_batches // 4)
        for name in ("pipeline", "ceiling", "ceiling_frames", "read_file", "generator"):
            print(f"{name}_clips_per_s={rates[name]:.2f}")
        for name in ("pipeline", "ceiling"):
            print(f"{name}_cpu_ms_per_clip={cpu_ms[name]:.2f}")
        print(f"ratio_to_ceiling={rates['pipeline'] / rates['ceiling']:.3f}")
        print(f"ratio_to_ceiling_cpu={cpu_ms['ceiling'] / cpu_ms['pipeline']:.3f}")
        print(f"ratio_to_frame_ceiling={rates['pipeline'] / rates['ceiling_frames']:.3f}")
        print(f"speedup_vs_generator={rates['pipeline'] / rates['generator']:.2f}")
        print(f"speedup_vs_read_file={rates['pipeline'] / rates['read_file']:.2f}")
        print(f"pipeline_frames_per_s={rates['pipeline'] * args.num_frames:.0f}")
    finally:
        if not args.keep_dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
