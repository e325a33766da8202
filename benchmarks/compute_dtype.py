"""bf16 on this machine: the demo head's accuracy on float32 vs bfloat16 features, fine-tuning steps.

Two parts, each against a float32 baseline measured in the same run:

  demo      the demo's path (Makefile DEMO_* flags): records at 32 px, the embed job with
            --compute_dtype=float32 and =bfloat16, the head trained from each (GRU 64 on 8 of
            40 frames, 60 epochs, 2 CPU replicas) and evaluated as the trainer does (eval.json):
            accuracy with n and a 95% Wilson interval per dtype.
  finetune  the full classifier (VGG16 cut at block3_pool, trainable from block3_conv1, 112 px,
            8 frames, batch 4) trained with model.fit in float32 and under mixed_bfloat16
            (what --mixed_precision=bf16 sets): the median step time of each and their ratio.

    python benchmarks/compute_dtype.py [--parts=demo,finetune] [--records_dir=runs/demo/records]

Prints key=value lines: demo_fp32_accuracy, demo_fp32_n, demo_fp32_ci95, demo_bf16_*, and
finetune_fp32_step_s, finetune_bf16_step_s, finetune_bf16_step_ratio (bf16 / fp32: < 1 is faster),
cpu_bf16 (whether this CPU has avx512_bf16 or AMX).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="demo,finetune")
    parser.add_argument("--records_dir", default="",
                        help="demo records already made with the demo's flags (else made here)")
    parser.add_argument("--finetune_steps", type=int, default=10)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    results = {"cpu_bf16": precision.cpu_has_bf16()}
    tmp = tempfile.mkdtemp(prefix="compute_dtype_")
    try:
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
