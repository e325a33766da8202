"""Training: records -> tf.distribute Keras fit (head, then optional fine-tune) -> eval + export.

`train(config)` is the entry point (`python -m trainer.task` parses the flags
into a config and calls it); every worker of a cluster calls it. It wires the
parts: the strategy, seed and precision (`distribution.set_up`), the task
(`play_task`: phases, models, inputs), the generic loop (`fit_loop`) and, on
the chief, the evaluation and export (`finalize`).

JOB_DIR layout:
  config.json        the run's configuration by section, and what it resolved to (chief)
  checkpoints/, backup/, logs/, history.csv       the fit loop's (`fit_loop`)
  eval.json, confusion_matrix.png, model.keras, saved_model/   results (chief, `finalize`):
                     of the best validation epoch's weights (--export_weights=best) or the last's
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict

import keras
import tensorflow as tf

from trainer.config import TrainConfig
from trainer.training import compat, distribution, finalize, fit_loop, preemption
from trainer.training.play_task import PlayClassificationTask

logger = logging.getLogger(__name__)

CONFIG_JSON = "config.json"


def train(config: TrainConfig) -> Dict[str, Any]:
    """Runs one training job (every worker calls this); returns a summary dict.

    Raises `preemption.Preempted` after a SIGTERM, once the backup is written.
    """
    compat.apply_all()
    config.validate()
    strategy = distribution.set_up(config.training, config.runtime)
    task = PlayClassificationTask.from_config(config)
    with preemption.SigtermWatch(config.runtime.preemption_grace_seconds) as watch:
        loop = fit_loop.FitLoop(task, strategy, config.runtime, watch)
        if loop.is_chief:
            write_config(config, task, strategy)
            logger.info("strategy %s with %d replica(s); %s", type(strategy).__name__,
                        strategy.num_replicas_in_sync, task.describe())
        model, last_phase = loop.run()
        # best: the best validation epoch's record (`callbacks.BestWeights`: epoch, monitor,
        # value), the objective of a tuning trial (`trainer.tuning`).
        summary: Dict[str, Any] = {"chief": loop.is_chief, "epochs": loop.total_epochs,
                                   "num_replicas": strategy.num_replicas_in_sync,
                                   "best": loop.best, "last": loop.last}
        if loop.is_chief:
            summary.update(finalize.finalize(
                task, model, last_phase, config.evaluation, config.runtime.job_dir,
                best=loop.best, last=loop.last, best_path=loop.best_paths()[0]))
        loop.finish()
    return summary


def write_config(config: TrainConfig, task: PlayClassificationTask,
                 strategy: tf.distribute.Strategy) -> None:
    """JOB_DIR/config.json: the configuration and what it resolved to (chief)."""
    resolved = {**task.resolved(), "num_replicas": strategy.num_replicas_in_sync,
                "strategy": type(strategy).__name__,
                "tensorflow": tf.__version__, "keras": keras.__version__}
    record = {"config": config.to_dict(), "resolved": resolved}
    path = os.path.join(config.runtime.job_dir, CONFIG_JSON)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))
