"""Training: records -> tf.distribute Keras fit (head, then optional fine-tune) -> eval + export.

`train(config)` is the entry point (`python -m trainer.task` parses the flags
into a config and calls it); every worker of a cluster calls it. The task
(`trainer.training.play_task`) is the single-replica view; the runner
(`trainer.training.runner`) the job around it.
"""

from __future__ import annotations

from typing import Any, Dict

from trainer.training import compat
from trainer.config import TrainConfig
from trainer.training.runner import Runner


def train(config: TrainConfig) -> Dict[str, Any]:
    """Runs one training job (every worker calls this); returns a summary dict."""
    compat.apply_all()
    return Runner(config).run()
