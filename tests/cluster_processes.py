"""Test helper: start a cluster's processes (job servers, tf.data service, trainer workers) on
this machine, reachable on the loopback interface only, and stop every one of them afterwards.

TensorFlow's gRPC servers (tf.data service, MultiWorkerMirroredStrategy) and Beam's
portable-runner services bind the wildcard address, with no option to bind 127.0.0.1.
Where `unshare --net` and `nsenter` are allowed (root or CAP_SYS_ADMIN), every process
of a `Cluster` runs in one private network namespace whose only interface is the
loopback one; elsewhere the processes run in the host's namespace, reached at localhost.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> Dict[str, str]:
    """A child environment: quiet TensorFlow, the repo importable, this Python first on PATH
    (Beam's worker pool starts SDK workers as `python`), no TF_CONFIG unless given."""
    out = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT,
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    out.pop("TF_CONFIG", None)
    out.update(extra)
    return out


class Process:
    """A started process whose merged stdout/stderr is collected by a thread."""

    def __init__(self, popen: subprocess.Popen, name: str):
        self.popen, self.name = popen, name
        self.lines: List[str] = []
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first output line matching `pattern` (AssertionError after `timeout` s or at exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if line is None:
                break
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"{self.name}: no line matching {pattern!r}; output:\n"
                             f"{self.output[-3000:]}")

    def wait(self, timeout: float) -> int:
        """The exit status; AssertionError (after killing it) when it runs past `timeout` s."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} still running after {timeout} s; output:\n"
                                 f"{self.output[-3000:]}") from None
        self._reader.join(timeout=10)  # the rest of the output
        return code

    def kill(self) -> None:
        """SIGKILL to the process and to the processes it started (its own process group)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)


class Cluster:
    """Processes of one test, in a private loopback-only network namespace when allowed."""

    def __init__(self):
        self.processes: List[Process] = []
        self._holder: Optional[subprocess.Popen] = None
        self.prefix: List[str] = []
        if all(shutil.which(tool) for tool in ("unshare", "nsenter", "ip")):
            holder = subprocess.Popen(
                ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if holder.stdout.readline().strip() == "up":
                self._holder = holder
                self.prefix = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
            else:
                holder.kill()
                holder.wait(timeout=10)

    @property
    def isolated(self) -> bool:
        return self._holder is not None

    def start(self, name: str, args: Sequence[str], **env_extra) -> Process:
        """Starts `args` (e.g. [sys.executable, "-m", ...]) in the repo root."""
        popen = subprocess.Popen([*self.prefix, *args], cwd=ROOT, env=env(**env_extra),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
        process = Process(popen, name)
        self.processes.append(process)
        return process

    def python(self, name: str, args: Sequence[str], **env_extra) -> Process:
        return self.start(name, [sys.executable, *args], **env_extra)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.kill()
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait(timeout=10)
