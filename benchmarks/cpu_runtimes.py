"""CPU inference runtimes side by side on the timeline's per-frame base: TensorFlow float32 and
bfloat16 against OpenVINO (f32, bf16, int8) and ONNX Runtime (f32), on the same frames.

The timeline spends its time in the frozen VGG16 base, once per sampled frame. The model timed
here is the timeline's per-frame model (`trainer.modeling.model.split_model` of a
`build_model` model, random weights: speed does not depend on them): uint8 frames
[N, H, W, 3] -> vgg_preprocess -> VGG16 to --cut_layer -> global average pool -> features [N, C].
The input is one batch of --frames frames of demo plays, cut to --size as the records job
cuts them (resize, JPEG) and decoded as the timeline decodes them. Candidates:

  tf_float32       the frame model in a tf.function, `model(x, training=False)`, as
                   `trainer.serving.timeline_model.TimelineModel` runs it
  tf_bfloat16      the same model rebuilt in bfloat16 (`trainer.serving.compute_dtype`,
                   the timeline's --compute_dtype path)
  openvino_f32     `openvino.convert_model` of the Keras frame model, compiled for CPU with
                   INFERENCE_PRECISION_HINT=f32, PERFORMANCE_HINT=LATENCY (one stream on
                   --threads threads: one call per batch, as TensorFlow runs it)
  openvino_bf16    the same with the bf16 hint, where the CPU has avx512_bf16 or AMX
  onnxruntime_f32  tf2onnx of the tf.function (opset 17), ONNX Runtime's CPU provider with
                   --threads intra-op threads
  openvino_int8    nncf.quantize (post-training, default preset) of the OpenVINO model,
                   calibrated on --calibration_frames frames of other demo plays, compiled
                   with the f32 hint (what nncf leaves unquantized stays f32)

Each candidate is called once to warm up, then --repeats rounds run every candidate once, the
order rotated per round so that the machine's load hits all alike. frames_per_s_<candidate> is
--frames over the candidate's median call ([min, max] over the rounds in
frames_per_s_<candidate>_range); speedup_<candidate>_vs_tf_float32 the ratio of medians in the
same run (the [min, max] of the per-round ratios in _rounds); best_tf is the faster TensorFlow
dtype, best_other the fastest other runtime, and wins_clearly says whether best_other is
>= --clear_win times best_tf. Accuracy: each candidate's features against tf_float32's,
cosine per frame (feature_cosine_<candidate>_mean and _min), and the same after subtracting
tf_float32's mean feature from both (feature_centered_cosine_*: the pooled features share a
large constant part, which makes the plain cosine look better than it is). For int8 also the
labels of a trained demo model (--demo_job, `make demo`'s runs/demo/job: 32 px, VGG16 to
block2_pool, 8 of 40 frames, GRU 64 - not the seed's settings): its base quantized the same
way (calibrated on its training plays), then the float32 features (the timeline's own
`TimelineModel.features`) and the int8 features of --demo_plays unseen demo plays (one view
each) through the same float32 head: label_agreement_int8 with its n and 95% Wilson interval,
and each one's accuracy against the plays' true labels.

    python benchmarks/cpu_runtimes.py [--frames=32] [--repeats=5] [--size=224]
        [--cut_layer=block5_pool] [--threads=N] [--candidates=tf_float32,...]
        [--calibration_frames=32] [--demo_job=runs/demo/job] [--demo_plays=100]

The other runtimes are not playclips dependencies: `pip install openvino nncf onnxruntime
tf2onnx` to measure them. A candidate whose package is missing, or whose conversion fails,
prints skipped_<candidate>=why and the others still run. Prints key=value lines, the CPU's
model and flags first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from backbone import precision  # noqa: E402
from schemas.errors import one_line  # noqa: E402

CANDIDATES = ("tf_float32", "tf_bfloat16", "openvino_f32", "openvino_bf16", "onnxruntime_f32",
              "openvino_int8")
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                  "amx_tile")
BENCH_SEED, DEMO_SEED = 11, 0  # the frames' demo set; `make demo` trains on demo seed 0
DEMO_TRAIN_PLAYS = 330  # `make demo`'s --demo_plays: plays from this index on are unseen

Features = Callable[[np.ndarray], np.ndarray]  # uint8 frames [N, H, W, 3] -> float32 [N, C]


def demo_frames(seed: int, first: int, count: int, size, per_play: int = 8) -> np.ndarray:
    """`count` uint8 frames [count, H, W, 3]: `per_play` spread over each demo play from `first`
    on, cut as the records job cuts them and decoded as the timeline decodes them."""
    from media import frames as media_frames  # pylint: disable=g-import-not-at-top
    from schemas.sampling import FrameSampling  # pylint: disable=g-import-not-at-top
    from trainer.data import clips as clips_lib  # pylint: disable=g-import-not-at-top
    height, width = size
    how = FrameSampling(num_frames=per_play, height=height, width=width)
    jpegs: List[bytes] = []
    index = first
    while len(jpegs) < count:
        jpegs += media_frames.read_play(f"demo://{seed}/{index}", how).frames
        index += 1
    return clips_lib.decode_frames(jpegs[:count], height, width).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of `a` and `b` [N, C] -> [N]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                       1e-12)


def span(values: List[float]) -> str:
    """[min,max] of `values`, two decimals: the spread of a figure over the rounds."""
    return f"[{min(values):.2f},{max(values):.2f}]"


def tf_features(frame_model) -> Features:
    """The timeline's call of a frame model: a tf.function of model(x, training=False)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    fn = tf.function(lambda x: frame_model(x, training=False), reduce_retracing=True)
    return lambda x: np.asarray(fn(tf.constant(x)).numpy(), np.float32)


