"""The trainer's run configuration: one dataclass, written to JOB_DIR/config.json."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

STRATEGIES = ("mirrored", "multi_worker", "one_device", "default", "tpu")
RNN_TYPES = ("lstm", "gru")
MIXED_PRECISION = ("none", "bf16", "fp16")
JIT_COMPILE = ("auto", "true", "false")


class UsageError(ValueError):
    """A configuration or environment problem the user can fix; the CLI prints it as one line."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs (the CLI flags of `python -m trainer.task`)."""

    # Data: a records-job output folder, or globs (+ the card's values given explicitly).
    data_dir: str = ""
    train_files: str = ""
    eval_files: str = ""
    test_files: str = ""
    num_frames: Optional[int] = None  # default: the card's frames per play
    height: Optional[int] = None  # default: the card's frame size
    width: Optional[int] = None
    compression: Optional[str] = None
    labels: Optional[List[str]] = None  # default: the card's vocabulary
    shuffle_buffer: int = 256

    # Outputs.
    job_dir: str = ""
    checkpoint_dir: str = ""  # default JOB_DIR/checkpoints (Vertex AI: AIP_CHECKPOINT_DIR)
    log_dir: str = ""  # default JOB_DIR/logs (Vertex AI: AIP_TENSORBOARD_LOG_DIR)

    # Model.
    cut_layer: str = "block5_pool"
    weights: str = "imagenet"  # imagenet | none | PATH
    trainable_from: str = "none"  # LAYER | none | all
    rnn: str = "lstm"
    rnn_units: int = 256
    bidirectional: bool = False
    dropout: float = 0.3
    feature_norm: bool = True

    # Training.
    epochs: int = 10
    batch_size: int = 8  # global
    learning_rate: float = 1e-3
    steps_per_epoch: Optional[int] = None  # default: train plays // batch_size
    validation_steps: Optional[int] = None  # default: all eval plays
    fine_tune_epochs: int = 0
    fine_tune_from: str = ""  # default: first conv of the last block kept by the cut
    fine_tune_learning_rate: float = 1e-5
    seed: Optional[int] = 42
    mixed_precision: str = "none"
    jit_compile: str = "auto"

    # Distribution.
    strategy: str = "mirrored"
    cpu_replicas: int = 0
    tpu: str = ""

    def validate(self) -> "TrainConfig":
        """Checks values that argparse cannot; raises UsageError."""
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown --strategy={self.strategy!r}: use one of {', '.join(STRATEGIES)}")
        if self.rnn not in RNN_TYPES:
            raise UsageError(f"unknown --rnn={self.rnn!r}: use one of {', '.join(RNN_TYPES)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UsageError(f"unknown --mixed_precision={self.mixed_precision!r}: "
                             f"use one of {', '.join(MIXED_PRECISION)}")
        if self.jit_compile not in JIT_COMPILE:
            raise UsageError(f"--jit_compile must be one of {', '.join(JIT_COMPILE)}")
        if not self.data_dir and not self.train_files:
            raise UsageError("no training data: give --data_dir (the records job's output) "
                             "or --train_files (and --eval_files) globs")
        if not self.job_dir:
            raise UsageError("no --job_dir (or AIP_MODEL_DIR) to write checkpoints and the model to")
        for name in ("epochs", "batch_size", "rnn_units"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.fine_tune_epochs < 0:
            raise UsageError(f"--fine_tune_epochs must be >= 0, got {self.fine_tune_epochs}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.cpu_replicas < 0:
            raise UsageError(f"--cpu_replicas must be >= 0, got {self.cpu_replicas}")
        return self

    @property
    def checkpoints_path(self) -> str:
        return self.checkpoint_dir or os.path.join(self.job_dir, "checkpoints")

    @property
    def logs_path(self) -> str:
        return self.log_dir or os.path.join(self.job_dir, "logs")

    @property
    def backup_path(self) -> str:
        return os.path.join(self.job_dir, "backup")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**values)
