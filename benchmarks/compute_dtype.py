"""bf16 on this machine: the demo head's accuracy on float32 vs bfloat16 features, fine-tuning
steps, and the timeline's inference in bfloat16 of a float32 export.

Three parts, each against a float32 baseline measured in the same run:

  demo      the demo's path (Makefile DEMO_* flags): records at 32 px, the embed job with
            --compute_dtype=float32 and =bfloat16, the head trained from each (GRU 64 on 8 of
            40 frames, 60 epochs, 2 CPU replicas) and evaluated as the trainer does (eval.json):
            accuracy with n and a 95% Wilson interval per dtype.
  finetune  the full classifier (VGG16 cut at block3_pool, trainable from block3_conv1, 112 px,
            8 frames, batch 4) trained with model.fit in float32 and under mixed_bfloat16
            (what --mixed_precision=bf16 sets): the median step time of each and their ratio.
  timeline  a float32 export (random VGG16 cut at block3_pool, 112 px, 8 of 16 frames at 25
            frames/s, GRU 64) run by the timeline (`trainer.timeline --compute_dtype`) on a
            demo game video (3 plays, 112 px, hop 0.32 s) as exported and rebuilt in bfloat16
            (`trainer.serving.compute_dtype`): frames_per_s of each (best of --timeline_runs
            alternating runs, after a warm-up run each), their ratio, and how far the windows'
            probabilities moved.

    python benchmarks/compute_dtype.py [--parts=demo,finetune,timeline] \
        [--records_dir=runs/demo/records] [--timeline_runs=2]

Prints key=value lines: demo_fp32_accuracy, demo_fp32_n, demo_fp32_ci95, demo_bf16_*, and
finetune_fp32_step_s, finetune_bf16_step_s, finetune_bf16_step_ratio (bf16 / fp32: < 1 is faster),
timeline_fp32_frames_per_s, timeline_bf16_frames_per_s, timeline_bf16_speedup (bf16 / fp32: > 1
is faster), timeline_bf16_max_abs_diff, timeline_bf16_top_label_agreement, cpu_bf16 (whether
this CPU has avx512_bf16 or AMX) and cpu_model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from beam_jobs import embed_records, make_records  # noqa: E402
from backbone import precision  # noqa: E402

DEMO_RECORD_FLAGS = ["--frame_size=32", "--demo_plays=330"]
DEMO_EMBED_FLAGS = ["--weights=none", "--cut_layer=block2_pool"]
DEMO_TRAIN_FLAGS = ["--strategy=mirrored", "--cpu_replicas=2", "--num_frames=8",
                    "--trainable_from=none", "--rnn=gru", "--rnn_units=64", "--epochs=60",
                    "--batch_size=8", "--learning_rate=3e-3"]


def wilson(successes: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def demo(tmp: str, records: str) -> Dict:
    """The demo head's test accuracy on float32 and on bfloat16 features."""
    if not records:
        records = os.path.join(tmp, "records")
        make_records.run([f"--output_dir={records}", *DEMO_RECORD_FLAGS])
    results = {}
    for dtype, key in (("float32", "fp32"), ("bfloat16", "bf16")):
        features, job = os.path.join(tmp, f"features_{key}"), os.path.join(tmp, f"job_{key}")
        embed_records.run([f"--records_dir={records}", f"--output_dir={features}",
                           f"--compute_dtype={dtype}", *DEMO_EMBED_FLAGS])
        start = time.perf_counter()
        # Its own process, as `make demo` runs it: --cpu_replicas splits the CPU before
        # TensorFlow starts, and the embed job here has started it.
        done = subprocess.run([sys.executable, "-m", "trainer.task", f"--features_dir={features}",
                               f"--job_dir={job}", *DEMO_TRAIN_FLAGS], cwd=ROOT, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the {dtype} head run failed")
        with open(os.path.join(job, "eval.json"), encoding="utf-8") as f:
            report = json.load(f)
        n, accuracy = int(report["num_examples"]), float(report["accuracy"])
        low, high = wilson(round(accuracy * n), n)
        results.update({f"demo_{key}_accuracy": round(accuracy, 4), f"demo_{key}_n": n,
                        f"demo_{key}_ci95": f"[{low:.3f},{high:.3f}]",
                        f"demo_{key}_train_s": round(time.perf_counter() - start, 1)})
    return results


def _step_seconds(policy: str, steps: int) -> float:
    """Median seconds of a fine-tuning train step of the full classifier under `policy`."""
    import keras  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = model_lib.build_model(
            11, image_size=(112, 112), num_frames=8, cut_layer="block3_pool", weights="none",
            trainable_from="block3_conv1", rnn="gru", rnn_units=64)
        model.compile(optimizer=keras.optimizers.Adam(1e-4),
                      loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        clips = rng.integers(0, 256, (4 * (steps + 2), 8, 112, 112, 3), dtype=np.uint8)
        labels = rng.integers(0, 11, (clips.shape[0],))

        class Steps(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds, self._start = [], 0.0

            def on_train_batch_begin(self, batch, logs=None):
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        timer = Steps()
        model.fit(clips, labels, batch_size=4, epochs=1, callbacks=[timer], verbose=0,
                  shuffle=False)
        return statistics.median(timer.seconds[2:])  # the first steps trace the graph
    finally:
        keras.mixed_precision.set_global_policy("float32")


def finetune(steps: int) -> Dict:
    fp32 = _step_seconds("float32", steps)
    bf16 = _step_seconds("mixed_bfloat16", steps)
    return {"finetune_fp32_step_s": round(fp32, 3), "finetune_bf16_step_s": round(bf16, 3),
            "finetune_bf16_step_ratio": round(bf16 / fp32, 2)}


TIMELINE_SIZE, TIMELINE_FRAMES, TIMELINE_RECORD_FRAMES, TIMELINE_RATE = 112, 8, 16, 25.0


def timeline_part(tmp: str, runs: int) -> Dict:
    """The timeline's frames_per_s in float32 and in bfloat16, on the same export and video."""
    import keras  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from demo_data import games as demo_games  # pylint: disable=g-import-not-at-top
    from schemas.sampling import FrameSampling  # pylint: disable=g-import-not-at-top
    from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
    from trainer.serving import export, timeline  # pylint: disable=g-import-not-at-top
    from trainer.serving.timeline_model import TimelineModel  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(0)
    labels = ["cut", "handoff", "isolation", "pick_and_roll"]
    model = model_lib.build_model(len(labels), image_size=(TIMELINE_SIZE, TIMELINE_SIZE),
                                  num_frames=TIMELINE_FRAMES, cut_layer="block3_pool",
                                  weights="none", rnn="gru", rnn_units=64)
    job = os.path.join(tmp, "timeline_job")
    export.export_model(model, job, labels=labels, image_size=TIMELINE_SIZE,
                        num_frames=TIMELINE_FRAMES,
                        sampling=FrameSampling(num_frames=TIMELINE_RECORD_FRAMES,
                                               frame_rate=TIMELINE_RATE))
    video = os.path.join(tmp, "timeline_game.mp4")
    demo_games.write_game_video(video, seed=7, game=0, num_frames=TIMELINE_RECORD_FRAMES,
                                plays_per_game=3, size=TIMELINE_SIZE)
    hop = TIMELINE_FRAMES / TIMELINE_RATE
    models = {key: TimelineModel(job, compute_dtype=dtype)
              for dtype, key in (("float32", "fp32"), ("bfloat16", "bf16"))}
    best = {key: 0.0 for key in models}
    probabilities = {}
    for key, tl_model in models.items():
        timeline.compute_timeline(tl_model, video, hop_seconds=hop)  # warm-up: tracing
    for _ in range(runs):  # alternating, so that a change in the machine's load hits both
        for key, tl_model in models.items():
            stats = timeline.TimelineStats()
            result = timeline.compute_timeline(tl_model, video, hop_seconds=hop, stats=stats)
            best[key] = max(best[key], stats.frames_per_s)
            probabilities[key] = np.array([w["probabilities"] for w in result["windows"]])
    results: Dict = {f"timeline_{key}_frames_per_s": round(best[key], 1) for key in models}
    results["timeline_bf16_speedup"] = round(
        results["timeline_bf16_frames_per_s"] / results["timeline_fp32_frames_per_s"], 2)
    fp32, bf16 = probabilities["fp32"], probabilities["bf16"]
    results["timeline_bf16_max_abs_diff"] = float(f"{np.abs(fp32 - bf16).max():.2g}")
    results["timeline_bf16_top_label_agreement"] = round(
        float((fp32.argmax(1) == bf16.argmax(1)).mean()), 3)
    results["timeline_windows"] = len(fp32)
    results["timeline_settings"] = (f"{TIMELINE_SIZE}px_block3_pool_{TIMELINE_FRAMES}of"
                                    f"{TIMELINE_RECORD_FRAMES}_frames_gru64_hop{hop:g}s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="demo,finetune,timeline")
    parser.add_argument("--records_dir", default="",
                        help="demo records already made with the demo's flags (else made here)")
    parser.add_argument("--finetune_steps", type=int, default=10)
    parser.add_argument("--timeline_runs", type=int, default=2,
                        help="timed timeline runs per dtype (the best counts)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    results = {"cpu_bf16": precision.cpu_has_bf16(), "cpu_model": precision.cpu_model(),
               "cpus": os.cpu_count(), "loadavg_1min_before": round(os.getloadavg()[0], 2)}
    tmp = tempfile.mkdtemp(prefix="compute_dtype_")
    try:
        if "timeline" in parts:
            results.update(timeline_part(tmp, args.timeline_runs))
        if "finetune" in parts:
            results.update(finetune(args.finetune_steps))
        if "demo" in parts:
            results.update(demo(tmp, args.records_dir))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key, value in results.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
