"""Small Keras callbacks for the trainer."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Dict, List, Optional

import keras
import tensorflow as tf

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
        """The counts when the epoch began (a fit resumed inside an epoch, `trainer.training.preemption`)."""
        self._start.update(values)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for name, value in self._values().items():
            logs[name] = value - self._start.get(name, 0)


class BestWeights(keras.callbacks.Callback):
    """Saves the weights of the best epoch so far, and a JSON record of which epoch it was.

    Best = the highest `monitor` (an accuracy), ties broken by the lower
    `tie_break` (a loss): a small validation split often reaches accuracy 1.0
    at several epochs, and the loss still tells them apart. The record
    (`record_path`: epoch, 1-based over the run, the two values and the
    model's name) lets a resumed run and the evaluation know what the file
    holds. `best` is the record to beat (the same model's earlier phase).
    """

    def __init__(self, filepath: str, record_path: str, monitor: str, tie_break: str,
                 best: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.filepath = filepath
        self.record_path = record_path
        self.monitor = monitor
        self.tie_break = tie_break
        self.best = best
        self.last: Optional[Dict[str, Any]] = None

    def _key(self, record: Dict[str, Any]):
        loss = record.get("tie_break_value")
        return (record["value"], -(loss if loss is not None else math.inf))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if logs.get(self.monitor) is None:
            return
        loss = logs.get(self.tie_break)
        record = {"epoch": int(epoch) + 1, "monitor": self.monitor,
                  "value": float(logs[self.monitor]), "tie_break": self.tie_break,
                  "tie_break_value": None if loss is None else float(loss),
                  "model": self.model.name}
        self.last = record
        if self.best is not None and self._key(record) <= self._key(self.best):
            return
        self.best = record
        self.model.save_weights(self.filepath, overwrite=True)
        with tf.io.gfile.GFile(self.record_path, "w") as f:
            f.write(json.dumps(record, indent=2, sort_keys=True))


def read_best(record_path: str) -> Optional[Dict[str, Any]]:
    """The record `BestWeights` wrote (None when there is none)."""
    if not tf.io.gfile.exists(record_path):
        return None
    with tf.io.gfile.GFile(record_path) as f:
        return json.load(f)


def best_of(callbacks: List[keras.callbacks.Callback]) -> Optional[Dict[str, Any]]:
    """The best record of the BestWeights in `callbacks` (or None).

    The next phase's callback starts from it, so that best.weights.h5 stays
    the best of the run while the model is the same.
    """
    for callback in callbacks:
        if isinstance(callback, BestWeights):
            return callback.best
    return None
