"""How the trainer's commands show its library modules' log lines.

The library modules log (`logging.getLogger(__name__)`); the commands
(`trainer.task`, `trainer.predict`) call `configure()`, which writes the
`trainer` loggers' INFO lines to stdout as plain lines, and warnings as
`warning: ...`, as the commands printed them before.
"""

from __future__ import annotations

import logging
import sys


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


class _Stdout(logging.StreamHandler):
    """A handler on whatever sys.stdout is when a line is written (tests swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def configure(level: int = logging.INFO) -> None:
    """Shows the `trainer` loggers' lines of `level` and above on stdout (once per process)."""
    root = logging.getLogger("trainer")
    root.setLevel(level)
    # Not also through the root logger, which TensorFlow's absl may have given a handler.
    root.propagate = False
    if not any(isinstance(handler, _Stdout) for handler in root.handlers):
        handler = _Stdout()
        handler.setFormatter(_Format())
        root.addHandler(handler)
