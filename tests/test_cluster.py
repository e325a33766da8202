"""Cluster runs on one machine, every process on the loopback interface
(tests/cluster_processes.py): the Beam jobs on the portable runner with an external worker
pool, training through a tf.data service (and through its faults: the dispatcher or a service
worker killed with SIGKILL and restarted, two trainers sharing one service job), a multi-worker
cluster killed and restarted, a worker whose share of the shards is empty, and the commands of
cloudbuild.yaml."""

import filecmp
import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import yaml  # noqa: E402

from demo_data import synthetic_records as record_fixtures  # noqa: E402
from tests.cluster_processes import ROOT, free_port  # noqa: E402

TINY = ["--cut_layer=block1_pool", "--weights=none", "--rnn_units=8", "--num_frames=4",
        "--dropout=0"]


def _epoch_lines(output):
    return [line for line in output.splitlines() if line.startswith("epoch ")]


# ---------------------------------------------------------------- Beam portable runner


def test_beam_jobs_on_the_portable_runner_match_the_direct_runner(cluster, tmp_path):
    """Beam's Python job service + an external SDK worker pool: how Flink and Spark run Python.

    One shard per split: with more, Beam's file sink deals records to shards from a random
    start, so only the records per split (not per shard) are the same across runs."""
    pool_port = free_port()
    port_file = tmp_path / "job_service.port"
    cluster.python("worker pool", ["-m", "apache_beam.runners.worker.worker_pool_main",
                                   f"--service_port={pool_port}"])
    job_service = cluster.python("job service", [
        "-m", "apache_beam.runners.portability.local_job_service_main", "--port=0",
        f"--port_file={port_file}"])
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        assert time.monotonic() < deadline and job_service.popen.poll() is None, job_service.output
        time.sleep(0.1)
    flags = ["--demo_plays=12", "--num_frames=4", "--frame_size=32", "--num_shards=1"]
    portable = cluster.python("records job (portable)", [
        "beam_jobs/make_records.py", f"--output_dir={tmp_path / 'portable'}", *flags,
        "--runner=PortableRunner", f"--job_endpoint=localhost:{port_file.read_text().strip()}",
        "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"])
    direct = cluster.python("records job (direct)", [
        "beam_jobs/make_records.py", f"--output_dir={tmp_path / 'direct'}", *flags,
        "--runner=DirectRunner"])
    for job in (portable, direct):
        assert job.wait(timeout=180) == 0, job.output[-3000:]
        assert "records: 12 plays written" in job.output
    names = sorted(os.listdir(tmp_path / "direct"))
    assert sorted(os.listdir(tmp_path / "portable")) == names
    shards = [n for n in names if n.endswith(".tfrecord")]
    assert len(shards) == 3  # 3 splits x --num_shards=1 (more shards: records go to shards at random)
    for name in shards + [n for n in names if n.startswith("rejected-")]:
        assert filecmp.cmp(tmp_path / "direct" / name, tmp_path / "portable" / name,
                           shallow=False), name
    cards = [json.loads((tmp_path / run / "dataset.json").read_text())
             for run in ("direct", "portable")]
    for card in cards:
        card["args"].pop("output_dir")
    assert cards[0] == cards[1]

    # The embed job (TensorFlow in the SDK workers) on the same records: the same features.
    records = f"--records_dir={tmp_path / 'direct'}"
    base_flags = ["--weights=none", "--cut_layer=block1_pool"]
    portable = cluster.python("embed job (portable)", [
        "beam_jobs/embed_records.py", records, f"--output_dir={tmp_path / 'features_portable'}",
        *base_flags, "--runner=PortableRunner",
        f"--job_endpoint=localhost:{port_file.read_text().strip()}",
        "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"])
    direct = cluster.python("embed job (direct)", [
        "beam_jobs/embed_records.py", records, f"--output_dir={tmp_path / 'features_direct'}",
        *base_flags, "--runner=DirectRunner"])
    for job in (portable, direct):
        assert job.wait(timeout=180) == 0, job.output[-3000:]
        assert "features: 12 plays embedded" in job.output
    names = sorted(os.listdir(tmp_path / "features_direct"))
    assert sorted(os.listdir(tmp_path / "features_portable")) == names
    for name in [n for n in names if n.endswith((".tfrecord", ".jsonl"))]:
        assert filecmp.cmp(tmp_path / "features_direct" / name,
                           tmp_path / "features_portable" / name, shallow=False), name
    cards = [json.loads((tmp_path / run / "features.json").read_text())
             for run in ("features_direct", "features_portable")]
    for card in cards:
        card.pop("base_sha256")  # base.keras is a zip file holding its write time
    assert cards[0] == cards[1]


