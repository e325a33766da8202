"""Hyperparameter tuning: `python -m trainer.tune` (KerasTuner) and the Vertex AI trial's report.

The feature cache is test_train_from_features's tiny demo path with a test
split, whose shards are then overwritten with bytes that no reader accepts: a
search (and a trial's trainer run) that read the test split would fail.
"""
import csv
import json
import os
import shlex

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import yaml  # noqa: E402

from beam_jobs import embed_records, make_records  # noqa: E402
from trainer import task, tune  # noqa: E402
from trainer.data import sources  # noqa: E402
from trainer.training import hypertune  # noqa: E402
from trainer.training import train as train_lib  # noqa: E402
from trainer.tuning import runner  # noqa: E402
from trainer.tuning import space as space_lib  # noqa: E402
from trainer.tuning import vertex  # noqa: E402
from tests.test_train_from_features import CUT  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED = ["--strategy=default", "--seed=1"]
# The first trial (today's settings, say): a search starts from it.
FIRST = ("--first_trial=--head=mean_pool --rnn_units=32 --num_frames=4 --dropout=0.125 "
         "--learning_rate=0.002 --batch_size=16")


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    """30 demo plays (3 games) of 8 frames at 32 px, 10 per split, embedded; test unreadable."""
    root = tmp_path_factory.mktemp("tune")
    records, features = str(root / "records"), str(root / "features")
    make_records.run([f"--output_dir={records}", "--demo_plays=30", "--num_frames=8",
                      "--frame_size=32", "--num_shards=1", "--splits=train=0.34,val=0.33,test=0.33"])
    embed_records.run([f"--records_dir={records}", f"--output_dir={features}", "--weights=none",
                       f"--cut_layer={CUT}", "--seed=3"])
    test_files = sources.split_files(records, "test")
    test_files += tf.io.gfile.glob(os.path.join(features, "test-*.tfrecord"))
    assert len(test_files) == 2 and sources.load_features_card(features).counts["test"] > 0
    for path in test_files:
        with open(path, "wb") as f:
            f.write(b"not a TFRecord: the test split must not be read while tuning\n" * 4)
    with pytest.raises(tf.errors.DataLossError):  # what reading it would do
        list(tf.data.TFRecordDataset(test_files))
    return features


def _tune(features, out, *extra):
    return tune.run([f"--features_dir={features}", f"--output_dir={out}", "--max_trials=2",
                     "--epochs=2", *FIXED, *extra])


def _search(features, out):  # the full test's search: its first trial given
    return _tune(features, out, FIRST)


def _summary(stdout):
    return dict(line.split("=", 1) for line in stdout.splitlines()
                if "=" in line and line.split("=", 1)[0].isidentifier() and " " not in line)


