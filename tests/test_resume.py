"""Exact resume after preemption (docs/preemption.md): a SIGTERM at a random step inside an epoch,
a kill -9 with --backup_every_steps, the fine-tune phase; the resumed run ends with the weights and
the history of an uninterrupted one. Real trainer subprocesses on tiny settings."""
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from demo_data import synthetic_records  # noqa: E402
from schemas.errors import UsageError  # noqa: E402
from trainer.data import parsers, reader  # noqa: E402
from trainer.data.config import ReaderConfig  # noqa: E402
from trainer.training import preemption  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4  # per epoch
COMMON = ["--strategy=default", "--seed=7", "--deterministic", "--batch_size=2",
          f"--steps_per_epoch={STEPS}", "--cut_layer=block1_pool", "--weights=none", "--rnn=gru",
          "--rnn_units=4", "--num_frames=4", "--dropout=0.3"]
RNG = random.Random(18)  # the steps at which the runs are stopped (printed by each test)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = tmp_path_factory.mktemp("records")
    synthetic_records.write_dataset(path, num_plays=8, num_frames=4, size=32,
                                    splits=("train", "val"), num_shards=2)
    return str(path)


@pytest.fixture(scope="module")
def features(records, tmp_path_factory):
    from beam_jobs import embed_records  # pylint: disable=g-import-not-at-top
    path = str(tmp_path_factory.mktemp("features"))
    embed_records.run([f"--records_dir={records}", f"--output_dir={path}", "--weights=none",
                       "--cut_layer=block1_pool", "--seed=3"])
    return path


def _start(args, job):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "trainer.task", *args, f"--job_dir={job}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _run(args, job):
    proc = _start(args, job)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _state(job, phase):
    try:
        with open(os.path.join(job, "backup", f"phase{phase}", preemption.STATE_JSON)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _stop_at(args, job, phase, epoch, step, sig):
    """Runs until phase `phase`'s backup reaches (epoch, step), then sends `sig` (frozen first,
    so that the signal lands at that step or the next)."""
    proc = _start(args, job)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        state = _state(job, phase)
        if state and (state["epoch"], state["step"]) >= (epoch, step):
            proc.send_signal(signal.SIGSTOP)
            proc.send_signal(sig)
            proc.send_signal(signal.SIGCONT)
            break
        time.sleep(0.002)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out, _state(job, phase)


def _weights(job):
    arrays = {}
    with h5py.File(os.path.join(job, "checkpoints", "last.weights.h5")) as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, np.asarray(obj[()], np.float64))
                     if isinstance(obj, h5py.Dataset) else None)
    return arrays


def _max_difference(job_a, job_b):
    a, b = _weights(job_a), _weights(job_b)
    assert sorted(a) == sorted(b) and any("optimizer" in name for name in a)
    return max(float(np.max(np.abs(a[name] - b[name]), initial=0.0)) for name in a)


def _history(job):
    with open(os.path.join(job, "history.csv")) as f:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]


def _assert_same_run(baseline, resumed):
    difference = _max_difference(baseline, resumed)
    print(f"max abs weight difference: {difference}")
    assert difference <= 1e-6
    expected, got = _history(baseline), _history(resumed)
    assert len(got) == len(expected) and [row["epoch"] for row in got] == [
        row["epoch"] for row in expected]
    for want, row in zip(expected, got):
        assert row.keys() == want.keys()
        assert all(abs(row[key] - want[key]) <= 1e-6 for key in want), (want, row)


def _resume_line(out):
    return [line for line in out.splitlines() if line.startswith("resuming the ")]


# ------------------------------------------------------------------ in process


def test_epoch_order_is_a_function_of_seed_and_epoch_and_resume_skips_records(records):
    files = sorted(os.path.join(records, name) for name in os.listdir(records)
                   if name.startswith("train-"))
    parser = parsers.ClipParser(4, (32, 32))

    def batches(plan, take):
        ds = reader.make_dataset(files, parser, ReaderConfig(2, seed=5, shuffle_buffer=8),
                                 training=True, repeat=True, plan=plan)
        return [(clips.numpy(), labels.numpy()) for clips, labels in ds.take(take)]

    whole = batches(reader.EpochPlan(steps_per_epoch=3), 9)  # epochs 0, 1, 2
    again = batches(reader.EpochPlan(steps_per_epoch=3), 9)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(whole, again))
    # Started at epoch 1 step 2: exactly the batches the whole stream had from there.
    resumed = batches(reader.EpochPlan(steps_per_epoch=3, initial_epoch=1, initial_step=2), 4)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(whole[5:], resumed))
    # Epochs differ in order (and augmentation): each epoch's draw is its own.
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(whole[:3], whole[3:6]))