def openvino_model(frame_model):
    """The Keras frame model converted to OpenVINO (dynamic batch, uint8 frames in)."""
    import openvino as ov  # pylint: disable=g-import-not-at-top
    return ov.convert_model(frame_model)


def openvino_features(ov_model, hint: str, threads: int) -> Features:
    """An OpenVINO model compiled for the CPU: `hint` precision, one stream on `threads`."""
    import openvino as ov  # pylint: disable=g-import-not-at-top
    compiled = ov.Core().compile_model(ov_model, "CPU", {
        "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: np.asarray(request.infer([x])[0], np.float32)


def quantized(ov_model, calibration: np.ndarray):
    """The OpenVINO model quantized to int8 by nncf on one-frame calibration batches."""
    import nncf  # pylint: disable=g-import-not-at-top
    items = [calibration[i:i + 1] for i in range(len(calibration))]
    return nncf.quantize(ov_model, nncf.Dataset(items), subset_size=len(items))


def onnxruntime_features(frame_model, size, threads: int) -> Features:
    """tf2onnx of the timeline's tf.function, run by ONNX Runtime's CPU provider."""
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tf2onnx  # pylint: disable=g-import-not-at-top
    fn = tf.function(lambda x: frame_model(x, training=False))
    proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=[tf.TensorSpec([None, *size, 3], tf.uint8, name="frames")], opset=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x})[0], np.float32)


def build_candidates(args, size, frame_model, bf16_frame_model, calibration,
                     results: Dict) -> Dict[str, Features]:
    """The candidates that build here, by name; skipped_<name>=why for the others."""
    wanted = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"unknown --candidates {unknown}: use some of {', '.join(CANDIDATES)}")
    built: Dict[str, Features] = {}
    ov_model = None
    for name in wanted:
        start = time.perf_counter()
        try:
            if name == "tf_float32":
                built[name] = tf_features(frame_model)
            elif name == "tf_bfloat16":
                built[name] = tf_features(bf16_frame_model)
            elif name == "onnxruntime_f32":
                built[name] = onnxruntime_features(frame_model, size, args.threads)
            else:  # openvino_*
                if name == "openvino_bf16" and not precision.cpu_has_bf16():
                    results[f"skipped_{name}"] = "no avx512_bf16 or AMX on this CPU"
                    continue
                if ov_model is None:
                    ov_model = openvino_model(frame_model)
                if name == "openvino_int8":
                    built[name] = openvino_features(quantized(ov_model, calibration), "f32",
                                                    args.threads)
                else:
                    built[name] = openvino_features(ov_model, name.split("_")[1], args.threads)
        except ImportError as err:
            results[f"skipped_{name}"] = f"not installed ({one_line(err)})"
            continue
        except Exception as err:  # pylint: disable=broad-except
            # A conversion that fails is a result: the benchmark says why and goes on.
            results[f"skipped_{name}"] = f"{type(err).__name__}: {one_line(err)[:300]}"
            continue
        results[f"build_s_{name}"] = round(time.perf_counter() - start, 1)
    return built


