"""JOB_DIR/model.keras loads with `safe_mode=True` in a Python that has Keras but not playclips.

The loading runs in a subprocess, isolated (`python -I`, an empty working
folder, no PYTHONPATH) with an import hook that makes every playclips package
unimportable, including through the editable install's finder; the hook is
checked: a model with the custom `VGGPreprocess` layer fails to load there.
"""

import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from backbone import vgg16  # noqa: E402
from trainer.modeling.config import HEADS  # noqa: E402
from trainer.modeling import model as model_lib  # noqa: E402
from trainer.serving import export  # noqa: E402

SIZE = 32
PROJECT_PACKAGES = ("schemas", "media", "backbone", "demo_data", "beam_jobs", "trainer")

LOAD_WITHOUT_PLAYCLIPS = textwrap.dedent("""
    import importlib.abc, json, os, sys
    blocked = set(sys.argv[1].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"{name} is blocked", name=name)
            return None

    sys.meta_path.insert(0, Block())
    for name in blocked:
        try:
            __import__(name)
        except ImportError:
            continue
        raise SystemExit(f"the block failed: {name} imports")
    import keras, numpy as np
    results = {}
    for path in sys.argv[2:]:
        try:
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as err:
            results[path] = "error: " + str(err)
            continue
        data = np.load(path + ".npz")
        got = np.asarray(model(data["x"], training=False))
        results[path] = float(np.abs(got - data["y"]).max())
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
    print(json.dumps({"results": results, "leaked": leaked}))
""")


def _save_with_inputs(model, path, frames=4, seed=0, saved=False):
    """Saves `model` at `path` (unless `saved`) and inputs and outputs beside it, path.npz."""
    x = np.random.default_rng(seed).integers(0, 256, (2, frames, SIZE, SIZE, 3), dtype=np.uint8)
    if not saved:
        model.save(path)
    np.savez(path + ".npz", x=x, y=np.asarray(model(x, training=False)))
    return path


def _load_without_playclips(tmp_path, paths):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_WITHOUT_PLAYCLIPS, ",".join(PROJECT_PACKAGES), *paths],
        cwd=str(empty), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    import json  # pylint: disable=g-import-not-at-top
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_exported_classifiers_load_without_playclips(tmp_path):
    paths = []
    for head in HEADS:
        keras.utils.set_random_seed(0)
        model = model_lib.build_model(3, image_size=(SIZE, SIZE), cut_layer="block1_pool",
                                      weights="none", head=head, rnn="gru", rnn_units=4,
                                      max_frames=4)
        if head == "single_frame":  # through the export itself
            meta = export.export_model(model, str(tmp_path / "job"), labels=["a", "b", "c"],
                                       image_size=SIZE, num_frames=4)
            paths.append(_save_with_inputs(model, meta["model_path"], saved=True))
        else:
            paths.append(_save_with_inputs(model, str(tmp_path / f"{head}.keras")))
    # A model with a custom layer must fail there: the block works.
    inputs = keras.Input((None, SIZE, SIZE, 3), dtype="uint8")
    pooled = keras.layers.GlobalAveragePooling3D()(vgg16.VGGPreprocess()(inputs))
    custom = _save_with_inputs(keras.Model(inputs, pooled), str(tmp_path / "custom.keras"))

    report = _load_without_playclips(tmp_path, paths + [custom])
    assert report["leaked"] == []
    results = report["results"]
    assert "VGGPreprocess" in str(results.pop(custom))
    for path, difference in results.items():
        assert isinstance(difference, float), (path, difference)
        assert difference < 1e-6, (path, difference)
