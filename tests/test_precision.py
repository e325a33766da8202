"""Compute dtypes: which machines run bf16 natively, the embed job's --compute_dtype (card,
features within cosine 0.995 of float32's), the trainer's mixed precision warning, and the
exported model rebuilt in a compute dtype (`trainer.serving.compute_dtype`, shared by
trainer.predict, the timeline and the prediction job; their own tests run it end to end).
Tiny: 32 px frames, 3 frames, VGG16 cut at block2_pool, random weights."""

import glob
import json
import os

import numpy as np
import pytest

from beam_jobs import embed_records
from backbone import precision
from demo_data import synthetic_records
from schemas import feature_record, features_card

INTEL_SPR = "processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile avx512_bf16\n"
EPYC_GENOA = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n"
OLD_XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"


@pytest.mark.parametrize("cpuinfo,native", [(INTEL_SPR, True), (EPYC_GENOA, True),
                                             (OLD_XEON, False), ("", False)])
def test_cpu_bf16_from_cpuinfo_flags(cpuinfo, native):
    assert precision.cpu_has_bf16(cpuinfo) is native
    assert precision.resolve_compute_dtype("auto", cpuinfo, compute_capabilities=[]) == (
        "bfloat16" if native else "float32")


def test_gpus_decide_over_the_cpu():
    assert precision.resolve_compute_dtype("auto", OLD_XEON, [(8, 0)]) == "bfloat16"  # A100
    assert precision.resolve_compute_dtype("auto", EPYC_GENOA, [(7, 0)]) == "float32"  # V100
    assert precision.resolve_compute_dtype("float16", EPYC_GENOA, []) == "float16"
    with pytest.raises(ValueError):
        precision.resolve_compute_dtype("bf16")


@pytest.mark.parametrize("cpuinfo,expected", [(EPYC_GENOA, "bfloat16"), (OLD_XEON, "float32")])
def test_serving_auto_resolves_through_the_probe(cpuinfo, expected):
    import logging  # pylint: disable=g-import-not-at-top
    from trainer.serving import compute_dtype as dtype_lib  # pylint: disable=g-import-not-at-top
    said = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: said.append(record.getMessage())
    dtype_lib.logger.addHandler(handler)  # on the module's logger: `trainer` may not propagate
    level = dtype_lib.logger.level
    dtype_lib.logger.setLevel(logging.INFO)
    try:
        assert dtype_lib.resolve("auto", cpuinfo_text=cpuinfo, compute_capabilities=[]) == expected
    finally:
        dtype_lib.logger.removeHandler(handler)
        dtype_lib.logger.setLevel(level)
    assert said == [f"the model computes in {expected} (--compute_dtype=auto)"]
    assert dtype_lib.resolve("float32", cpuinfo_text=EPYC_GENOA, compute_capabilities=[]) == (
        "float32")
    with pytest.raises(ValueError, match="--compute_dtype=bf16: use one of auto, float32"):
        dtype_lib.resolve("bf16")


def test_compute_dtype_warning_per_machine():
    warn = precision.compute_dtype_warning
    assert warn("bfloat16", EPYC_GENOA, []) == warn("float32", OLD_XEON, []) == ""
    assert "emulated" in warn("bfloat16", OLD_XEON, [])
    assert "on CPU it is emulated and slow" in warn("float16", INTEL_SPR, [])
    assert warn("float16", OLD_XEON, [(7, 5)]) == ""


