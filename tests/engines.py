"""Test helper for the Beam jobs on Apache Flink and Apache Spark on this machine: Beam's job
server jars (fetched from Maven Central with Maven into the ignored `.cache/jars/`), a Spark
standalone master and worker from pyspark's own distribution, and the records of a job's
output per split, to compare runners.

`python -m tests.engines fetch` (the Makefile's `engine-jars`) fetches the jars ahead of time.
"""

from __future__ import annotations

import hashlib
import glob
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List

from tests.cluster_processes import ROOT, Cluster, Process, free_port

BEAM_VERSION = "2.72.0"  # setup.py's apache-beam pin; the job server must be the same release
# Beam 2.72 publishes Flink job servers for 1.17-1.20 (FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS);
# 1.20, its default, is the newest.
FLINK_VERSION = "1.20"
JAR_CACHE = os.path.join(ROOT, ".cache", "jars")
ARTIFACTS = {
    "flink": f"org.apache.beam:beam-runners-flink-{FLINK_VERSION}-job-server:{BEAM_VERSION}",
    "spark": f"org.apache.beam:beam-runners-spark-3-job-server:{BEAM_VERSION}",
}


class JarUnavailable(RuntimeError):
    """The job server jar is neither cached nor fetchable; the message says why."""


def java_missing() -> str:
    """Why Java cannot run the job servers here, or '' when it can."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (Beam's Flink and Spark job servers are Java programs)"
    return ""


def jar_path(engine: str) -> str:
    _, artifact, version = ARTIFACTS[engine].split(":")
    return os.path.join(JAR_CACHE, f"{artifact}-{version}.jar")


def fetch_job_server_jar(engine: str) -> str:
    """The path of Beam's `engine` job server jar in .cache/jars, fetched with Maven once.

    Raises JarUnavailable with Maven's own error when Maven Central does not serve it."""
    path = jar_path(engine)
    if os.path.exists(path):
        return path
    os.makedirs(JAR_CACHE, exist_ok=True)
    # -U: ask Central again even when an earlier miss is cached in ~/.m2.
    command = ["mvn", "-B", "-q", "-U", "dependency:copy", f"-Dartifact={ARTIFACTS[engine]}",
               f"-DoutputDirectory={JAR_CACHE}"]
    result = subprocess.run(command, cwd=JAR_CACHE, capture_output=True, text=True,
                            timeout=900, check=False)
    if result.returncode != 0 or not os.path.exists(path):
        output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
        errors = re.findall(r"\[ERROR\] Failed to execute goal .*?: (.*)", output)
        detail = errors[0] if errors else output[-600:]
        raise JarUnavailable(f"`{' '.join(command)}`: {detail.strip()}")
    return path


def spark_home() -> str:
    """pyspark's own Spark distribution (bin/, sbin/, jars/), from the `engines` extra."""
    import pyspark  # pylint: disable=g-import-not-at-top
    return os.path.dirname(pyspark.__file__)


def start_spark(cluster: Cluster, work_dir: str, cores: int = 2) -> str:
    """A Spark standalone master and one worker on 127.0.0.1; returns the master URL.

    Started in the foreground with `bin/spark-class` (what sbin/start-master.sh and
    start-worker.sh run as daemons), so that the Cluster stops them with the test."""
    home = spark_home()
    port, ui_port, worker_ui = free_port(), free_port(), free_port()
    env = {"SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOCAL_DIRS": work_dir,
           "SPARK_WORKER_DIR": work_dir, "PYSPARK_PYTHON": sys.executable,
           "SPARK_NO_DAEMONIZE": "1"}
    spark_class = os.path.join(home, "bin", "spark-class")
    master = cluster.start("spark master", [
        spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
        "--port", str(port), "--webui-port", str(ui_port)], **env)
    master.wait_for(r"Starting Spark master at spark://", timeout=120)
    url = f"spark://127.0.0.1:{port}"
    worker = cluster.start("spark worker", [
        spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
        "--cores", str(cores), "--memory", "2g", "--webui-port", str(worker_ui),
        "--work-dir", work_dir], **env)
    worker.wait_for(r"Successfully registered with master", timeout=120)
    return url


def worker_pool(cluster: Cluster) -> str:
    """Beam's Python SDK worker pool (the EXTERNAL environment a task manager's sidecar runs)."""
    port = free_port()
    cluster.python("worker pool", ["-m", "apache_beam.runners.worker.worker_pool_main",
                                   f"--service_port={port}"])
    return f"localhost:{port}"


def records_by_split(folder: str) -> Dict[str, List[str]]:
    """{split: the sorted sha256 of every serialized record in that split's shards}.

    Per split, not per shard: Beam's file sink deals records to shards from a random start."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    out: Dict[str, List[str]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "*-of-*.tfrecord*"))):
        split = os.path.basename(path).split("-", 1)[0]
        compression = "GZIP" if path.endswith(".gz") else ""
        digests = out.setdefault(split, [])
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            digests.append(hashlib.sha256(record.numpy()).hexdigest())
    return {split: sorted(digests) for split, digests in out.items()}


def wait_ok(job: Process, timeout: float) -> str:
    """The job's output after it exited 0 (AssertionError with its output otherwise)."""
    code = job.wait(timeout=timeout)
    assert code == 0, f"{job.name} exited {code}:\n{job.output[-4000:]}"
    return job.output


def main(argv: List[str]) -> int:
    if argv[1:] != ["fetch"]:
        print("usage: python -m tests.engines fetch", file=sys.stderr)
        return 2
    missing = java_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    code = 0
    for engine in ARTIFACTS:
        try:
            print(f"{engine}: {fetch_job_server_jar(engine)}")
        except JarUnavailable as e:
            print(f"error: {engine} job server: {e}", file=sys.stderr)
            code = 2
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