def timed(candidates: Dict[str, Features], batch: np.ndarray, repeats: int, results: Dict):
    """Warm-up, then `repeats` rounds, each candidate once per round in a rotated order: the
    figures, and each candidate's features (of its warm-up call)."""
    outputs = {name: fn(batch) for name, fn in candidates.items()}  # warm-up: tracing, compiling
    seconds: Dict[str, List[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            candidates[name](batch)
            seconds[name].append(time.perf_counter() - start)
    frames = len(batch)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    for name, s in seconds.items():
        results[f"frames_per_s_{name}"] = round(frames / median[name], 2)
        results[f"frames_per_s_{name}_range"] = span([frames / x for x in s])
    if "tf_float32" not in median:
        return median, seconds
    reference = outputs["tf_float32"]
    centre = reference.mean(0)
    for name in [n for n in names if n != "tf_float32"]:
        paired = [f / s for f, s in zip(seconds["tf_float32"], seconds[name])]
        results[f"speedup_{name}_vs_tf_float32"] = round(median["tf_float32"] / median[name], 2)
        results[f"speedup_{name}_vs_tf_float32_rounds"] = span(paired)
        for prefix, a, b in (("feature_cosine", reference, outputs[name]),
                             ("feature_centered_cosine", reference - centre,
                              outputs[name] - centre)):
            similarity = cosine(a, b)
            results[f"{prefix}_{name}_mean"] = round(float(similarity.mean()), 5)
            results[f"{prefix}_{name}_min"] = round(float(similarity.min()), 5)
    return median, seconds


def verdict(median: Dict[str, float], seconds: Dict[str, List[float]], clear_win: float,
            results: Dict) -> None:
    """best_tf, best_other and whether the other beats the faster TensorFlow dtype clearly (the
    ratio of medians >= clear_win), with the range of the per-round ratios."""
    tf_names = [n for n in median if n.startswith("tf_")]
    others = [n for n in median if not n.startswith("tf_")]
    if not tf_names or not others:
        return
    best_tf = min(tf_names, key=median.get)
    best_other = min(others, key=median.get)
    ratio = median[best_tf] / median[best_other]
    paired = [t / o for t, o in zip(seconds[best_tf], seconds[best_other])]
    results.update({"best_tf": best_tf, "best_other": best_other,
                    "speedup_best_other_vs_best_tf": round(ratio, 2),
                    "speedup_best_other_vs_best_tf_rounds": span(paired),
                    "wins_clearly": ratio >= clear_win})


def demo_labels(args, results: Dict) -> None:
    """The int8 base's cost on a trained demo model's labels (its settings, not the seed's)."""
    from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
    from trainer.evaluation import metrics  # pylint: disable=g-import-not-at-top
    from trainer.serving.timeline_model import TimelineModel  # pylint: disable=g-import-not-at-top
    from media import frames as media_frames  # pylint: disable=g-import-not-at-top
    from trainer.data import clips as clips_lib  # pylint: disable=g-import-not-at-top
    from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
    model = TimelineModel(args.demo_job, "float32")
    size = (model.height, model.width)
    try:
        int8 = openvino_features(
            quantized(openvino_model(model.frame_model),
                      demo_frames(DEMO_SEED, 0, args.calibration_frames, size)),
            "f32", args.threads)
    except ImportError as err:
        results["skipped_label_agreement_int8"] = f"not installed ({one_line(err)})"
        return
    indices = range(DEMO_TRAIN_PLAYS, DEMO_TRAIN_PLAYS + args.demo_plays)
    jpegs = []
    for index in indices:  # one view: the frames evaluation picks, as the timeline's windows do
        play = media_frames.read_play(f"demo://{DEMO_SEED}/{index}", model.sampling).frames
        jpegs += [play[i] for i in model.window_offsets(len(play))]
    fp32 = model.features(jpegs)  # the timeline's own decode and base
    q8 = int8(clips_lib.decode_frames(jpegs, *size).numpy())
    per_window = (len(indices), model.num_frames, fp32.shape[-1])
    top = {name: model.head_probabilities(f.reshape(per_window)).argmax(1)
           for name, f in (("float32", fp32), ("int8", q8))}
    truth = np.array([model.labels.index(demo_plays.label_of(i)) for i in indices])
    n, agree = len(truth), int((top["float32"] == top["int8"]).sum())
    low, high = metrics.wilson_interval(agree, n)
    similarity = cosine(fp32, q8)
    cut = model_lib.base_of(model.model).layers[-2].name  # the layer before features_pool
    results.update({
        "demo_settings": f"{model.height}px_{cut}_{model.num_frames}of"
                         f"{model.record_num_frames}_frames",
        "label_agreement_int8": round(agree / n, 4), "label_agreement_int8_n": n,
        "label_agreement_int8_ci95": f"[{low:.3f},{high:.3f}]",
        "demo_accuracy_float32": round(float((top["float32"] == truth).mean()), 4),
        "demo_accuracy_int8": round(float((top["int8"] == truth).mean()), 4),
        "demo_feature_cosine_int8_mean": round(float(similarity.mean()), 5),
        "demo_feature_cosine_int8_min": round(float(similarity.min()), 5)})


def versions() -> Dict[str, str]:
    found = {}
    for module in ("tensorflow", "keras", "openvino", "nncf", "onnxruntime", "tf2onnx"):
        try:
            found[f"version_{module}"] = __import__(module).__version__
        except ImportError:
            found[f"version_{module}"] = "absent"
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames per call (the batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (the median counts)")
    parser.add_argument("--size", type=int, default=224, help="frame height and width, px")
    parser.add_argument("--cut_layer", default="block5_pool")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of every runtime (default: all cores)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--calibration_frames", type=int, default=32,
                        help="int8: nncf calibration frames (other demo plays than the timed ones)")
    parser.add_argument("--demo_job", default=os.path.join(ROOT, "runs", "demo", "job"),
                        help="a trained demo JOB_DIR for label_agreement_int8 ('' or absent: skip)")
    parser.add_argument("--demo_plays", type=int, default=100,
                        help="unseen demo plays for label_agreement_int8")
    parser.add_argument("--clear_win", type=float, default=1.5,
                        help="the speedup over the faster TensorFlow dtype that counts as a win")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    flags = precision.cpu_flags()
    results: Dict = {"cpu_model": precision.cpu_model(),
                     "cpu_flags": ",".join(f for f in REPORTED_FLAGS if f in flags) or "none",
                     "cpus": os.cpu_count(), "threads": args.threads,
                     "loadavg_1min_before": round(os.getloadavg()[0], 2)}
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import keras  # pylint: disable=g-import-not-at-top
    from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
    from trainer.serving import compute_dtype  # pylint: disable=g-import-not-at-top
    results.update(versions())
    size = (args.size, args.size)
    results["settings"] = f"{args.size}px_{args.cut_layer}_batch{args.frames}"
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(4, image_size=size, num_frames=8, cut_layer=args.cut_layer,
                                  weights="none", rnn="gru", rnn_units=8)
    frame_model, _ = model_lib.split_model(model)
    bf16_frame_model, _ = model_lib.split_model(compute_dtype.in_compute_dtype(model, "bfloat16"))
    batch = demo_frames(BENCH_SEED, 0, args.frames, size)
    calibration = demo_frames(BENCH_SEED, 1000, args.calibration_frames, size)
    candidates = build_candidates(args, size, frame_model, bf16_frame_model, calibration, results)
    median, seconds = timed(candidates, batch, args.repeats, results)
    verdict(median, seconds, args.clear_win, results)
    if "openvino_int8" in candidates and args.demo_job and args.demo_plays > 0:
        if os.path.isdir(args.demo_job):
            demo_labels(args, results)
        else:
            results["skipped_label_agreement_int8"] = f"no trained demo model at {args.demo_job}"
    results["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    for key, value in results.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