# ---------------------------------------------------------------- tf.data service


def test_training_through_a_tf_data_service(cluster, data_dir, tmp_path):
    work_dir = tmp_path / "dispatcher"
    dispatcher = cluster.python("dispatcher", ["-m", "trainer.data_service", "--dispatcher_port=0",
                                               f"--work_dir={work_dir}"])
    address = dispatcher.wait_for(r"dispatcher listening on grpc://(\S+)", timeout=90)[1]
    dispatcher.wait_for(r"^warning: --work_dir with --dispatcher_port=0: .* fixed --dispatcher_port",
                        timeout=10)
    workers = [cluster.python(f"service worker {i}", [
        "-m", "trainer.data_service", "--worker", f"--dispatcher_address={address}"])
        for i in range(2)]
    worker_ports = [w.wait_for(r"worker listening on port (\d+)", timeout=90)[1] for w in workers]
    job = tmp_path / "job"
    trainer = cluster.python("trainer", [
        "-m", "trainer.task", f"--data_dir={data_dir}", f"--job_dir={job}", "--strategy=default",
        f"--data_service=grpc://{address}", "--epochs=2", "--steps_per_epoch=3",
        "--batch_size=2", *TINY])
    assert trainer.wait(timeout=240) == 0, trainer.output[-3000:]
    assert "train input pipeline: tf.data service grpc://" in trainer.output
    assert [line.split()[1] for line in _epoch_lines(trainer.output)] == ["1/2", "2/2"]
    assert (job / "model.keras").exists()
    # The dispatcher's journal: the trainer's job, and tasks on both workers.
    journal = b"".join(p.read_bytes() for p in work_dir.rglob("*") if p.is_file())
    assert b"playclips-" in journal and b"-train-plays" in journal
    for port in worker_ports:
        assert f"localhost:{port}".encode() in journal


# ---------------------------------------------------------------- tf.data service faults
#
# The trainers run as `python -m tests.tapped_trainer TAP ...` (trainer.task, with each batch it
# takes from the service written to TAP as its label indices). Every play has its own label,
# so the batches name the plays each trainer trained on.

PLAYS = 16


@pytest.fixture(scope="module")
def labelled_plays(tmp_path_factory):
    """16 train plays, each its own label, in 4 shards (plus a val split for the trainer)."""
    path = tmp_path_factory.mktemp("labelled_plays")
    record_fixtures.write_dataset(path, num_plays=PLAYS, num_frames=4, size=32,
                                  labels=[f"play{i}" for i in range(PLAYS)],
                                  splits=("train", "val"), num_shards=4)
    return str(path)


def _tapped_trainer(cluster, name, tap, data_dir, job, address, *flags, **env_extra):
    return cluster.python(name, [
        "-m", "tests.tapped_trainer", str(tap), f"--data_dir={data_dir}", f"--job_dir={job}",
        f"--data_service=grpc://{address}", "--shuffle_buffer=0", *flags, *TINY], **env_extra)