def test_a_run_seeded_with_zero_reads_its_epochs(records):
    """--seed=0 makes TensorFlow's global seed 0: the per-epoch shuffles take tensor seeds then too."""
    files = sorted(os.path.join(records, name) for name in os.listdir(records)
                   if name.startswith("train-"))
    tf.random.set_seed(0)
    try:
        ds = reader.make_dataset(files, parsers.ClipParser(4, (32, 32)),
                                 ReaderConfig(2, seed=0, shuffle_buffer=8), training=True,
                                 repeat=True, plan=reader.EpochPlan(steps_per_epoch=3))
        first = [labels.numpy().tolist() for _, labels in ds.take(6)]
        again = [labels.numpy().tolist() for _, labels in ds.take(6)]
    finally:
        tf.random.set_seed(None)
    assert len(first) == 6 and first == again


def test_deterministic_needs_a_seed():
    with pytest.raises(UsageError, match="--deterministic needs a --seed"):
        TrainConfig.from_flags(dict(data_dir="/d", job_dir="/j", seed=None,
                                    deterministic=True)).validate()


# ------------------------------------------------------------------ real processes


def test_sigterm_mid_epoch_on_cached_features_resumes_to_the_same_weights(features, tmp_path):
    args = [f"--features_dir={features}", "--epochs=3", *COMMON]
    baseline = str(tmp_path / "baseline")
    code, out = _run(args, baseline)
    assert code == 0, out[-3000:]

    epoch, step = 1, RNG.randrange(1, STEPS - 2)
    print(f"SIGTERM once the backup reaches epoch {epoch} step {step}")
    job = str(tmp_path / "job")
    code, out, state = _stop_at([*args, "--backup_every_steps=1"], job, 1, epoch, step,
                                signal.SIGTERM)
    # The line follows the progress bar's last step (which ends in no newline).
    preempted = [line[line.index("preempted: "):] for line in out.splitlines()
                 if "preempted: " in line]
    assert code == preemption.EXIT_PREEMPTED and len(preempted) == 1, out[-3000:]
    assert state["reason"] == "sigterm" and state["epoch"] == epoch and 0 < state["step"] < STEPS
    assert f"epoch {epoch + 1} step {state['step']}" in preempted[0]
    assert len(_history(job)) == epoch  # the interrupted epoch has no row yet

    code, out = _run(args, job)  # the same command
    assert code == 0, out[-3000:]
    assert _resume_line(out) == [f"resuming the head phase at epoch {epoch + 1} step "
                                 f"{state['step']} of {STEPS} (backup taken at a SIGTERM)"]
    _assert_same_run(baseline, job)
    assert not os.path.exists(os.path.join(job, "backup", "phase1"))


def test_kill_9_then_sigterm_in_the_fine_tune_phase_on_jpegs(records, tmp_path):
    """kill -9 with --backup_every_steps=2 in the head phase, then SIGTERM in the fine-tune phase."""
    args = [f"--data_dir={records}", "--epochs=1", "--fine_tune_epochs=2",
            "--fine_tune_from=block1_conv2", *COMMON]
    baseline = str(tmp_path / "baseline")
    code, out = _run(args, baseline)
    assert code == 0, out[-3000:]

    job = str(tmp_path / "job")
    code, out, state = _stop_at([*args, "--backup_every_steps=2"], job, 1, 0, 2, signal.SIGKILL)
    assert code == -signal.SIGKILL, out[-3000:]
    print(f"kill -9 after the backup of epoch 0 step 2: last backup {state}")
    assert state["step"] % 2 == 0 and (state["epoch"], state["reason"]) in (
        (0, "steps"), (1, "epoch"))

    epoch, step = RNG.choice([1, 2]), RNG.randrange(1, STEPS - 2)
    print(f"SIGTERM once the fine-tune backup reaches epoch {epoch} step {step}")
    code, out, tuned = _stop_at([*args, "--backup_every_steps=1"], job, 2, epoch, step,
                                signal.SIGTERM)
    assert code == preemption.EXIT_PREEMPTED, out[-3000:]
    # Resumed where the kill -9 left it: at most 2 steps (the backup interval) taken again.
    where = (f"epoch {state['epoch'] + 1} step {state['step']}" if state["step"]
             else f"epoch {state['epoch'] + 1} step 0")
    assert _resume_line(out)[0].startswith(f"resuming the head phase at {where} of {STEPS}")
    assert tuned["reason"] == "sigterm" and 0 < tuned["step"] < STEPS

    code, out = _run(args, job)
    assert code == 0, out[-3000:]
    lines = _resume_line(out)
    assert lines[-1] == (f"resuming the fine_tune phase at epoch {tuned['epoch'] + 1} step "
                         f"{tuned['step']} of {STEPS} (backup taken at a SIGTERM)"), lines
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == [
        f"{e + 1}/3" for e in range(tuned["epoch"], 3)]
    _assert_same_run(baseline, job)
