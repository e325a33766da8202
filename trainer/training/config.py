"""The training job's settings: the schedule and optimisation (TrainingConfig), what is
evaluated and exported (EvaluationConfig), and where and how the job runs (RuntimeConfig:
outputs, distribution, preemption). No TensorFlow import (the flags and --help stay quick).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from trainer.flags import flag, optional_int

# tf.distribute strategies by name (`trainer.training.distribution.get_distribution_strategy`).
STRATEGIES = ("mirrored", "multi_worker", "one_device", "default", "tpu")
MIXED_PRECISION = ("none", "bf16", "fp16")
JIT_COMPILE = ("auto", "true", "false")
CLASS_WEIGHTS = ("none", "balanced", "logit_adjusted")
EXPORT_WEIGHTS = ("best", "last")
EVAL_SPLITS = ("test", "val", "none")


@dataclasses.dataclass
class TrainingConfig:
    """The phases' schedule (head, then the optional fine-tune) and how they are optimised."""

    epochs: int = flag(10, "epochs of the head phase", group="training", minimum=1)
    batch_size: int = flag(8, "global batch size", group="training", minimum=1)
    learning_rate: float = flag(1e-3, "learning rate of the head phase", group="training")
    steps_per_epoch: Optional[int] = flag(None, "default: train plays // batch_size",
                                          group="training", parse=optional_int, minimum=1)
    steps_per_execution: int = flag(1, "training steps per compiled call: more cuts the per-step "
                                    "overhead when steps are tiny (the head on cached features)",
                                    group="training", minimum=1)
    validation_steps: Optional[int] = flag(None, "default: all validation plays",
                                           group="training", parse=optional_int, minimum=1)
    fine_tune_epochs: int = flag(0, "epochs of a second phase with the top VGG16 blocks unfrozen",
                                 group="training", minimum=0)
    fine_tune_from: str = flag("", "first layer unfrozen in the fine-tune phase (default: first "
                               "conv of the last block kept by the cut)", group="training")
    fine_tune_learning_rate: float = flag(1e-5, "learning rate of the fine-tune phase",
                                          group="training")
    class_weight: str = flag("none", "balanced: weight each training play by the inverse of its "
                             "label's frequency in the card's train counts (normalised to mean 1); "
                             "logit_adjusted: the logit-adjusted loss (Menon et al. 2021) adds "
                             "tau * log(train label frequency) to the logits in the training loss "
                             "only (the exported model predicts with plain logits)",
                             group="training", choices=CLASS_WEIGHTS)
    logit_adjustment_tau: float = flag(1.0, "tau of --class_weight=logit_adjusted (1: balanced "
                                       "softmax, 0: plain cross-entropy)", group="training",
                                       minimum=0)
    balanced_sampling: bool = flag(False, "draw training plays so that every label is equally "
                                   "frequent (per-class rejection resampling in tf.data, seeded)",
                                   group="training")
    seed: Optional[int] = flag(42, "seed of weights, shuffles and augmentation (none: unseeded)",
                               group="training", parse=optional_int)
    mixed_precision: str = flag("none", "mixed precision policy (for accelerators)",
                                group="training", choices=MIXED_PRECISION)
    jit_compile: str = flag("auto", "XLA; auto = on with GPUs, off on CPU", group="training",
                            choices=JIT_COMPILE)

    @property
    def total_epochs(self) -> int:
        """The epochs of both phases."""
        return self.epochs + self.fine_tune_epochs


@dataclasses.dataclass
class EvaluationConfig:
    """The views a play is scored over and the weights evaluated and exported."""

    eval_views: int = flag(3, "temporal windows per play spread over the stored frames, "
                           "probabilities averaged (as log-probabilities) per play: evaluation, "
                           "export and predict; 1 = the centred clip", group="evaluation",
                           minimum=1)
    eval_flip: bool = flag(False, "each view also left-right flipped (2 x --eval_views views)",
                           group="evaluation")
    export_weights: str = flag("best", "the weights evaluated and exported: the best validation "
                               "epoch's (val_accuracy, ties broken by the lower val_loss) or the "
                               "last epoch's", group="evaluation", choices=EXPORT_WEIGHTS)
    eval_split: str = flag("test", "the split of the final evaluation (eval.json): test (val when "
                           "there is no test split), val, or none; a tuning trial (python -m "
                           "trainer.tune, a Vertex AI trial) uses none, so that test stays unseen",
                           group="evaluation", choices=EVAL_SPLITS)
    export: bool = flag(True, "export the classifier at the end (model.keras, saved_model/); a "
                        "tuning trial does not", group="evaluation")


@dataclasses.dataclass
class RuntimeConfig:
    """Where the job writes (outputs), how it is distributed, and how it survives a preemption
    (docs/preemption.md)."""

    job_dir: str = flag("", "checkpoints, logs, history, results (default: $AIP_MODEL_DIR)",
                        group="outputs", env="AIP_MODEL_DIR")
    log_all_workers: bool = flag(
        False, "every worker of a cluster logs the per-epoch lines (default: the chief only)",
        group="outputs")
    checkpoint_dir: str = flag("", "default: $AIP_CHECKPOINT_DIR or JOB_DIR/checkpoints",
                               group="outputs", env="AIP_CHECKPOINT_DIR")
    log_dir: str = flag("", "TensorBoard logs (default: $AIP_TENSORBOARD_LOG_DIR or "
                        "JOB_DIR/logs)", group="outputs", env="AIP_TENSORBOARD_LOG_DIR")
    hypertune: bool = flag(False, "report val_accuracy after every epoch to a Vertex AI "
                           "hyperparameter tuning job (cloudml-hypertune); on by itself when "
                           "Vertex AI runs the job as a trial (CLOUD_ML_HP_METRIC_FILE or "
                           "CLOUD_ML_TRIAL_ID set)", group="outputs")

    strategy: str = flag("mirrored", "tf.distribute strategy", group="distribution",
                         choices=STRATEGIES)
    cpu_replicas: int = flag(0, "without GPUs, split the CPU into N devices for "
                             "--strategy=mirrored", group="distribution", minimum=0)
    tpu: str = flag("", "TPU name or address for --strategy=tpu", group="distribution")
    data_service: str = flag("", "grpc://HOST:PORT of a tf.data service dispatcher (python -m "
                             "trainer.data_service): its workers run the training input pipeline "
                             "(parse, frame choice, decode, augment, batch)",
                             group="distribution")

    backup_every_steps: int = flag(0, "also back up every N training steps (0: at epoch ends and "
                                   "on SIGTERM only): a kill -9 then loses at most N steps",
                                   group="preemption", minimum=0)
    preemption_grace_seconds: float = flag(
        30.0, "on SIGTERM the run backs up at the end of the step in progress and exits 143; "
        "when no step ends within this many seconds it exits 143 without a backup",
        group="preemption", minimum=0)
    deterministic: bool = flag(False, "TensorFlow op determinism (needs --seed): a run resumed "
                               "after a preemption ends with the weights of an uninterrupted one "
                               "(one device)", group="preemption")

    @property
    def checkpoints_path(self) -> str:
        return self.checkpoint_dir or os.path.join(self.job_dir, "checkpoints")

    @property
    def logs_path(self) -> str:
        return self.log_dir or os.path.join(self.job_dir, "logs")

    @property
    def backup_path(self) -> str:
        return os.path.join(self.job_dir, "backup")