def _batches(tap):
    try:
        with open(tap) as f:
            return [[int(v) for v in line.split()] for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _wait_for_batches(tap, count, process, timeout=180):
    deadline = time.monotonic() + timeout
    while len(_batches(tap)) < count:
        assert time.monotonic() < deadline and process.popen.poll() is None, process.output[-3000:]
        time.sleep(0.05)


def _stalled(tap, process, quiet=3.0, timeout=60):
    """The batches received once `process` has taken none for `quiet` s (None if it exited)."""
    deadline = time.monotonic() + timeout
    seen, since = len(_batches(tap)), time.monotonic()
    while time.monotonic() < deadline and process.popen.poll() is None:
        time.sleep(0.2)
        now = len(_batches(tap))
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return seen
    return None


def _service(cluster, tmp_path, workers=1, port=0):
    dispatcher_args = ["-m", "trainer.data_service", f"--dispatcher_port={port}",
                       f"--work_dir={tmp_path / 'dispatcher'}"]
    dispatcher = cluster.python("dispatcher", dispatcher_args)
    address = dispatcher.wait_for(r"dispatcher listening on grpc://(\S+)", timeout=90)[1]
    worker_args = ["-m", "trainer.data_service", "--worker", f"--dispatcher_address={address}"]
    procs = [cluster.python(f"service worker {i}", worker_args) for i in range(workers)]
    for proc in procs:
        proc.wait_for(r"worker listening on port", timeout=90)
    return dispatcher, dispatcher_args, procs, worker_args, address


def _check_finished(trainer, tap, epochs, steps):
    """The trainer exited 0 after every epoch; the plays it trained on, counted."""
    assert trainer.wait(timeout=240) == 0, trainer.output[-3000:]
    assert [line.split()[1] for line in _epoch_lines(trainer.output)] == [
        f"{e}/{epochs}" for e in range(1, epochs + 1)]
    trained = _batches(tap)[:epochs * steps]
    assert len(trained) == epochs * steps
    return Counter(play for batch in trained for play in batch)


def test_a_dispatcher_killed_and_restarted_with_its_work_dir_continues_training(
        cluster, labelled_plays, tmp_path):
    # A fixed port: the restarted dispatcher must be where the workers and the trainer look.
    dispatcher, dispatcher_args, _, _, address = _service(cluster, tmp_path, port=free_port())
    tap, epochs, steps = tmp_path / "tap.txt", 3, 25
    trainer = _tapped_trainer(cluster, "trainer", tap, labelled_plays, tmp_path / "job", address,
                              "--strategy=default", f"--epochs={epochs}",
                              f"--steps_per_epoch={steps}", "--batch_size=2")
    _wait_for_batches(tap, 4, trainer)
    dispatcher.kill()  # SIGKILL
    # The service workers need the dispatcher for each next shard file: training waits.
    stalled_at = _stalled(tap, trainer)
    assert stalled_at is not None and stalled_at < epochs * steps, trainer.output[-3000:]
    restarted = cluster.python("dispatcher (restarted)", dispatcher_args)  # the same command
    restarted.wait_for(r"dispatcher listening on", timeout=90)
    seen = _check_finished(trainer, tap, epochs, steps)
    assert sorted(seen) == list(range(PLAYS))  # every play trained on, after the restart too
    assert len(_batches(tap)) > stalled_at


def test_a_service_worker_killed_and_restarted_continues_training(cluster, labelled_plays, tmp_path):
    _, _, (worker,), worker_args, address = _service(cluster, tmp_path)
    tap, epochs, steps = tmp_path / "tap.txt", 3, 25
    trainer = _tapped_trainer(cluster, "trainer", tap, labelled_plays, tmp_path / "job", address,
                              "--strategy=default", f"--epochs={epochs}",
                              f"--steps_per_epoch={steps}", "--batch_size=2")
    _wait_for_batches(tap, 4, trainer)
    worker.kill()  # SIGKILL: the only worker, so training must wait for the new one
    stalled_at = _stalled(tap, trainer)
    assert stalled_at is not None and stalled_at < epochs * steps, trainer.output[-3000:]
    cluster.python("service worker (restarted)", worker_args).wait_for(
        r"worker listening on port", timeout=90)
    seen = _check_finished(trainer, tap, epochs, steps)
    assert sorted(seen) == list(range(PLAYS))
    assert len(_batches(tap)) > stalled_at


def test_two_trainers_share_one_service_job_and_see_every_play_each_epoch(
        cluster, labelled_plays, tmp_path):
    _, _, _, _, address = _service(cluster, tmp_path, workers=2)
    spec = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    # Global batch 4 (2 per trainer) x 16 steps: 64 plays an epoch, 4 passes over the 16.
    epochs, steps = 2, 16
    taps = [tmp_path / f"tap{i}.txt" for i in range(2)]
    trainers = [_tapped_trainer(cluster, f"trainer {i}", taps[i], labelled_plays, tmp_path / "job",
                                address, "--strategy=multi_worker", f"--epochs={epochs}",
                                f"--steps_per_epoch={steps}", "--batch_size=4",
                                "--log_all_workers",  # the worker's epoch lines too
                                TF_CONFIG=_tf_config(spec, "worker", i))
                for i in range(2)]
    counts = [_check_finished(t, tap, epochs, steps) for t, tap in zip(trainers, taps)]
    jobs = {re.search(r"train input pipeline: .* \(job (\S+)\)", t.output)[1] for t in trainers}
    assert len(jobs) == 1  # one service job, both trainers its consumers
    for epoch in range(epochs):
        in_epoch = [play for tap in taps for batch in _batches(tap)[epoch * steps:(epoch + 1) * steps]
                    for play in batch]
        assert len(in_epoch) == 4 * steps
        assert sorted(set(in_epoch)) == list(range(PLAYS)), (epoch, Counter(in_epoch))


# ---------------------------------------------------------------- multi-worker faults


def _backup_epochs(job, folder):
    try:
        with open(os.path.join(job, "backup", folder, "state.json")) as f:  # epoch-end backups
            return json.load(f)["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def _tf_config(cluster_spec, task_type, index=0):
    return json.dumps({"cluster": cluster_spec, "task": {"type": task_type, "index": index}})


def test_sigkill_a_worker_then_restart_the_cluster_resumes(cluster, data_dir, tmp_path):
    job = str(tmp_path / "job")
    spec = {"chief": [f"localhost:{free_port()}"], "worker": [f"localhost:{free_port()}"]}
    args = ["-m", "trainer.task", f"--data_dir={data_dir}", f"--job_dir={job}",
            "--strategy=multi_worker", "--epochs=3", "--steps_per_epoch=30", "--batch_size=4",
            *TINY]

    def start():
        return {task: cluster.python(task, args, TF_CONFIG=_tf_config(spec, task),
                                     TMPDIR=str(tmp_path))
                for task in ("chief", "worker")}

    procs = start()
    # Once both tasks have backed up an epoch, SIGKILL the worker (mid-epoch).
    deadline = time.monotonic() + 180
    while min(_backup_epochs(job, "phase1"), _backup_epochs(job, "phase1_workertemp_worker_0")) < 1:
        assert time.monotonic() < deadline, procs["chief"].output[-3000:]
        assert all(p.popen.poll() is None for p in procs.values()), procs["chief"].output[-3000:]
        time.sleep(0.05)
    os.kill(procs["worker"].popen.pid, signal.SIGKILL)
    procs["worker"].wait(timeout=30)
    done = _backup_epochs(job, "phase1")
    assert 1 <= done < 3, procs["chief"].output[-3000:]
    # The chief cannot go on alone: it fails or waits for its peer. Stop it.
    try:
        procs["chief"].popen.wait(timeout=3)
    except subprocess.TimeoutExpired:
        pass
    procs["chief"].kill()
    assert _backup_epochs(job, "phase1") == done  # no epoch finished without the worker
    with open(os.path.join(job, "history.csv")) as f:
        rows_before = len(f.readlines()) - 1

    procs = start()  # the same commands again
    for task, proc in procs.items():
        assert proc.wait(timeout=240) == 0, f"{task}:\n{proc.output[-3000:]}"
    lines = _epoch_lines(procs["chief"].output)
    assert [line.split()[1] for line in lines] == [f"{e}/3" for e in range(done + 1, 4)], lines
    with open(os.path.join(job, "history.csv")) as f:
        epochs = [int(row.split(",")[0]) for row in f.readlines()[1:]]
    assert epochs[rows_before:] == list(range(done, 3))
    assert os.path.exists(os.path.join(job, "model.keras"))


def test_a_worker_with_only_empty_shards_fails_at_start_up(cluster, tmp_path):
    data = tmp_path / "records"
    record_fixtures.write_dataset(data, num_plays=4, num_frames=4, size=32,
                                  splits=("train", "val"), num_shards=2)
    # The records job writes an empty shard when a split has fewer plays than shards.
    (data / record_fixtures.shard_name("train", 1, 2)).write_bytes(b"")
    spec = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
    args = ["-m", "trainer.task", f"--data_dir={data}", f"--job_dir={tmp_path / 'job'}",
            "--strategy=multi_worker", "--batch_size=2", *TINY]
    procs = [cluster.python(f"worker {i}", args, TF_CONFIG=_tf_config(spec, "worker", i))
             for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=180) == 2, proc.output[-3000:]
        errors = [line for line in proc.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, proc.output[-3000:]
        assert "worker 1 of 2 would read no train records" in errors[0]
        assert "--num_shards" in errors[0] and "--data_service" in errors[0]
        assert "Traceback" not in proc.output


# ---------------------------------------------------------------- cloudbuild.yaml


def _substitute(text, substitutions):
    """Cloud Build's ${_VAR}/${PROJECT_ID}/... substitutions, then `$$` -> `$` (bash's view)."""
    builtins = {"PROJECT_ID": "my-project", "SHORT_SHA": "abc1234", "BUILD_ID": "b1"}
    values = {**builtins, **{k: str(v) for k, v in substitutions.items()}}
    text = re.sub(r"(?<!\$)\$\{(\w+)\}", lambda m: values[m[1]], text)
    return text.replace("$$", "$")


def _commands(script):
    """Simple commands of a bash script: lines joined, split at &&, ||, ; and newlines, with
    `NAME=value` assignments (the last one taken, as if every `if` holds) expanded in later
    commands."""
    script = script.replace("\\\n", " ")
    variables = {}

    def expand(word):
        word = re.sub(r"\$(\w+)", lambda m: variables.get(m[1], m[0]), word)
        # ${VAR:+WORD} (bash: WORD when VAR is set) -> WORD, to check the flags in it.
        return re.sub(r"^\$\{\w+:\+(.*)\}$", r"\1", word)

    for part in re.split(r"&&|\|\||;|\n", script):
        try:
            words = [expand(w) for w in shlex.split(part)]
        except ValueError:
            continue
        if len(words) == 1 and re.match(r"^\w+=", words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
        elif words:
            yield words


def _flags(words):
    return [w.split("=", 1)[0] for w in words if w.startswith("--")]


def _check_beam_job(module, words):
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
    module.build_parser()  # registers the job's option classes
    options = PipelineOptions([w for w in words if w.startswith("--")])
    unknown = (set(options.get_all_options(retain_unknown_options=True))
               - set(options.get_all_options()))
    assert not unknown, f"{module.__name__} does not accept {sorted(unknown)}: {words}"


def _check_trainer(flags):
    from trainer import config as config_lib  # pylint: disable=g-import-not-at-top
    parser = config_lib.build_parser(environ={})
    args, unknown = parser.parse_known_args(flags)
    # Exact names: argparse would take --epoch for --epochs.
    unknown += [f for f in _flags(flags) if f not in parser._option_string_actions]  # pylint: disable=protected-access
    assert not unknown, f"python -m trainer.task does not accept {unknown}"
    config_lib.TrainConfig.from_flags(vars(args)).validate()


def test_cloudbuild_commands_use_files_and_flags_that_exist():
    from beam_jobs import embed_records, make_records  # pylint: disable=g-import-not-at-top
    with open(os.path.join(ROOT, "cloudbuild.yaml")) as f:
        build = yaml.safe_load(f)
    substitutions = build.get("substitutions", {})
    ids = [step["id"] for step in build["steps"]]
    checked = set()
    for step in build["steps"]:
        for dependency in step.get("waitFor", []):
            assert dependency == "-" or dependency in ids, dependency
        args = [_substitute(str(a), substitutions) for a in step.get("args", [])]
        if step.get("entrypoint") == "bash":
            assert args[0] == "-c"
            commands = list(_commands(args[1]))
        else:
            commands = [[step["name"].rsplit("/", 1)[-1], *args]]
        for words in commands:
            if words[0] == "make":
                with open(os.path.join(ROOT, "Makefile")) as f:
                    targets = re.findall(r"^([\w-]+):", f.read(), re.M)
                assert set(words[1:]) <= set(targets), words
                checked.add("make")
            elif words[0] == "python" and words[1:2] == ["-m"]:
                assert words[2] == "trainer.task", words
                _check_trainer(words[3:])
                checked.add(words[2])
            elif words[0] == "python":
                assert os.path.isfile(os.path.join(ROOT, words[1])), words
                job = {"beam_jobs/make_records.py": make_records,
                       "beam_jobs/embed_records.py": embed_records}[words[1]]
                _check_beam_job(job, words[2:])
                checked.add(words[1])
            elif words[0] == "pip":
                extras = re.findall(r"\.\[(\w+)\]", " ".join(words))
                with open(os.path.join(ROOT, "setup.py")) as f:
                    setup_py = f.read()
                for extra in extras:
                    assert f'"{extra}":' in setup_py, extra
            elif words[0] == "docker" and words[1] == "build":
                with open(os.path.join(ROOT, "Dockerfile")) as f:
                    dockerfile = f.read()
                for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M):
                    assert os.path.exists(os.path.join(ROOT, source)), source
                # The default target (the last stage) is the trainer.
                last_stage = dockerfile.rsplit("\nFROM ", 1)[-1]
                assert 'ENTRYPOINT ["python", "-m", "trainer.task"]' in last_stage
                assert "--target" not in words, words
                checked.add("docker build")
            elif words[:4] == ["gcloud", "ai", "custom-jobs", "create"]:
                specs = [w.split("=", 1)[1] for w in words if w.startswith("--worker-pool-spec=")]
                assert specs and all("container-image-uri=" in s for s in specs), words
                trainer_args = [w.split("=", 1)[1] for w in words if w.startswith("--args=")]
                assert len(trainer_args) == 1, words
                # gcloud splits --args at commas: each item is one trainer flag.
                _check_trainer(trainer_args[0].split(","))
                checked.add("vertex ai")
            elif words[:4] == ["gcloud", "ai", "hp-tuning-jobs", "create"]:
                assert any(w.startswith("--config=") for w in words), words
                # The config is vertex/hp_tuning.yaml with its placeholders filled in: each trial
                # is the trainer with the file's arguments and one value of every parameter.
                with open(os.path.join(ROOT, "vertex", "hp_tuning.yaml")) as f:
                    job = yaml.safe_load(f)
                args = job["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
                args = [a.replace("FEATURES_DIR", "gs://b/f").replace("EPOCHS", "3") for a in args]
                for parameter in job["studySpec"]["parameters"]:
                    spec = parameter.get("categoricalValueSpec") or {}
                    value = spec["values"][0] if spec else parameter["doubleValueSpec"]["minValue"]
                    args.append(f"--{parameter['parameterId']}={value}")
                _check_trainer([*args, "--job_dir=gs://b/j"])
                checked.add("vertex ai tuning")
    assert checked >= {"make", "beam_jobs/make_records.py", "docker build", "vertex ai",
                       "vertex ai tuning"}, checked


def test_cloudbuild_check_catches_an_unknown_flag():
    from beam_jobs import make_records  # pylint: disable=g-import-not-at-top
    _check_beam_job(make_records, ["--runner=DataflowRunner", "--project=p", "--setup_file=x"])
    with pytest.raises(AssertionError, match="inputs"):
        _check_beam_job(make_records, ["--inputs=plays.csv"])
    with pytest.raises(AssertionError, match="--epoch"):
        _check_trainer(["--data_dir=gs://b/r", "--job_dir=gs://b/j", "--epoch=3"])


def test_data_service_address_errors_are_one_line(tmp_path, capsys):
    from trainer import task  # pylint: disable=g-import-not-at-top
    from trainer.data import service as data_service  # pylint: disable=g-import-not-at-top
    assert data_service.parse_address("localhost:5050") == "grpc://localhost:5050"
    assert data_service.parse_address("grpc://10.0.0.2:5050") == "grpc://10.0.0.2:5050"
    data = tmp_path / "records"
    record_fixtures.write_dataset(data, num_plays=2, num_frames=4, size=32, num_shards=1)
    code = task.run([f"--data_dir={data}", f"--job_dir={tmp_path / 'job'}", "--strategy=default",
                     "--data_service=http://dispatcher", *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --data_service='http://dispatcher': expected grpc://HOST:PORT")
