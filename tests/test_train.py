"""trainer.task / trainer.training.train end to end: mirrored on CPU replicas, kill and resume, multi-worker,
fine-tune phase, and the CLI's one-line errors. Real subprocesses, real fits on tiny settings."""
import csv
import glob
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from demo_data import synthetic_records as record_fixtures  # noqa: E402
from trainer.modeling import model as model_lib  # noqa: E402
from trainer.training import callbacks, train  # noqa: E402
from trainer import logs, task  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--cut_layer=block1_pool", "--weights=none", "--rnn_units=8", "--num_frames=4",
        "--dropout=0"]


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _task(args, **popen):
    return subprocess.Popen([sys.executable, "-m", "trainer.task", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _history(job_dir):
    with open(os.path.join(job_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def _epoch_lines(output):
    return [line for line in output.splitlines() if line.startswith("epoch ")]


def test_mirrored_cpu_replicas_end_to_end(data_dir, tmp_path):
    job = str(tmp_path / "job")
    proc = _task([f"--data_dir={data_dir}", f"--job_dir={job}", "--strategy=mirrored",
                  "--cpu_replicas=2", "--epochs=2", "--batch_size=4", *TINY], env=_env())
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    assert "with 2 replica(s)" in out
    assert [line.split()[1] for line in _epoch_lines(out)] == ["1/2", "2/2"]
    assert [row["epoch"] for row in _history(job)] == ["0", "1"]
    for name in ("checkpoints/best.weights.h5", "checkpoints/last.weights.h5", "config.json",
                 "eval.json", "confusion_matrix.png", "model.keras", "saved_model/saved_model.pb"):
        assert os.path.exists(os.path.join(job, name)), name
    assert glob.glob(os.path.join(job, "logs", "train", "events.out.tfevents.*"))
    with open(os.path.join(job, "config.json")) as f:
        config = json.load(f)
    assert config["config"]["runtime"]["strategy"] == "mirrored"
    assert config["config"]["runtime"]["cpu_replicas"] == 2
    assert config["resolved"]["num_replicas"] == 2
    assert config["resolved"]["labels"] == ["pick_and_roll", "isolation"]
    with open(os.path.join(job, "eval.json")) as f:
        report = json.load(f)
    assert report["num_examples"] == 8 and report["accuracy"] == report["play"]["accuracy"]
    play = report["play"]
    assert (f"test play accuracy {play['accuracy']:.3f} (n=8, 95% CI {play['accuracy_ci_low']:.3f}-"
            f"{play['accuracy_ci_high']:.3f}), macro-F1 {play['macro_f1']:.2f}") in out
    assert f"test clip accuracy {report['clip']['accuracy']:.3f} (n=8" in out
    model = keras.models.load_model(os.path.join(job, "model.keras"))
    probs = model.predict(np.zeros((1, 5, 32, 32, 3), np.uint8), verbose=0)
    assert probs.shape == (1, 2)


def _completed_epochs(job):
    done = 0
    for phase in ("phase1", "phase2"):
        path = os.path.join(job, "backup", phase, "state.json")  # epoch-end backups: step 0
        try:
            with open(path) as f:
                done = max(done, json.load(f)["epoch"])
        except (OSError, ValueError):
            pass
    return done


def test_kill_and_resume_across_the_fine_tune_boundary(data_dir, tmp_path):
    job = str(tmp_path / "job")
    args = [f"--data_dir={data_dir}", f"--job_dir={job}", "--strategy=default", "--epochs=2",
            "--fine_tune_epochs=2", "--fine_tune_from=block1_conv2", "--steps_per_epoch=30",
            "--batch_size=2", *TINY]
    proc = _task(args, env=_env())
    deadline = time.monotonic() + 180
    # Kill once the head phase is done: the restart must skip it (weights and optimizer
    # restored from its backup) and continue in the fine-tune phase.
    while _completed_epochs(job) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    first_out, _ = proc.communicate(timeout=30)
    done = _completed_epochs(job)
    assert 2 <= done < 4, f"killed at {done} epochs; output:\n{first_out[-3000:]}"
    rows_before = len(_history(job))

    proc = _task(args, env=_env())  # the same command again
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    lines = _epoch_lines(out)
    assert [line.split()[1] for line in lines] == [f"{e}/4" for e in range(done + 1, 5)], lines
    assert lines[-1].startswith("epoch 4/4 [fine_tune]")
    assert [int(row["epoch"]) for row in _history(job)[rows_before:]] == list(range(done, 4))
    assert os.path.exists(os.path.join(job, "model.keras"))
    assert not os.path.exists(os.path.join(job, "backup", "phase1"))
    assert not os.path.exists(os.path.join(job, "backup", "phase2"))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_multi_worker_two_processes(data_dir, tmp_path):
    job = str(tmp_path / "job")
    cluster = {"chief": [f"localhost:{_free_port()}"], "worker": [f"localhost:{_free_port()}"]}
    args = [f"--data_dir={data_dir}", f"--job_dir={job}", "--strategy=multi_worker", "--epochs=2",
            "--batch_size=4", *TINY]
    procs, temps = {}, {}
    for task_type in ("chief", "worker"):
        temps[task_type] = tmp_path / f"tmp_{task_type}"
        temps[task_type].mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}})
        procs[task_type] = _task(args, env=_env(TF_CONFIG=tf_config, TMPDIR=str(temps[task_type])))
    outs = {}
    try:
        for task_type, proc in procs.items():
            outs[task_type], _ = proc.communicate(timeout=300)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for task_type, proc in procs.items():
        assert proc.returncode == 0, f"{task_type}:\n{outs[task_type][-3000:]}"
    assert "with 2 replica(s)" in outs["chief"]
    assert "test play accuracy" in outs["chief"] and "test play accuracy" not in outs["worker"]
    # Only the chief logs the per-epoch lines (--log_all_workers: every worker).
    assert len(_epoch_lines(outs["chief"])) == 2 and _epoch_lines(outs["worker"]) == []
    # Only the chief wrote summaries and results; the worker's temp dirs are gone.
    chief_pid = procs["chief"].pid
    events = glob.glob(os.path.join(job, "logs", "**", "events.out.tfevents.*"), recursive=True)
    assert events and all(f".{chief_pid}." in os.path.basename(e) for e in events)
    for name in ("eval.json", "model.keras", "saved_model/saved_model.pb", "history.csv"):
        assert os.path.exists(os.path.join(job, name)), name
    assert len(_history(job)) == 2
    assert not glob.glob(os.path.join(job, "**", "*workertemp*"), recursive=True)
    assert not any(temps["worker"].rglob("*.h5")) and not any(temps["worker"].rglob("events*"))


def test_multi_worker_fewer_shards_than_workers(tmp_path):
    data = tmp_path / "one_shard"
    record_fixtures.write_dataset(data, num_plays=4, num_frames=4, size=32, num_shards=1)
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    args = [f"--data_dir={data}", f"--job_dir={tmp_path / 'job'}", "--strategy=multi_worker",
            "--batch_size=2", *TINY]
    procs = [_task(args, env=_env(TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}}))) for i in range(2)]
    try:
        outs = [proc.communicate(timeout=180)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, out in zip(procs, outs):
        assert proc.returncode == 2, out[-2000:]
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "1 shard(s) for 2 input pipelines" in errors[0]
        assert "Traceback" not in out


def test_fine_tune_changes_only_layers_above_fine_tune_from(data_dir, tmp_path):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = str(tmp_path / "vgg16_notop.weights.h5")
    vgg.save_weights(weights)
    job = str(tmp_path / "job")
    config = TrainConfig.from_flags(dict(
        data_dir=data_dir, job_dir=job, strategy="default", cut_layer="block2_pool",
        weights=weights, trainable_from="none", rnn_units=4, num_frames=3, epochs=1,
        fine_tune_epochs=1, fine_tune_from="block2_conv1", fine_tune_learning_rate=1e-2,
        steps_per_epoch=2, batch_size=2,
        export_weights="last"))  # the best epoch may be the head phase's
    summary = train.train(config)
    assert summary["epochs"] == 2 and summary["eval"]["split"] == "test"
    assert [row["epoch"] for row in _history(job)] == ["0", "1"]
    base = model_lib.base_of(keras.models.load_model(os.path.join(job, "model.keras")))
    for name, should_change in [("block1_conv1", False), ("block1_conv2", False),
                                ("block2_conv1", True), ("block2_conv2", True)]:
        same = all(np.array_equal(a, b) for a, b in zip(base.get_layer(name).get_weights(),
                                                        vgg.get_layer(name).get_weights()))
        assert same != should_change, name


@pytest.mark.parametrize("extra,message", [
    ([], "no training data"),
    (["--data_dir={data}", "--strategy=bogus"], "unknown --strategy='bogus'"),
    (["--data_dir={data}", "--cut_layer=block9_pool"], "use one of block1_conv1"),
    (["--data_dir={data}", "--weights=/no/such/vgg16.h5"], "no such file"),
    (["--data_dir={empty}"], "no dataset.json"),
    (["--data_dir={data}", "--fine_tune_epochs=1", "--fine_tune_from=block5_conv1"],
     "use a layer kept by the cut"),
    (["--data_dir={data}", "--strategy=mirrored", "--cpu_replicas=2", "--jit_compile=true"],
     "logical CPU devices"),
    # Files with no complete record (a 3-byte text file reads as an empty TFRecord file).
    (["--train_files={blank}", "--labels=a,b", "--height=32", "--width=32"],
     "no play records in the train files"),
    (["--data_dir={data}", "--eval_files={blank}"], "no play records in the val files"),
    (["--data_dir={data}", "--head=lstm"], "unknown --head='lstm': use one of rnn, mean_pool"),
    (["--data_dir={data}", "--eval_views=0"], "--eval_views must be >= 1"),
    (["--data_dir={data}", "--class_weight=balanced", "--labels=pick_and_roll,isolation,cut"],
     "label 'cut' has no training plays"),
    (["--data_dir={data}", "--class_weight=balanced", "--balanced_sampling"], "use one of them"),
    (["--data_dir={data}", "--head=mean_pool", "--bidirectional"], "setting of --head=rnn"),
    (["--data_dir={data}", "--export_weights=first"], "unknown --export_weights='first'"),
])
def test_cli_errors_are_one_line(data_dir, tmp_path, capsys, extra, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    blank = tmp_path / "notes.tfrecord"
    blank.write_text("hi\n")
    argv = [a.format(data=data_dir, empty=empty, blank=blank) for a in extra]
    code = task.run([f"--job_dir={tmp_path / 'job'}", "--strategy=default", *TINY, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_cli_imagenet_unavailable(data_dir, tmp_path, capsys, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    code = task.run([f"--data_dir={data_dir}", f"--job_dir={tmp_path / 'job'}", "--strategy=default",
                     "--cut_layer=block1_pool", "--weights=imagenet", "--num_frames=2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: cannot get the ImageNet VGG16 weights" in err and "--weights=none" in err


def test_config_json_reproduces_the_run(tmp_path):
    config = task.parse_args(["--data_dir=/d", "--job_dir=/j", "--epochs=3", "--bidirectional",
                              "--labels=a,b"])
    assert config.model.bidirectional and config.data.labels == ["a", "b"]
    assert config.training.epochs == 3
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config


def test_flags_go_to_their_sections_without_importing_tensorflow():
    code = ("import sys; from trainer import task; "
            "c = task.parse_args(['--data_dir=/d', '--job_dir=/j', '--head=mean_pool', "
            "'--strategy=default', '--eval_flip', '--epochs=2']).validate(); "
            "assert (c.data.data_dir, c.runtime.job_dir, c.model.head, c.runtime.strategy, "
            "c.evaluation.eval_flip, c.training.epochs) == ('/d', '/j', 'mean_pool', 'default', "
            "True, 2), c; "
            "assert not {'tensorflow', 'keras'} & set(sys.modules), 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_vertex_environment_defaults(monkeypatch):
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://bucket/model")
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://bucket/ckpt")
    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", "gs://bucket/tb")
    config = task.parse_args(["--data_dir=/d"])
    runtime = config.runtime
    assert runtime.job_dir == "gs://bucket/model"
    assert runtime.checkpoints_path == "gs://bucket/ckpt" and runtime.logs_path == "gs://bucket/tb"


def test_resume_survives_a_backup_torn_by_the_kill(data_dir, tmp_path):
    """A kill while a backup is being written leaves its files torn and state.json naming the
    one before (trainer.training.preemption writes state.json last, in one rename): the run resumes from
    that one."""
    job = str(tmp_path / "job")
    args = [f"--data_dir={data_dir}", f"--job_dir={job}", "--strategy=default", "--epochs=4",
            "--steps_per_epoch=20", "--batch_size=2", *TINY]
    proc = _task(args, env=_env())
    deadline = time.monotonic() + 180
    while _completed_epochs(job) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    done = _completed_epochs(job)
    assert 2 <= done < 4
    backup = os.path.join(job, "backup", "phase1")
    with open(os.path.join(backup, "state.json")) as f:
        state = json.load(f)
    assert state["epoch"] == done and os.path.exists(os.path.join(backup, state["weights"]))
    # As if the kill came in the middle of writing the next backup.
    with open(os.path.join(backup, state["weights"]), "rb") as f:
        torn = f.read()[:100]
    for name in (f"e{done + 1}-s0.weights.h5", f"e{done + 1}-s0.variables.npz",
                 "state.json.tmp"):
        with open(os.path.join(backup, name), "wb") as f:
            f.write(torn)

    proc = _task(args, env=_env())
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out[-3000:]
    lines = _epoch_lines(out)
    assert lines[0].split()[1] == f"{done + 1}/4" and lines[-1].split()[1] == "4/4", lines


def test_library_log_lines_reach_stdout_as_the_commands_printed_them(capsys):
    logs.configure()
    logs.configure()  # once per process: no second handler
    summary = callbacks.EpochSummary(3, phase="head")
    summary.on_epoch_begin(0)
    summary.on_epoch_end(0, {"loss": 0.5, "accuracy": 1, "learning_rate": 0.1})
    logging.getLogger("trainer.data.sources").warning("train: an odd shard")
    logging.getLogger("trainer.data.sources").debug("not shown")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2, out
    assert out[0].startswith("epoch 1/3 [head] accuracy=1 loss=0.5000 (")
    assert out[1] == "warning: train: an odd shard"
