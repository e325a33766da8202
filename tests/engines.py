"""Test helper for the Beam jobs on Apache Flink and Apache Spark on this machine: Beam's job
server jars (fetched from Maven Central with Maven into the ignored `.cache/jars/`), a Spark
standalone master and worker from pyspark's own distribution, a Flink session cluster from
Flink's distribution jars, and the records of a job's output per split, to compare runners.

`python -m tests.engines fetch` (the Makefile's `engine-jars`) fetches the jars ahead of time.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List

from apache_beam import version as beam_version

from tests.cluster_processes import ROOT, Cluster, Process, free_port

BEAM_VERSION = beam_version.__version__  # the job server must be the same release as the SDK
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


_MISSES: Dict[str, str] = {}  # engine -> Maven's answer, asked once per process


def java_missing() -> str:
    """Why Java cannot run the job servers here, or '' when it can."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (Beam's Flink and Spark job servers are Java programs)"
    return ""


def jar_name(engine: str) -> str:
    _, artifact, version = ARTIFACTS[engine].split(":")
    return f"{artifact}-{version}.jar"


def fetch_job_server_jar(engine: str) -> str:
    """The path of Beam's `engine` job server jar: .cache/jars/ (fetched there with Maven once),
    or where Beam itself caches it (~/.apache_beam/cache/jars/, where its error message says
    to stage the jar on a machine without access to Maven Central).

    Raises JarUnavailable with Maven's own error when Maven Central does not serve it."""
    path = os.path.join(JAR_CACHE, jar_name(engine))
    staged = os.path.join(os.path.expanduser("~"), ".apache_beam", "cache", "jars",
                          jar_name(engine))
    for candidate in (path, staged):
        if os.path.exists(candidate):
            return candidate
    if engine in _MISSES:
        raise JarUnavailable(_MISSES[engine])
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
        _MISSES[engine] = f"`{' '.join(command)}`: {detail.strip()}"
        raise JarUnavailable(_MISSES[engine])
    return path


def spark_home() -> str:
    """pyspark's own Spark distribution (bin/, sbin/, jars/), from the `engines` extra."""
    try:
        import pyspark  # pylint: disable=g-import-not-at-top
    except ImportError:
        raise RuntimeError("pyspark is not installed (pip install -e '.[engines]')") from None
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


def flink_home() -> str:
    """Flink's distribution (lib/ with flink-dist, bin/bash-java-utils.jar) as
    apache-flink-libraries ships it in the `engines` extra (a namespace package `pyflink`)."""
    import importlib.util  # pylint: disable=g-import-not-at-top
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("apache-flink-libraries is not installed (pip install -e '.[engines]')")
    return list(spec.submodule_search_locations)[0]


_FLINK_LOG4J = """rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
appender.console.name = console
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss,SSS} %-5p %c - %m%n
"""


def start_flink(cluster: Cluster, work_dir: str, slots: int = 2) -> str:
    """A Flink session cluster on 127.0.0.1 (one JobManager, one TaskManager); returns the REST
    address (host:port) that `--flink_master` takes.

    The JVMs are started in the foreground as bin/jobmanager.sh and bin/taskmanager.sh start
    them: the TaskManager gets the memory sizes that Flink's BashJavaUtils derives from the
    configuration (its JVM flags and `-D` options)."""
    home = flink_home()
    conf = os.path.join(work_dir, "conf")
    os.makedirs(os.path.join(work_dir, "tmp"), exist_ok=True)
    os.makedirs(conf, exist_ok=True)
    rest_port = free_port()
    settings = {
        "jobmanager.rpc.address": "127.0.0.1", "jobmanager.bind-host": "127.0.0.1",
        "jobmanager.rpc.port": free_port(), "jobmanager.memory.process.size": "1024m",
        "taskmanager.host": "127.0.0.1", "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.numberOfTaskSlots": slots, "taskmanager.memory.process.size": "1536m",
        "rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1", "rest.port": rest_port,
        "io.tmp.dirs": os.path.join(work_dir, "tmp")}
    with open(os.path.join(conf, "flink-conf.yaml"), "w") as f:
        f.writelines(f"{key}: {value}\n" for key, value in settings.items())
    log4j = os.path.join(conf, "log4j-console.properties")
    with open(log4j, "w") as f:
        f.write(_FLINK_LOG4J)
    classpath = os.path.join(home, "lib", "*")
    java = ["java", f"-Dlog4j.configurationFile={log4j}"]
    jobmanager = cluster.start("flink jobmanager", [
        *java, "-cp", classpath,
        "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
        "--configDir", conf])
    jobmanager.wait_for(r"Rest endpoint listening at", timeout=120)
    utils = subprocess.run(
        ["java", "-cp",
         os.pathsep.join([classpath, os.path.join(home, "bin", "bash-java-utils.jar")]),
         "org.apache.flink.runtime.util.bash.BashJavaUtils", "GET_TM_RESOURCE_PARAMS",
         "--configDir", conf], capture_output=True, text=True, timeout=120, check=True)
    results = [line.split(":", 1)[1] for line in utils.stdout.splitlines()
               if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")]
    jvm_flags, dynamic = results[-2].split(), results[-1].split()
    taskmanager = cluster.start("flink taskmanager", [
        *java, *jvm_flags, "-cp", classpath,
        "org.apache.flink.runtime.taskexecutor.TaskManagerRunner", "--configDir", conf, *dynamic])
    taskmanager.wait_for(r"Successful registration at resource manager", timeout=120)
    return f"127.0.0.1:{rest_port}"


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
