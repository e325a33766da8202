"""On a machine with a GPU: the embed job, head training and a fine-tuning epoch, with figures.

    python benchmarks/gpu_check.py [--plays=44] [--frame_size=224] [--cut_layer=block5_pool]

Without a GPU it prints one line saying so and exits 0 (CI never runs it). With one:

  embed     the embed job (DirectRunner, one worker process, --compute_dtype=auto: bfloat16 on
            GPUs of compute capability >= 8.0) on demo plays at --frame_size
  head      the head trained from those features (--mixed_precision=bf16, --jit_compile=true)
  finetune  one epoch of the full classifier, trainable from block5_conv1 (bf16, XLA)

Prints key=value lines: gpu (name and compute capability), embed_frames_per_s,
head_step_ms, finetune_step_ms, and the GPU memory each part peaked at
(tf.config.experimental.get_memory_info, `*_gpu_peak_mb`). The embed job runs in a worker
process, so its GPU memory is the worker's and is not seen here: embed_gpu_peak_mb is
measured by loading the saved base here and running it on one batch of the same size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _gpus() -> List:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.config.list_physical_devices("GPU")


def _peak_mb(reset: bool = True) -> float:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    if reset:
        tf.config.experimental.reset_memory_stats("GPU:0")
    return round(peak, 1)


def _step_timer():
    """A Keras callback that keeps the wall seconds of each train step (`.seconds`)."""
    import keras  # pylint: disable=g-import-not-at-top

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: List[float] = []
            self._start = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return StepTimer()


def _train(task_flags: List[str]) -> float:
    """Median train step seconds of one trainer run (the trainer's own fit, with a step timer)."""
    import keras  # pylint: disable=g-import-not-at-top
    from trainer import task  # pylint: disable=g-import-not-at-top
    timer = _step_timer()
    original_fit = keras.Model.fit

    def fit(self, *args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [timer]
        return original_fit(self, *args, **kwargs)

    keras.Model.fit = fit
    try:
        if task.run(task_flags) != 0:
            raise SystemExit(f"trainer failed: {' '.join(task_flags)}")
    finally:
        keras.Model.fit = original_fit
    return statistics.median(timer.seconds[2:] or timer.seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=44)
    parser.add_argument("--frame_size", type=int, default=224)
    parser.add_argument("--cut_layer", default="block5_pool")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    gpus = _gpus()
    if not gpus:
        print("gpu_check: no GPU on this machine (tf.config.list_physical_devices('GPU') is "
              "empty); nothing to measure")
        return 0
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from beam_jobs import embed_records, make_records  # pylint: disable=g-import-not-at-top
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    details = tf.config.experimental.get_device_details(gpus[0])
    results: Dict = {"gpu": f"{details.get('device_name', '?')} "
                            f"cc{'.'.join(map(str, details.get('compute_capability', ())))}",
                     "gpus": len(gpus)}
    tmp = tempfile.mkdtemp(prefix="gpu_check_")
    try:
        records, features = os.path.join(tmp, "records"), os.path.join(tmp, "features")
        make_records.run([f"--output_dir={records}", f"--demo_plays={args.plays}",
                          f"--frame_size={args.frame_size}", "--num_shards=2"])
        frames = sum(make_records.read_card(records).counts.values()) * 40
        start = time.perf_counter()
        card = embed_records.run([f"--records_dir={records}", f"--output_dir={features}",
                                  "--weights=none", f"--cut_layer={args.cut_layer}",
                                  "--compute_dtype=auto", "--num_shards=2"])
        seconds = time.perf_counter() - start
        results.update(embed_compute_dtype=card.compute_dtype,
                       embed_frames_per_s=round(frames / seconds, 1), embed_s=round(seconds, 1))
        results["embed_gpu_peak_mb"] = _embed_peak_mb(features, card, args.batch_size)

        common = [f"--batch_size={args.batch_size}", "--num_frames=8", "--rnn=gru",
                  "--rnn_units=64", "--mixed_precision=bf16", "--jit_compile=true",
                  "--strategy=default"]
        _peak_mb()
        results["head_step_ms"] = round(1000 * _train(
            [f"--features_dir={features}", f"--job_dir={os.path.join(tmp, 'head')}",
             "--epochs=3", "--trainable_from=none", *common]), 2)
        results["head_gpu_peak_mb"] = _peak_mb()
        results["finetune_step_ms"] = round(1000 * _train(
            [f"--data_dir={records}", f"--job_dir={os.path.join(tmp, 'finetune')}",
             "--epochs=1", "--weights=none", f"--cut_layer={args.cut_layer}",
             "--trainable_from=block5_conv1", *common]), 2)
        results["finetune_gpu_peak_mb"] = _peak_mb()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for key, value in results.items():
        print(f"{key}={value}")
    return 0


def _embed_peak_mb(features: str, card, batch_size: int) -> float:
    """GPU memory peak of the saved base, in the card's compute dtype, on one batch of plays."""
    import keras  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from beam_jobs import inference  # pylint: disable=g-import-not-at-top
    from backbone import vgg16  # pylint: disable=g-import-not-at-top
    base = keras.saving.load_model(os.path.join(features, card.base_model), compile=False,
                                   custom_objects={"VGGPreprocess": vgg16.VGGPreprocess})
    vgg16.set_compute_dtype(base, card.compute_dtype)
    _peak_mb()
    model = inference.FrameBase(base, vgg16.VGGPreprocess())
    model.features(np.zeros((batch_size * card.num_frames, card.height, card.width, 3),
                            np.uint8))
    return _peak_mb()


if __name__ == "__main__":
    sys.exit(main())
