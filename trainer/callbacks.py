"""Small Keras callbacks for the trainer."""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional

import keras

logger = logging.getLogger(__name__)


class EpochSummary(keras.callbacks.Callback):
    """Logs one line per epoch: `epoch 3/5 [head] loss=0.6931 accuracy=0.5000 ... (12.3s)`."""

    def __init__(self, total_epochs: int, phase: str = ""):
        super().__init__()
        self.total_epochs = total_epochs
        self.phase = phase
        self._start: Optional[float] = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - (self._start or time.monotonic())
        metrics = " ".join(f"{name}={_number(value)}" for name, value in sorted((logs or {}).items())
                           if name != "learning_rate")
        phase = f" [{self.phase}]" if self.phase else ""
        logger.info("epoch %d/%d%s %s (%.1fs)", epoch + 1, self.total_epochs, phase, metrics, seconds)


def _number(value) -> str:
    return str(value) if isinstance(value, int) else f"{float(value):.4f}"


class CorruptRecordCount(keras.callbacks.Callback):
    """Puts the corrupt records skipped in each epoch into its logs (--skip_corrupt_records).

    `counters` maps a log name (`corrupt_records`, `val_corrupt_records`) to an
    int64 variable that the input pipeline adds to as batches leave it
    (`data.CorruptRecords`); the epoch's count is its growth over the epoch.
    Placed before CSVLogger, TensorBoard and EpochSummary, which then write it.
    """

    def __init__(self, counters: Dict[str, "tf.Variable"]):
        super().__init__()
        self.counters = dict(counters)
        self._start: Dict[str, int] = {}

    def _values(self) -> Dict[str, int]:
        return {name: int(counter.numpy()) for name, counter in self.counters.items()}

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._values()

    def epoch_start(self, values: Dict[str, int]) -> None:
        """The counts when the epoch began (a fit resumed inside an epoch, `trainer.preemption`)."""
        self._start.update(values)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, value in self._values().items():
            logs[name] = value - self._start.get(name, 0)


def best_of(callbacks: List[keras.callbacks.Callback]) -> Optional[float]:
    """The best value that the save_best_only ModelCheckpoint in `callbacks` has seen (or None).

    The next phase's checkpoint starts from it, so that best.weights.h5 stays
    the best of the run while the model is the same.
    """
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.ModelCheckpoint) and callback.save_best_only:
            # None or infinite before the first epoch (a phase that its backup says is done).
            if callback.best is None or abs(float(callback.best)) == float("inf"):
                return None
            return float(callback.best)
    return None
