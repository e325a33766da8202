"""benchmarks/cpu_runtimes.py as a command at a tiny size (32 px, VGG16 to block1_pool, 2 frames).

The TensorFlow keys always; OpenVINO's and nncf's only where they are installed (they are not
playclips dependencies, CI does not install them).
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "cpu_runtimes.py")
TINY = ("--size=32", "--cut_layer=block1_pool", "--frames=2", "--repeats=1",
        "--calibration_frames=2", "--demo_job=")


def _values(*candidates):
    done = subprocess.run([sys.executable, SCRIPT, *TINY, f"--candidates={','.join(candidates)}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(re.findall(r"^([a-z0-9_]+)=(.*)$", done.stdout, re.M))


def _check_candidate(values, name):
    assert float(values[f"frames_per_s_{name}"]) > 0
    assert re.fullmatch(r"\[[0-9.]+,[0-9.]+\]", values[f"frames_per_s_{name}_range"])
    if name != "tf_float32":
        assert float(values[f"speedup_{name}_vs_tf_float32"]) > 0
        assert 0.9 <= float(values[f"feature_cosine_{name}_mean"]) <= 1.0
        assert f"feature_centered_cosine_{name}_min" in values


def test_tensorflow_dtypes_print_their_figures():
    values = _values("tf_float32", "tf_bfloat16")
    assert values["cpu_model"] and values["cpu_flags"] and values["settings"] == (
        "32px_block1_pool_batch2")
    for name in ("tf_float32", "tf_bfloat16"):
        _check_candidate(values, name)
    assert "wins_clearly" not in values  # no other runtime ran


def test_openvino_f32_and_int8_print_their_figures_and_the_verdict():
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    values = _values("tf_float32", "openvino_f32", "openvino_int8")
    for name in ("tf_float32", "openvino_f32", "openvino_int8"):
        _check_candidate(values, name)
    assert values["best_tf"] == "tf_float32"
    assert values["best_other"] in ("openvino_f32", "openvino_int8")
    assert values["wins_clearly"] in ("True", "False")