def test_search_writes_its_outputs_resumes_and_never_reads_test(features_dir, tmp_path,
                                                                monkeypatch, capsys):
    out = tmp_path / "search"
    real_train, configs = train_lib.train, []

    def killed(config):  # the first trial is killed before it trains
        configs.append(config)
        raise KeyboardInterrupt

    def counted(config):
        configs.append(config)
        return real_train(config)

    monkeypatch.setattr(train_lib, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        _search(features_dir, out)
    killed_config = configs.pop()

    monkeypatch.setattr(train_lib, "train", counted)
    capsys.readouterr()
    assert _search(features_dir, out) == 0
    summary = _summary(capsys.readouterr().out)
    assert len(configs) == 2 and summary["trials"] == "2" and summary["trials_run"] == "2"
    # The killed trial ran again with its own values, in its own job folder.
    assert configs[0].model == killed_config.model and configs[0].training == killed_config.training
    assert configs[0].runtime.job_dir == killed_config.runtime.job_dir
    for config in configs:  # a trial evaluates nothing at the end and exports nothing
        assert config.evaluation.eval_split == "none" and not config.evaluation.export
        assert not os.path.exists(os.path.join(config.runtime.job_dir, "eval.json"))
        assert not os.path.exists(os.path.join(config.runtime.job_dir, "model.keras"))

    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["COMPLETED", "COMPLETED"]
    assert set(space_lib.TUNED) <= set(rows[0]) and rows[0]["epochs"] == "2"
    assert {k: rows[0][k] for k in space_lib.TUNED} == {  # the first trial: --first_trial's
        "head": "mean_pool", "rnn_units": "32", "num_frames": "4", "dropout": "0.125",
        "learning_rate": "0.002", "batch_size": "16"}
    accuracies = [float(row["val_accuracy"]) for row in rows]
    assert float(summary["best_val_accuracy"]) == pytest.approx(max(accuracies), abs=1e-4)
    assert (out / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # best_flags.txt: one command, parsed by the trainer's own parser into the best trial's config.
    lines = (out / "best_flags.txt").read_text().splitlines()
    words = shlex.split(lines[0])
    assert len(lines) == 1 and words[:3] == ["python", "-m", "trainer.task"]
    best_config = task.parse_args(words[3:]).validate()
    best = configs[int(summary["best_trial"])]
    assert best_config.model == best.model and best_config.training == best.training
    assert best_config.data == best.data
    assert best_config.evaluation.eval_split == "test" and best_config.evaluation.export
    trained = json.loads((tmp_path / best.runtime.job_dir / "config.json").read_text())
    assert trained["config"]["model"] == best_config.to_dict()["model"]
    # The trial left the test split out (the features card has one: see the fixture).
    assert trained["resolved"]["test_files"] == [] and trained["resolved"]["num_test"] == 0

    # A second run with the same OUTPUT_DIR runs no finished trial again.
    configs.clear()
    assert _search(features_dir, out) == 0
    summary = _summary(capsys.readouterr().out)
    assert configs == [] and summary["trials_run"] == "0" and summary["trials"] == "2"
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


@pytest.mark.parametrize("args,message", [
    (["--features_dir={tmp}/none", "--output_dir={tmp}/out"], "no features.json"),
    (["--features_dir={features}", "--output_dir={tmp}/out", "--max_trials=0"], "--max_trials"),
    (["--features_dir={features}", "--output_dir={tmp}/out", "--max_trials=two"], "--max_trials"),
    (["--features_dir={features}", "--output_dir={tmp}/out", "--head=rnn"], "--head is set by"),
    (["--features_dir={features}", "--output_dir={tmp}/out", "--epoch=3"], "unknown trainer flag"),
    (["--output_dir={tmp}/out"], "no --features_dir"),
    (["--features_dir={features}", "--output_dir={tmp}/out", "--first_trial=--head=rnn"],
     "--first_trial needs each tuned flag once"),
    (["--features_dir={features}", "--output_dir={tmp}/out", FIRST.replace("=32", "=33")],
     "--rnn_units=33 is outside the search space"),
    (["--features_dir={features}", "--output_dir={tmp}/out", "--tuner=hyperband", FIRST],
     "--first_trial needs --tuner=bayesian"),
])
def test_usage_errors_are_one_line(features_dir, tmp_path, capsys, args, message):
    argv = [a.format(tmp=tmp_path, features=features_dir) for a in args]
    assert tune.run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_vertex_trial_reports_val_accuracy_through_hypertune(features_dir, tmp_path,
                                                               monkeypatch):
    """cloudml-hypertune writes JSON lines to $CLOUD_ML_HP_METRIC_FILE (Vertex AI sets it in a
    trial): one per epoch, the epoch's val_accuracy. --eval_split=val evaluates val, not test."""
    metrics = tmp_path / "hypertune" / "output.metrics"
    assert not hypertune.enabled(False, {}) and hypertune.enabled(True, {})
    assert hypertune.enabled(False, {"CLOUD_ML_TRIAL_ID": "3"})
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metrics))
    job = tmp_path / "job"
    assert task.run([f"--features_dir={features_dir}", f"--job_dir={job}", "--epochs=2",
                     "--rnn_units=8", "--num_frames=4", "--batch_size=4", *FIXED,
                     "--eval_split=val", "--export=false"]) == 0
    reports = [json.loads(line) for line in metrics.read_text().splitlines()]
    with open(job / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [r["global_step"] for r in reports] == ["1", "2"]
    assert [float(r["val_accuracy"]) for r in reports] == pytest.approx(
        [float(row["val_accuracy"]) for row in history])
    assert json.loads((job / "eval.json").read_text())["split"] == "val"
    assert not (job / "model.keras").exists()


def test_vertex_config_is_the_search_space():
    """vertex/hp_tuning.yaml is what trainer/tuning/vertex.py generates from the space, and
    every trial it can start parses with the trainer's parser."""
    with open(os.path.join(ROOT, "vertex", "hp_tuning.yaml")) as f:
        text = f.read()
    assert text == vertex.config_yaml(), "regenerate it (trainer/tuning/vertex.py's docstring)"
    job = yaml.safe_load(text)
    space = space_lib.search_space(vertex.STORED_FRAMES)
    parameters = {p["parameterId"]: p for p in job["studySpec"]["parameters"]}
    assert list(parameters) == list(space_lib.TUNED)
    assert job["studySpec"]["metrics"] == [{"metricId": "val_accuracy", "goal": "MAXIMIZE"}]
    args = [a.replace("FEATURES_DIR", "gs://b/f").replace("EPOCHS", "3")
            for a in job["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]]
    assert "--hypertune" in args and "--eval_split=none" in args
    for param in space:
        spec = parameters[param.flag]
        if param.is_range:
            assert spec["doubleValueSpec"] == {"minValue": param.low, "maxValue": param.high}
            assert spec["scaleType"] == ("UNIT_LOG_SCALE" if param.log else "UNIT_LINEAR_SCALE")
            values = [param.low, param.high]
        else:
            values = spec["categoricalValueSpec"]["values"]
            assert values == [str(v) for v in param.values]
        for value in values:  # Vertex AI appends --flag=value to the trial's arguments
            config = task.parse_args([*args, f"--{param.flag}={value}", "--job_dir=gs://b/j"])
            flat = {k: v for section in config.validate().to_dict().values()
                    for k, v in section.items()}
            expected = value if param.is_range else type(param.values[0])(value)
            assert flat[param.flag] == expected


def test_space_frames_and_exact_flag_values():
    assert space_lib.frame_choices(8) == (4, 8)
    assert space_lib.frame_choices(40) == (4, 8, 16, 32, 40)
    assert space_lib.frame_choices(3) == (3,)
    value = 0.1 + 0.2  # not 0.3: the flag must give back this very float
    flags = space_lib.trial_flags({"head": "rnn", "rnn_units": 32, "num_frames": 4,
                                   "dropout": value, "learning_rate": 1e-3, "batch_size": 8})
    config = task.parse_args([*flags, "--features_dir=x", "--job_dir=y"])
    assert config.model.dropout == value and config.model.rnn_units == 32


def test_a_search_resumes_only_with_its_settings(features_dir, tmp_path, capsys):
    out = tmp_path / "search"
    out.mkdir()
    (out / "search.json").write_text(json.dumps({
        "features_dir": features_dir, "tuner": "hyperband", "epochs": 2, "seed": 0,
        "fixed_flags": FIXED}))
    assert _tune(features_dir, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a search with other settings (tuner='hyperband')" in err[0]
    assert not (out / "keras_tuner").exists()


def test_hyperband_trials_train_for_its_epochs():
    options = runner.SearchOptions("feats", "out", epochs=9, tuner="hyperband",
                                   fixed_flags=("--seed=1",))
    values = {"head": "rnn", "rnn_units": 32, "num_frames": 4, "dropout": 0.0,
              "learning_rate": 1e-3, "batch_size": 8, "tuner/epochs": 3, "tuner/round": 0}
    flags = runner.trial_command(options, values)
    assert flags[:2] == ["--features_dir=feats", "--seed=1"] and flags[-1] == "--epochs=3"
    config = runner.trial_config(options, values, "job")
    assert config.training.epochs == 3 and config.evaluation.eval_split == "none"
    assert runner.initial_points(10, 6) == 3 and runner.initial_points(2, 6) == 2
    assert runner.initial_points(100, 6) == 18
