"""Frozen base, streamed or cached: time per epoch, accuracy, and the embed job's one-off cost.

In one run, on the same play records and the same head (same flags and seed):

  stream  the trainer's frame path: every epoch decodes the clips' JPEGs and runs
          them through the frozen VGG16 base, then the head;
  cached  the embed job (`beam_jobs/embed_records.py`) runs the base once on every
          stored frame; the head trains from the cached features.

Both models are evaluated the same way, as the product does: the full model (the
embed job's saved base + the trained head) on the test split's JPEGs. Both train
with one compiled call per epoch (`--steps_per_execution`).

    python benchmarks/feature_cache.py --preset=demo     # the demo's settings (make demo)
    python benchmarks/feature_cache.py --preset=seed     # 224 px, block5_pool, 40 frames, few plays

Prints `key=value` lines: stream_epoch_s, cached_epoch_s, epoch_speedup, embed_s,
break_even_epochs, stream_accuracy, cached_accuracy, and embed_frames_per_s for the
DirectRunner with 1 and 2 worker processes (embed_frames_per_s_w1, _w2; the job's default
--compute_dtype=auto, `compute_dtype_auto` says what it resolved to).

The base's compute dtype, one worker process each (`--dtypes_only` runs just this part):
embed_fp32_frames_per_s, embed_bf16_frames_per_s, embed_bf16_speedup, bf16_feature_cosine
(mean and min over all frames of the stored features, bf16 vs float32), gflop_per_frame (VGG16's
convolutions up to the cut at the frame size, 2 x multiply-adds) and the achieved
embed_fp32_gflop_per_s, embed_bf16_gflop_per_s; and the base alone in this process, float32 and
bfloat16 calls alternated, the best of 5 each (base_fp32_frames_per_s, base_bf16_frames_per_s,
base_bf16_speedup, base_*_gflop_per_s): the ratio that holds on a shared machine.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from beam_jobs import embed_records, make_records  # noqa: E402
from backbone import precision  # noqa: E402
from trainer.training import compat  # noqa: E402
from trainer.evaluation import metrics, predictions  # noqa: E402
from trainer.data import reader  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.training import distribution  # noqa: E402
from trainer.training.play_task import PlayClassificationTask  # noqa: E402

PRESETS: Dict[str, Dict] = {
    # The demo's settings (Makefile DEMO_* flags).
    "demo": dict(plays=330, frame_size=32, cut_layer="block2_pool", num_frames=8, epochs=60,
                 rnn="gru", rnn_units=64, batch_size=8),
    # The seed's settings on a small subset: 224 px, the whole VGG16 base, 40 frames.
    "seed": dict(plays=22, frame_size=224, cut_layer="block5_pool", num_frames=40, epochs=2,
                 rnn="lstm", rnn_units=64, batch_size=4),
}


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: List[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _task(args, records: str, features: str, job_dir: str) -> PlayClassificationTask:
    config = TrainConfig.from_flags(dict(
        data_dir=records, features_dir=features, job_dir=job_dir, num_frames=args.num_frames,
        rnn=args.rnn, rnn_units=args.rnn_units, batch_size=args.batch_size, epochs=args.epochs,
        learning_rate=3e-3, strategy="default", seed=0)).validate()
    distribution.set_up(config.training, config.runtime)
    task = PlayClassificationTask.from_config(config)
    # Both ways run one compiled call per epoch: what is left is the work itself, not the
    # per-step dispatch that dominates the cached head's tiny steps.
    steps = max(1, task.plays.counts["train"] // args.batch_size)
    task.config.training.steps_per_execution = steps
    return task


def _fit(task: PlayClassificationTask, cached: bool) -> tuple:
    """Trains the head (streamed or cached) for the configured epochs; returns (epoch seconds, full model)."""
    keras.utils.set_random_seed(0)
    source = task.features if cached else task.plays
    model = task.build_head_model() if cached else task.build_model()
    task.compile_model(model, task.config.training.learning_rate)
    train_ds = reader.read(source, "train", task.parser(source), task.reader_config,
                           training=True, repeat=True)
    timer = EpochTimer()
    steps = max(1, source.counts["train"] // task.config.training.batch_size)
    model.fit(train_ds, epochs=task.config.training.epochs, steps_per_epoch=steps, callbacks=[timer],
              shuffle=False, verbose=0)
    if cached:
        model = task.classifier(model)
    return timer.seconds, model


def _accuracy(task: PlayClassificationTask, model) -> float:
    """Play-level accuracy of a classifier on clips (the trainer's --eval_views of the plays)."""
    split = "test" if task.plays.files["test"] else "val"
    labels, scores = predictions.predict_views(model, task.eval_dataset(split, task.plays))
    probabilities = metrics.average_log_probabilities(scores[:, :task.eval_views.count])
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def _embed(records: str, out: str, args, workers: int, compute_dtype: str = "auto") -> float:
    """Seconds of one embed job run with `workers` DirectRunner worker processes."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    embed_records.run([f"--records_dir={records}", f"--output_dir={out}", "--weights=none",
                       f"--cut_layer={args.cut_layer}", "--num_shards=2",
                       f"--compute_dtype={compute_dtype}",
                       "--direct_running_mode=multi_processing",
                       f"--direct_num_workers={workers}"])
    return time.perf_counter() - start


def _stored_features(out: str) -> np.ndarray:
    """Every stored frame's features of an embed output, by play id: [frames, dim] float32."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from schemas import feature_record  # pylint: disable=g-import-not-at-top
    paths = sorted(glob.glob(os.path.join(out, "*-of-*.tfrecord")))
    records = sorted((feature_record.decode_features(r.numpy())
                      for r in tf.data.TFRecordDataset(paths)), key=lambda r: r.play_id)
    return np.concatenate([r.features.reshape(-1, r.features.shape[-1]) for r in records]
                          ).astype(np.float32)


def _base_interleaved(args, frames: int = 8, repeats: int = 5) -> Dict[str, float]:
    """Frames/s of the base alone in float32 and bfloat16, calls alternated, the best of `repeats`.

    The embed job's own model code (`inference.FrameBase`) on one batch of random
    frames. Alternating the two and keeping each one's fastest call makes the
    ratio hold on a machine that other work shares (the job-level figures
    above run one after the other, under whatever load each meets).
    """
    import keras  # pylint: disable=g-import-not-at-top
    from beam_jobs import inference  # pylint: disable=g-import-not-at-top
    from backbone import vgg16  # pylint: disable=g-import-not-at-top
    size = (args.frame_size, args.frame_size)
    keras.utils.set_random_seed(0)
    fp32 = vgg16.build_base(args.cut_layer, "none", size)
    bf16 = vgg16.build_base(args.cut_layer, "none", size)
    bf16.set_weights(fp32.get_weights())
    vgg16.set_compute_dtype(bf16, "bfloat16")
    models = {dtype: inference.FrameBase(base, vgg16.VGGPreprocess())
              for dtype, base in (("float32", fp32), ("bfloat16", bf16))}
    batch = np.random.default_rng(0).integers(0, 256, (frames, *size, 3), dtype=np.uint8)
    best = {dtype: float("inf") for dtype in models}
    for model in models.values():
        model.features(batch)  # warm-up
    for _ in range(repeats):
        for dtype, model in models.items():
            start = time.perf_counter()
            model.features(batch)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return {dtype: frames / seconds for dtype, seconds in best.items()}


def _dtype_results(records: str, tmp: str, args, frames_total: int) -> Dict:
    """The base in float32 and in bfloat16 (one worker each): frames/s, GFLOP/s, cosine."""
    from backbone import vgg16  # pylint: disable=g-import-not-at-top
    outs = {dtype: os.path.join(tmp, f"features_{dtype}") for dtype in ("float32", "bfloat16")}
    seconds = {dtype: _embed(records, out, args, 1, dtype) for dtype, out in outs.items()}
    a, b = _stored_features(outs["float32"]), _stored_features(outs["bfloat16"])
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                         1e-12)
    gflop = vgg16.conv_flops(vgg16.build_base(
        args.cut_layer, "none", (args.frame_size, args.frame_size))) / 1e9
    fps = {dtype: frames_total / s for dtype, s in seconds.items()}
    base = _base_interleaved(args)
    return {
        "base_fp32_frames_per_s": round(base["float32"], 2),
        "base_bf16_frames_per_s": round(base["bfloat16"], 2),
        "base_bf16_speedup": round(base["bfloat16"] / base["float32"], 2),
        "base_fp32_gflop_per_s": round(gflop * base["float32"], 1),
        "base_bf16_gflop_per_s": round(gflop * base["bfloat16"], 1),
        "embed_fp32_frames_per_s": round(fps["float32"], 2),
        "embed_bf16_frames_per_s": round(fps["bfloat16"], 2),
        "embed_bf16_speedup": round(fps["bfloat16"] / fps["float32"], 2),
        "bf16_feature_cosine": round(float(cosine.mean()), 5),
        "bf16_feature_cosine_min": round(float(cosine.min()), 5),
        "gflop_per_frame": round(gflop, 2),
        "embed_fp32_gflop_per_s": round(gflop * fps["float32"], 1),
        "embed_bf16_gflop_per_s": round(gflop * fps["bfloat16"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--dtypes_only", action="store_true",
                        help="only the base's float32 vs bfloat16 figures")
    for name, value in PRESETS["demo"].items():
        parser.add_argument(f"--{name}", type=type(value), default=None)
    args = parser.parse_args()
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    compat.apply_all()
    tmp = tempfile.mkdtemp(prefix="feature_cache_")
    try:
        records, features = os.path.join(tmp, "records"), os.path.join(tmp, "features")
        make_records.run([f"--output_dir={records}", f"--demo_plays={args.plays}",
                          f"--frame_size={args.frame_size}", "--num_shards=2"])
        frames_total = sum(make_records.read_card(records).counts.values()) * 40
        dtypes = _dtype_results(records, tmp, args, frames_total)
        head = {"preset": args.preset, "plays": args.plays, "frame_size": args.frame_size,
                "cut_layer": args.cut_layer, "frames": frames_total,
                "compute_dtype_auto": precision.resolve_compute_dtype("auto")}
        if args.dtypes_only:
            for key, value in {**head, **dtypes}.items():
                print(f"{key}={value}")
            return
        # One worker at the default (auto) dtype is one of the two runs above.
        auto_key = ("embed_bf16_frames_per_s" if head["compute_dtype_auto"] == "bfloat16"
                    else "embed_fp32_frames_per_s")
        embed_s = {1: frames_total / dtypes[auto_key], 2: _embed(records, features, args, 2)}
        task = _task(args, records, features, os.path.join(tmp, "job"))
        stream_seconds, stream_model = _fit(task, cached=False)
        cached_seconds, cached_model = _fit(task, cached=True)
        # The first epoch traces the graphs: time the others.
        stream_epoch = statistics.median(stream_seconds[1:] or stream_seconds)
        cached_epoch = statistics.median(cached_seconds[1:] or cached_seconds)
        results = {
            **head, "num_frames": args.num_frames,
            "stream_epoch_s": round(stream_epoch, 3), "cached_epoch_s": round(cached_epoch, 3),
            "epoch_speedup": round(stream_epoch / cached_epoch, 1),
            "embed_s": round(embed_s[2], 1),
            "break_even_epochs": round(embed_s[2] / max(stream_epoch - cached_epoch, 1e-9), 2),
            "stream_accuracy": round(_accuracy(task, stream_model), 4),
            "cached_accuracy": round(_accuracy(task, cached_model), 4),
            "embed_frames_per_s_w1": round(frames_total / embed_s[1], 1),
            "embed_frames_per_s_w2": round(frames_total / embed_s[2], 1),
            **dtypes,
        }
        for key, value in results.items():
            print(f"{key}={value}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
