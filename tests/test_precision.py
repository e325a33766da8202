"""Compute dtypes: which machines run bf16 natively, the embed job's --compute_dtype (card,
features within cosine 0.995 of float32's) and the trainer's mixed precision warning.
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
