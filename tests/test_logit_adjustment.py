"""--class_weight=logit_adjusted: the loss by hand, a real fit on tiny cached features (two CPU
replicas under MirroredStrategy), and an export that predicts with plain logits."""
import json
import math
import os
import subprocess
import sys
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from beam_jobs import make_records  # noqa: E402
from trainer import task  # noqa: E402
from trainer.training import losses  # noqa: E402
from tests.test_train_from_features import HEAD, demo_dirs  # noqa: E402,F401  (the fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    return z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(
        -1, keepdims=True)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_loss_is_cross_entropy_of_the_adjusted_logits(tau):
    counts = (6, 3, 1)
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-3.0, 4.0, 1.0]], np.float32)
    labels = np.array([0, 2, 1])
    loss = losses.build_loss("logit_adjusted", counts, tau)
    priors = np.array(counts) / sum(counts)
    expected = -np.mean([_log_softmax(z + tau * np.log(priors))[y] for z, y in zip(logits, labels)])
    # From the softmax's logits (as the model's output carries them) and from probabilities alone.
    probabilities = keras.activations.softmax(tf.constant(logits))
    assert float(loss(labels, probabilities)) == pytest.approx(expected, rel=1e-5)
    plain = tf.constant(np.exp(_log_softmax(logits)), tf.float32)
    assert not hasattr(plain, "_keras_logits")
    assert float(loss(labels, plain)) == pytest.approx(expected, rel=1e-4)
    # tau * log(prior) by hand for the first play: the rare label gains, the common one loses.
    adjusted = logits[0] + tau * np.array([math.log(0.6), math.log(0.3), math.log(0.1)])
    assert -_log_softmax(adjusted)[0] == pytest.approx(-_log_softmax(logits[0] + tau * np.log(
        priors))[0])
    assert losses.build_loss("none").name != loss.name  # the plain loss otherwise


def test_loss_in_a_compiled_graph_and_its_config():
    loss = losses.LogitAdjustedCrossentropy(losses.log_priors_of((3, 1)), tau=1.0)
    inputs = keras.Input((2,))
    outputs = keras.layers.Activation("softmax", dtype="float32")(
        keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer="zeros")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss=loss)
    got = model.evaluate(np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), verbose=0)
    # Logits 0: adjusted to log(3/4), log(1/4); the mean loss over labels 0, 1 twice.
    expected = -0.5 * (math.log(0.75) + math.log(0.25))
    assert got == pytest.approx(expected, rel=1e-5)
    again = losses.LogitAdjustedCrossentropy.from_config(loss.get_config())
    assert again.offsets == pytest.approx(loss.offsets) and again.tau == 1.0
    with pytest.raises(ValueError):
        losses.log_priors_of((3, 0))


def test_logit_adjusted_fit_on_features_exports_plain_softmax(demo_dirs, tmp_path):  # noqa: F811
    records, features = demo_dirs
    job = tmp_path / "job"
    # Its own process: two CPU replicas need TensorFlow's devices before any op runs.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    env.pop("TF_CONFIG", None)
    got = subprocess.run(
        [sys.executable, "-m", "trainer.task", f"--features_dir={features}", f"--job_dir={job}",
         "--strategy=mirrored", "--cpu_replicas=2", "--epochs=2", *HEAD,
         "--class_weight=logit_adjusted", "--logit_adjustment_tau=1.5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stderr[-3000:]
    resolved = json.loads((job / "config.json").read_text())["resolved"]
    counts = make_records.read_card(records).label_counts["train"]
    total = sum(counts.values())
    assert resolved["logit_adjustment"]["tau"] == 1.5
    assert resolved["logit_adjustment"]["priors"] == pytest.approx(
        {label: count / total for label, count in counts.items()})
    assert resolved["num_replicas"] == 2
    history = (job / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "nan" not in history[-1]
    # The export holds no loss of ours and loads in safe mode; its output is the softmax of its
    # own logits layer (no offsets), one probability vector per clip.
    with zipfile.ZipFile(job / "model.keras") as archive:
        assert b"logit_adjusted" not in archive.read("config.json")
    model = keras.saving.load_model(str(job / "model.keras"), safe_mode=True, compile=False)
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    clips = np.random.default_rng(0).integers(0, 256, (3, 4, 32, 32, 3)).astype(np.uint8)
    probabilities = np.asarray(model(clips, training=False))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, np.exp(_log_softmax(logits_model(clips))),
                               rtol=1e-4, atol=1e-6)


def test_flags_in_help_and_checked(capsys, tmp_path):
    with pytest.raises(SystemExit):
        task.run(["--help"])
    text = capsys.readouterr().out
    assert "logit_adjusted" in text and "--logit_adjustment_tau" in text
    common = [f"--data_dir={tmp_path}", f"--job_dir={tmp_path / 'job'}"]
    assert task.run([*common, "--class_weight=balanced", "--logit_adjustment_tau=2"]) == 2
    assert "--logit_adjustment_tau is a setting of" in capsys.readouterr().err
    assert task.run([*common, "--class_weight=logit_adjusted", "--balanced_sampling"]) == 2
    assert "--class_weight=logit_adjusted and --balanced_sampling" in capsys.readouterr().err
