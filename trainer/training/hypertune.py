"""The trial's side of a Vertex AI hyperparameter tuning job: val_accuracy after every epoch.

Vertex AI runs each trial of a tuning job as a custom job of the trainer
(`python -m trainer.task` with the trial's flags appended, `vertex/hp_tuning.yaml`)
and reads the trial's metric from what `cloudml-hypertune` writes: JSON lines in
the file named by CLOUD_ML_HP_METRIC_FILE (default /tmp/hypertune/output.metrics),
one per report, `{"val_accuracy": "0.75", "global_step": "3", "trial": ..., ...}`.
The chief reports each epoch's val_accuracy (global_step: the epoch, 1-based);
the study takes the best of them (measurementSelectionType: BEST_MEASUREMENT), as
`python -m trainer.tune` takes the best epoch's.

Reports are made with --hypertune, or when the environment says the job is a
Vertex AI trial (TRIAL_ENV); never otherwise, so a plain run writes nothing to /tmp.
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional

import keras

logger = logging.getLogger(__name__)

METRIC = "val_accuracy"  # the study's metricId (vertex/hp_tuning.yaml)
# Set by Vertex AI in a tuning job's trials (and read by cloudml-hypertune).
TRIAL_ENV = ("CLOUD_ML_HP_METRIC_FILE", "CLOUD_ML_TRIAL_ID")


def enabled(flag: bool, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether to report: --hypertune, or a Vertex AI trial's environment."""
    environ = os.environ if environ is None else environ
    return flag or any(environ.get(name) for name in TRIAL_ENV)


class HypertuneReport(keras.callbacks.Callback):
    """Reports each epoch's `metric` (from the epoch's logs) through cloudml-hypertune."""

    def __init__(self, metric: str = METRIC):
        super().__init__()
        import hypertune  # pylint: disable=g-import-not-at-top
        self.metric = metric
        self.reporter = hypertune.HyperTune()  # makes the metric file's folder
        logger.info("reporting %s to the tuning job through %s", metric,
                    self.reporter.metric_path)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None:
            return
        self.reporter.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=self.metric, metric_value=float(value),
            global_step=int(epoch) + 1)
