"""The records and embed jobs on Apache Flink and Apache Spark on this machine (127.0.0.1):
Beam's FlinkRunner with an embedded Flink cluster (`--flink_master=[local]`), and Beam's
SparkRunner on a Spark standalone master and worker started from pyspark's distribution.
The Python steps run in an external SDK worker pool (`--environment_type=EXTERNAL`), as on
a real cluster where a pool runs next to each task manager or executor. Each job's records
must equal the DirectRunner's: the same serialized examples per split.

Beam's job server jars come from Maven Central through Maven (tests/engines.py) into the
ignored .cache/jars/."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# The engines extra (pyspark and Flink's distribution, ~580 MB, ~1.5 min to install) is installed
# by `make test-engines`, not by `make test`: Beam's Flink and Spark job server jars are not served
# by the Maven Central these machines reach (docs/clusters.md), so on CI the Beam tests here could
# only skip, and the two cluster checks alone are not worth their minutes on every run.
pytest.importorskip("pyspark", reason="the engines extra is not installed: run `make test-engines`")

from tests import engines  # noqa: E402

RECORD_FLAGS = ["--demo_plays=9", "--num_frames=4", "--frame_size=32", "--num_shards=1"]
EMBED_FLAGS = ["--weights=none", "--cut_layer=block1_pool"]


def _job_server_jar(engine):
    missing = engines.java_missing()
    if missing:
        pytest.skip(missing)
    try:
        return engines.fetch_job_server_jar(engine)
    except engines.JarUnavailable as e:
        # Maven Central answers 404 for Beam's runner artifacts on this project's machines
        # (docs/clusters.md); the test runs wherever Maven can fetch the jar.
        pytest.skip(f"Beam's {engine} job server jar is not available: {e}")


def _process(cluster, name):
    return next(p for p in cluster.processes if p.name == name)


def _cards(folder_a, folder_b, name):
    cards = [json.loads((folder / name).read_text()) for folder in (folder_a, folder_b)]
    for card in cards:
        card.get("args", {}).pop("output_dir", None)
        card.pop("base_sha256", None)  # base.keras is a zip file holding its write time
    return cards


def _jobs_match_the_direct_runner(cluster, tmp_path, engine_flags):
    """Runs the records job, then the embed job on its records, on the engine and on the
    DirectRunner, and checks that both give the same records per split and the same card."""
    jobs = {}
    for runner, flags in (("engine", engine_flags), ("direct", ["--runner=DirectRunner"])):
        jobs[runner] = cluster.python(f"records job ({runner})", [
            "beam_jobs/make_records.py", f"--output_dir={tmp_path / runner}", *RECORD_FLAGS,
            *flags])
    for job in jobs.values():
        assert "records: 9 plays written" in engines.wait_ok(job, timeout=600)
    engine_records = engines.records_by_split(tmp_path / "engine")
    assert sum(len(d) for d in engine_records.values()) == 9
    assert engine_records == engines.records_by_split(tmp_path / "direct")
    assert sorted(os.listdir(tmp_path / "engine")) == sorted(os.listdir(tmp_path / "direct"))
    direct_card, engine_card = _cards(tmp_path / "direct", tmp_path / "engine", "dataset.json")
    assert engine_card == direct_card

    records = f"--records_dir={tmp_path / 'direct'}"
    for runner, flags in (("engine", engine_flags), ("direct", ["--runner=DirectRunner"])):
        jobs[runner] = cluster.python(f"embed job ({runner})", [
            "beam_jobs/embed_records.py", records,
            f"--output_dir={tmp_path / ('features_' + runner)}", *EMBED_FLAGS, *flags])
    for job in jobs.values():
        assert "features: 9 plays embedded" in engines.wait_ok(job, timeout=600)
    features = engines.records_by_split(tmp_path / "features_engine")
    assert sum(len(d) for d in features.values()) == 9
    assert features == engines.records_by_split(tmp_path / "features_direct")
    direct_card, engine_card = _cards(tmp_path / "features_direct", tmp_path / "features_engine",
                                      "features.json")
    assert engine_card == direct_card


def test_spark_standalone_cluster_from_pyspark_runs_python_tasks_on_its_worker(cluster, tmp_path):
    """The cluster the SparkRunner test submits to: master and worker from pyspark's distribution,
    a Python job whose tasks run in the worker's executor (not in the driver)."""
    if engines.java_missing():
        pytest.skip(engines.java_missing())
    url = engines.start_spark(cluster, str(tmp_path / "spark"), cores=1)
    script = (
        "import os\n"
        "from pyspark.sql import SparkSession\n"
        f"spark = SparkSession.builder.master({url!r}).appName('playclips-check')"
        ".config('spark.executor.memory', '512m').config('spark.ui.enabled', 'false')"
        ".getOrCreate()\n"
        "rdd = spark.sparkContext.parallelize(range(100), 4)\n"
        "pids = set(rdd.map(lambda _: os.getpid()).collect())\n"
        "print('sum', rdd.map(lambda x: x * x).sum())\n"
        "print('tasks in the driver', os.getpid() in pids)\n"
        "spark.stop()\n")
    job = cluster.python("pyspark job", ["-c", script], SPARK_HOME=engines.spark_home(),
                         SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    output = engines.wait_ok(job, timeout=300)
    assert "sum 328350" in output
    assert "tasks in the driver False" in output, output[-3000:]
    assert "Registered app playclips-check with ID app-" in _process(cluster, "spark master").output
    assert "Asked to launch executor app-" in _process(cluster, "spark worker").output


def test_flink_session_cluster_from_flink_distribution_serves_its_rest_api(cluster, tmp_path):
    """The cluster that `--flink_master=127.0.0.1:PORT` submits to: a JobManager and a
    TaskManager from Flink 1.20's distribution; its REST API (what Beam's job server talks to)
    reports the TaskManager and its slots."""
    if engines.java_missing():
        pytest.skip(engines.java_missing())
    rest = engines.start_flink(cluster, str(tmp_path / "flink"), slots=2)
    script = ("import urllib.request\n"
              f"reply = urllib.request.urlopen('http://{rest}/overview', timeout=30)\n"
              "print('overview', reply.read().decode())\n")
    overview = engines.wait_ok(cluster.python("rest client", ["-c", script]), timeout=120)
    info = json.loads(overview.split("overview ", 1)[1])
    assert info["flink-version"].startswith(engines.FLINK_VERSION + ".")
    assert (info["taskmanagers"], info["slots-total"], info["jobs-failed"]) == (1, 2, 0)


def test_records_and_embed_jobs_on_a_flink_session_cluster_match_the_direct_runner(cluster,
                                                                                  tmp_path):
    jar = _job_server_jar("flink")
    rest = engines.start_flink(cluster, str(tmp_path / "flink"))
    pool = engines.worker_pool(cluster)
    _jobs_match_the_direct_runner(cluster, tmp_path, [
        "--runner=FlinkRunner", f"--flink_master={rest}",
        f"--flink_version={engines.FLINK_VERSION}",
        f"--flink_job_server_jar={jar}", "--parallelism=2",
        "--environment_type=EXTERNAL", f"--environment_config={pool}"])
    # Both jobs ran on this cluster, not on one the job server started itself.
    jobmanager = _process(cluster, "flink jobmanager").output
    assert jobmanager.count("switched from state RUNNING to FINISHED") >= 2, jobmanager[-3000:]


def test_records_and_embed_jobs_on_spark_match_the_direct_runner(cluster, tmp_path):
    jar = _job_server_jar("spark")
    url = engines.start_spark(cluster, str(tmp_path / "spark"))
    pool = engines.worker_pool(cluster)
    _jobs_match_the_direct_runner(cluster, tmp_path, [
        "--runner=SparkRunner", f"--spark_master_url={url}", f"--spark_job_server_jar={jar}",
        "--environment_type=EXTERNAL", f"--environment_config={pool}"])
    # Both jobs ran on this cluster's worker.
    assert _process(cluster, "spark master").output.count("Registered app ") >= 2
    assert _process(cluster, "spark worker").output.count("Asked to launch executor app-") >= 2


def test_records_and_embed_jobs_on_embedded_flink_match_the_direct_runner(cluster, tmp_path):
    jar = _job_server_jar("flink")
    pool = engines.worker_pool(cluster)
    _jobs_match_the_direct_runner(cluster, tmp_path, [
        "--runner=FlinkRunner", "--flink_master=[local]",
        f"--flink_version={engines.FLINK_VERSION}",
        f"--flink_job_server_jar={jar}", "--parallelism=2",
        "--environment_type=EXTERNAL", f"--environment_config={pool}"])
