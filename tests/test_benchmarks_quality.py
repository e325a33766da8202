"""benchmarks/quality.py and benchmarks/transfer.py, run as commands at tiny sizes.

Real processes, real records and embed jobs, real model.fit: 30-60 demo plays at 32 px,
6 stored frames, 4-frame clips, 1 epoch.
"""
import os
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITY = os.path.join(ROOT, "benchmarks", "quality.py")
TRANSFER = os.path.join(ROOT, "benchmarks", "transfer.py")

DEMO_KEYS = ("test_plays", "clip_accuracy", "play_accuracy", "play_accuracy_ci_low",
             "play_accuracy_ci_high", "macro_f1", "mean_pool_play_accuracy",
             "single_frame_play_accuracy", "misc_transition_rnn", "misc_transition_mean_pool",
             "tuned_play_accuracy", "tuned_play_accuracy_ci_low", "tuned_play_accuracy_ci_high",
             "tuned_flags", "tune_s", "tune_trials", "tuned_ci_low_above_default_ci_high")
METHODS = ("none", "balanced", "sampling", "logit_adjusted")
IMBALANCED_KEYS = ("minority_labels", "minority_test_plays", "balanced_test_plays",
                   "minority_recall_best", "minority_recall_best_method",
                   "minority_recall_best_ci_low", "minority_recall_best_ci_high") + tuple(
    key.format(method) for method in METHODS
    for key in ("minority_recall_{}", "minority_recall_{}_ci_low", "minority_recall_{}_ci_high",
                "mean_per_class_recall_{}", "macro_f1_{}", "skewed_minority_recall_{}"))


def _run(*argv, env=None):
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=2400, env={**os.environ, **(env or {})})


def _values(stdout):
    return dict(re.findall(r"^([a-z0-9_]+)=(.*)$", stdout, re.M))


TINY = ("--plays=40", "--record_frames=6", "--num_frames=4", "--epochs=1", "--eval_views=2",
        "--workers=1")


def test_quality_hard_preset_prints_every_key_and_the_tuned_settings(tmp_path):
    # 4 games: one train, two val (the tuner scores its trials on val), one test.
    got = _run(QUALITY, "--preset=hard", *TINY, "--splits=train=0.3,val=0.2,test=0.5",
               "--tune_trials=1", "--tune_epochs=1", f"--work_dir={tmp_path}")
    assert got.returncode == 0, got.stderr[-3000:]
    values = _values(got.stdout)
    assert [k for k in ("hard_" + k for k in DEMO_KEYS) if k not in values] == []
    for key in ("hard_play_accuracy", "hard_bigru128_play_accuracy", "hard_tuned_play_accuracy",
                "hard_misc_transition_rnn"):
        assert values[key] == "nan" or 0.0 <= float(values[key]) <= 1.0
    assert 0 < int(values["hard_test_plays"]) < 40 and int(values["hard_val_plays"]) > 0
    assert values["hard_tune_trials"] == "1" and "--head=" in values["hard_tuned_flags"]
    for step in ("hard_records_s", "hard_embed_s", "hard_train_s_rnn", "hard_train_s_bigru128",
                 "hard_train_s_tuned", "hard_load_avg_start"):
        assert step in values
    # The tuned model trained as best_flags.txt says, evaluated on the same test plays.
    with open(os.path.join(tmp_path, "hard", "tune", "best_flags.txt")) as f:
        assert values["hard_tuned_flags"].split()[0] in f.read()
    assert os.path.exists(os.path.join(tmp_path, "hard", "job_tuned", "eval.json"))


def test_quality_imbalanced_preset_prints_every_key(tmp_path):
    got = _run(QUALITY, "--preset=imbalanced", *TINY, "--balanced_test_plays=22",
               f"--work_dir={tmp_path}")
    assert got.returncode == 0, got.stderr[-3000:]
    values = _values(got.stdout)
    assert [k for k in IMBALANCED_KEYS if k not in values] == []
    assert values["minority_labels"] == "cut,putback"
    assert values["macro_f1_balanced"] == "nan" or 0.0 <= float(values["macro_f1_balanced"]) <= 1
    assert "train_s_balanced" in values and "load_avg_start" in values
    # The records are the preset's own: mostly spot_up.
    assert "spot_up:" in values["train_label_counts"]
    # The long-tail methods are scored on the balanced test set: 2 plays of each of 11 labels.
    assert values["balanced_test_plays"] == "22" and values["minority_test_plays"] == "4"
    assert values["minority_recall_best_method"] in METHODS
    assert (float(values["minority_recall_best_ci_low"]) <= float(values["minority_recall_best"])
            <= float(values["minority_recall_best_ci_high"]))


def test_misc_transition_accuracy_from_the_confusion_matrix():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import quality  # pylint: disable=import-outside-toplevel
    labels = ["a", "misc", "transition"]
    level = {"confusion_matrix": [[5, 0, 0], [1, 3, 2], [0, 4, 6]]}
    assert quality.subset_accuracy(level, labels, quality.PAIR) == (9, 16)
    assert quality.subset_accuracy(level, labels, ["a"]) == (5, 5)


@pytest.fixture(scope="module")
def tiny_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer_records")
    got = _run(os.path.join(ROOT, "beam_jobs", "make_records.py"), f"--output_dir={out}",
               "--demo_plays=30", "--frame_size=32", "--num_frames=6", "--num_shards=1")
    assert got.returncode == 0, got.stderr[-2000:]
    return str(out)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    import keras  # pylint: disable=import-outside-toplevel
    path = str(tmp_path_factory.mktemp("weights") / "vgg16_random.weights.h5")
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    return path


def test_transfer_table_rows_columns_and_picture(tiny_records, weights_file, tmp_path):
    out = tmp_path / "transfer"
    got = _run(TRANSFER, f"--records_dir={tiny_records}", f"--weights={weights_file}",
               f"--output_dir={out}", "--epochs=1", "--num_frames=4", "--rnn_units=8",
               "--eval_views=1", "--workers=1")
    assert got.returncode == 0, got.stderr[-3000:]
    table = (out / "transfer.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| row | play accuracy (n, 95% CI) | macro-F1 (95% CI) | embed s | train s")
    names = [r.split("|")[1].strip() for r in rows[1:]]
    assert names == ["frozen block3_pool", "frozen block4_pool", "frozen block5_pool",
                     "fine-tune block5 (from the block5_pool head)", "all trainable from --weights",
                     "from scratch (none)"]
    assert all(len(r.split("|")) == 8 for r in rows[1:])
    for r in rows[1:]:
        accuracy = re.match(r"([\d.]+) \((\d+), ([\d.]+)-([\d.]+)\)", r.split("|")[2].strip())
        assert accuracy and float(accuracy[3]) <= float(accuracy[1]) <= float(accuracy[4])
    values = _values(got.stdout)
    assert float(values["frozen_block3_pool_embed_s"]) > 0 and values["scratch_embed_s"] == "0.0"
    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(out / "transfer.png") > 5000


def test_transfer_without_imagenet_weights_says_where_the_file_goes(tiny_records, tmp_path):
    got = _run(TRANSFER, f"--records_dir={tiny_records}", "--weights=imagenet",
               f"--output_dir={tmp_path / 'out'}", env={"KERAS_HOME": str(tmp_path / "keras")})
    assert got.returncode == 2
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot get the ImageNet VGG16 weights")
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in lines[0]
    assert not (tmp_path / "out").exists()
