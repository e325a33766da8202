"""Small Keras callbacks for the trainer."""

from __future__ import annotations

import time
from typing import Callable, Optional

import keras


class EpochSummary(keras.callbacks.Callback):
    """Prints one line per epoch: `epoch 3/5 [head] loss=0.6931 accuracy=0.5000 ... (12.3s)`."""

    def __init__(self, total_epochs: int, phase: str = "", print_fn: Callable[[str], None] = print):
        super().__init__()
        self.total_epochs = total_epochs
        self.phase = phase
        self.print_fn = print_fn
        self._start: Optional[float] = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - (self._start or time.monotonic())
        metrics = " ".join(f"{name}={float(value):.4f}" for name, value in sorted((logs or {}).items())
                           if name != "learning_rate")
        phase = f" [{self.phase}]" if self.phase else ""
        self.print_fn(f"epoch {epoch + 1}/{self.total_epochs}{phase} {metrics} ({seconds:.1f}s)")