def test_in_compute_dtype_rebuilds_with_the_same_weights_and_a_float32_softmax():
    import keras  # pylint: disable=g-import-not-at-top
    from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
    from trainer.serving import compute_dtype as dtype_lib  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(1)
    model = model_lib.build_model(3, image_size=(32, 32), num_frames=3, cut_layer="block1_pool",
                                  weights="none", rnn="gru", rnn_units=4)
    assert dtype_lib.in_compute_dtype(model, "float32") is model
    bf16 = dtype_lib.in_compute_dtype(model, "bfloat16")
    base = model_lib.base_of(bf16)
    assert base.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert base.get_layer("block1_conv1").kernel.dtype == "float32"  # weights stay float32
    assert bf16.get_layer("vgg_preprocess").compute_dtype == "bfloat16"
    assert bf16.get_layer("probabilities").compute_dtype == "float32"
    assert bf16.input.dtype == "uint8" and bf16.output.dtype == "float32"
    assert model.get_layer("gru").compute_dtype == "float32"  # the original is unchanged
    for ours, theirs in zip(bf16.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    clips = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(bf16(clips).numpy(), model(clips).numpy(), atol=0.02)


def test_mixed_precision_warning_per_machine():
    warn = precision.mixed_precision_warning
    assert warn("bf16", cpuinfo_text=EPYC_GENOA, compute_capabilities=[]) == ""
    assert warn("bf16", cpuinfo_text=INTEL_SPR, compute_capabilities=[]) == ""
    assert "a CPU without avx512_bf16 or AMX" in warn("bf16", cpuinfo_text=OLD_XEON,
                                                      compute_capabilities=[])
    assert warn("bf16", cpuinfo_text=OLD_XEON, compute_capabilities=[(9, 0)]) == ""
    assert "compute capability < 8.0" in warn("bf16", cpuinfo_text=EPYC_GENOA,
                                              compute_capabilities=[(7, 5)])
    assert "on CPU it is slow" in warn("fp16", cpuinfo_text=INTEL_SPR, compute_capabilities=[])
    assert warn("fp16", compute_capabilities=[(7, 5)]) == ""
    assert warn("bf16", tpu=True, cpuinfo_text=OLD_XEON, compute_capabilities=[]) == ""
    assert warn("none", cpuinfo_text=OLD_XEON, compute_capabilities=[]) == ""


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "recs"
    synthetic_records.write_dataset(path, num_plays=3, num_frames=3, size=32, splits=("train",),
                                    num_shards=1)
    return str(path)


def _embed(records_dir, out, dtype):
    return embed_records.run([f"--records_dir={records_dir}", f"--output_dir={out}",
                              "--weights=none", "--seed=5", "--cut_layer=block2_pool",
                              "--feature_dtype=float32", f"--compute_dtype={dtype}"])


def _features(out):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    paths = sorted(glob.glob(os.path.join(out, "train-*.tfrecord")))
    records = (feature_record.decode_features(r.numpy()) for r in tf.data.TFRecordDataset(paths))
    return {r.play_id: r.features[0] for r in records}


def test_bf16_features_are_within_cosine_of_float32(records_dir, tmp_path):
    cards = {dtype: _embed(records_dir, str(tmp_path / dtype), dtype)
             for dtype in ("float32", "bfloat16")}
    assert cards["float32"].compute_dtype == "float32"
    assert cards["bfloat16"].compute_dtype == "bfloat16"
    assert embed_records.read_card(str(tmp_path / "bfloat16")).compute_dtype == "bfloat16"
    f32, bf16 = _features(str(tmp_path / "float32")), _features(str(tmp_path / "bfloat16"))
    assert sorted(f32) == sorted(bf16) and len(f32) == 3
    a = np.concatenate([f32[k] for k in sorted(f32)])  # [plays * frames, dim]
    b = np.concatenate([bf16[k] for k in sorted(bf16)])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.995, cosine
    assert not np.array_equal(a, b)  # bf16 did compute in bf16


def test_auto_is_recorded_resolved_and_old_cards_read_as_float32(records_dir, tmp_path):
    card = _embed(records_dir, str(tmp_path / "auto"), "auto")
    assert card.compute_dtype == precision.resolve_compute_dtype("auto")
    data = json.loads(card.to_json())
    del data["compute_dtype"]  # a card from before the flag
    assert features_card.FeaturesCard.from_json(json.dumps(data)).compute_dtype == "float32"


def test_gpu_check_without_a_gpu_says_so_and_exits_0():
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: gpu_check measures instead")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "gpu_check.py")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "gpu_check: no GPU on this machine (tf.config.list_physical_devices('GPU') is empty); "
        "nothing to measure"]
