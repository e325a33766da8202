"""How the trainer's commands show its library modules' log lines.

The library modules log (`logging.getLogger(__name__)`); the commands
(`trainer.task`, `trainer.predict`) call `configure()`, which writes the
`trainer` loggers' INFO lines to stdout as plain lines, and warnings as
`warning: ...`, as the commands printed them before (on stderr with
`stderr=True`: `trainer.predict --json`, whose stdout is the JSON alone).
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
    """A handler on whatever sys.stdout (or, with `to_stderr`, sys.stderr) is when a line is
    written (tests swap them)."""

    to_stderr = False

    @property
    def stream(self):
        return sys.stderr if self.to_stderr else sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def configure(level: int = logging.INFO, stderr: bool = False) -> None:
    """Shows the `trainer` loggers' lines of `level` and above on stdout, or on stderr (one
    handler per process; a later call sets its level and stream)."""
    root = logging.getLogger("trainer")
    root.setLevel(level)
    # Not also through the root logger, which TensorFlow's absl may have given a handler.
    root.propagate = False
    handlers = [handler for handler in root.handlers if isinstance(handler, _Stdout)]
    if not handlers:
        handlers = [_Stdout()]
        handlers[0].setFormatter(_Format())
        root.addHandler(handlers[0])
    for handler in handlers:
        handler.to_stderr = stderr
