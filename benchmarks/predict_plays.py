"""Prediction throughput: plays/s of the Beam prediction job against the one-clip client's loop.

One workload (demo records at the demo's frame count and size, an exported
model with the given cut layer and random weights: throughput does not depend
on what the weights learnt), three ways:
  loop       one process: trainer.serving.predictor.Predictor.classify_frames, one call per play
             (what a season of plays took before the job)
  direct     the prediction job on the DirectRunner, in memory (one process)
  multiproc  the job on the DirectRunner, multi_processing, --direct_num_workers=2
Wall-clock times include each run's start-up (model loads, worker processes).
Prints key=value lines, with ratios against the loop measured in the same run.

    python benchmarks/predict_plays.py [--plays 200] [--frames 16] [--size 64] \
        [--cut_layer block2_pool] [--batch_size 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import keras  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from beam_jobs import make_records, predict_plays  # pylint: disable=wrong-import-position
from schemas import play_record  # pylint: disable=wrong-import-position
from schemas.sampling import FrameSampling  # pylint: disable=wrong-import-position
from trainer.serving import export  # pylint: disable=wrong-import-position
from trainer.serving.predictor import Predictor  # pylint: disable=wrong-import-position
from trainer.data import sources  # pylint: disable=wrong-import-position
from trainer.modeling import model as model_lib  # pylint: disable=wrong-import-position


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=200)
    parser.add_argument("--frames", type=int, default=16, help="frames per record")
    parser.add_argument("--model_frames", type=int, default=8, help="frames the model sees")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cut_layer", default="block2_pool")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="predict_bench_")
    records, job = os.path.join(tmp, "records"), os.path.join(tmp, "job")
    card = make_records.run([f"--output_dir={records}", f"--demo_plays={args.plays}",
                             f"--num_frames={args.frames}", f"--frame_size={args.size}",
                             "--splits=train=0,val=0,test=1", "--num_shards=2"])
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(card.num_classes, image_size=(args.size, args.size),
                                  cut_layer=args.cut_layer, weights="none", rnn="gru",
                                  rnn_units=64)
    export.export_model(model, job, labels=card.labels, image_size=args.size,
                        num_frames=args.model_frames,
                        sampling=FrameSampling(num_frames=args.frames))
    num_plays = card.counts["test"]
    print(f"plays={num_plays} frames={args.frames} model_frames={args.model_frames} "
          f"size={args.size} cut_layer={args.cut_layer} batch_size={args.batch_size} "
          f"cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.2f}")

    start = time.perf_counter()
    predictor = Predictor(job)
    for serialized in tf.data.TFRecordDataset(sources.split_files(records, "test")):
        predictor.classify_frames(play_record.decode_play(serialized.numpy()).frames)
    loop_s = time.perf_counter() - start
    print(f"loop_s={loop_s:.2f} loop_plays_per_s={num_plays / loop_s:.2f}")

    common = [f"--model={job}", f"--records_dir={records}", "--split=test",
              f"--batch_size={args.batch_size}", "--runner=DirectRunner",
              "--compute_dtype=float32"]  # as the loop's Predictor: the same model, in float32
    for name, extra in (("direct", []),
                        ("multiproc", ["--direct_running_mode=multi_processing",
                                       "--direct_num_workers=2"])):
        start = time.perf_counter()
        result = predict_plays.run([*common, f"--output_dir={os.path.join(tmp, name)}", *extra])
        seconds = time.perf_counter() - start
        assert result.num_written == num_plays, result
        print(f"{name}_s={seconds:.2f} {name}_plays_per_s={num_plays / seconds:.2f} "
              f"{name}_vs_loop={loop_s / seconds:.2f}")
    print(f"peak_rss_mb={_peak_rss_mb():.0f}")


if __name__ == "__main__":
    main()
