"""KerasTuner's search over the trainer: each trial is `python -m trainer.task` with its flags.

`TrainerTuner` is a KerasTuner `BaseTuner` whose `run_trial` turns a trial's
hyperparameters into trainer flags (`space.trial_flags`), parses them with the
trainer's own parser (`trainer.config.parse_flags`) and trains through
`trainer.training.train.train` on the cached features: the path of
`python -m trainer.task` with those flags. A trial also gets TRIAL_FLAGS
(--eval_split=none --export=false): the test split is never read while tuning
and nothing is exported. Its objective is the best epoch's val_accuracy (the
epoch whose weights the trainer evaluates and exports).

OUTPUT_DIR:
  search.json     the search's settings; a second run must have the same (only
                  --max_trials may change: a larger one adds trials)
  keras_tuner/    the oracle (oracle.json, trial_*/trial.json), reloaded by a second run
                  with the same OUTPUT_DIR: finished trials are not run again, and a trial
                  that was running when the search was killed runs again under its id and
                  JOB_DIR, where the trainer resumes it from its backup
  trials/trial_<id>/   the trial's JOB_DIR (config.json, history.csv, checkpoints/) and
                  result.json (its flags, val_accuracy, best_epoch, epochs, seconds)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.engine import base_tuner

from schemas.errors import UsageError, one_line
from trainer.config import SECTIONS, TrainConfig, parse_flags
from trainer.data import sources
from trainer.training import preemption, train
from trainer.tuning import space as space_lib

logger = logging.getLogger(__name__)

OBJECTIVE = space_lib.OBJECTIVE
TUNERS = ("bayesian", "hyperband")
DEFAULT_MAX_TRIALS = 10  # of a Bayesian search
# A trial reads no test split and exports nothing; the best trial's command drops these.
TRIAL_FLAGS = space_lib.TRIAL_FLAGS
# Flags that trainer.tune sets itself: never among the fixed trainer flags.
OWN_FLAGS = ("features_dir", "job_dir", "epochs", "eval_split", "export")
# The trainer's flags by name (a fixed flag must be one, spelled out).
TRAINER_FLAGS = frozenset(field.name for section in SECTIONS.values()
                          for field in dataclasses.fields(section))
PROJECT = "keras_tuner"
SEARCH_JSON = "search.json"
RESULT_JSON = "result.json"
COMPLETED = "COMPLETED"  # a finished trial's status (keras_tuner's TrialStatus)


@dataclasses.dataclass
class SearchOptions:
    """A search: where the features are and the outputs go, its size, and the trainer flags
    that every trial shares (`fixed_flags`, e.g. --seed=1 --strategy=default)."""

    features_dir: str
    output_dir: str
    max_trials: Optional[int] = None  # None: 10 (bayesian), all its brackets hold (hyperband)
    epochs: int = 10  # per trial (hyperband: the most a trial gets)
    tuner: str = "bayesian"
    seed: int = 0  # of the oracle's choices
    fixed_flags: Tuple[str, ...] = ()
    # The first trial's tuned flags (bayesian): e.g. today's settings, so that the search
    # starts from them and its best is never below them on val.
    first_trial: Tuple[str, ...] = ()


@dataclasses.dataclass
class SearchResult:
    """What the search ended with: every trial's row (`trial_rows`) and the best one."""

    rows: List[Dict[str, Any]]
    best: Optional[Dict[str, Any]]
    trials_run: int  # by this run


class _Stop(keras_tuner.errors.FatalError):
    """Ends the search (KerasTuner records other errors as a failed trial): a usage error, or
    a preemption (the trial stays unfinished, and the next run resumes it)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def trial_dir(output_dir: str, trial_id: str) -> str:
    return os.path.join(output_dir, "trials", f"trial_{trial_id}")


def flag_name(flag: str) -> str:
    return flag[2:].split("=", 1)[0]


def prepare(options: SearchOptions) -> Tuple[space_lib.Param, ...]:
    """Checks the options (UsageError) and returns the search space of the features."""
    if options.tuner not in TUNERS:
        raise UsageError(f"unknown --tuner={options.tuner!r}: use one of {', '.join(TUNERS)}")
    if (options.max_trials is not None and options.max_trials < 1) or options.epochs < 1:
        raise UsageError("--max_trials and --epochs must be >= 1")
    card = sources.load_features_card(options.features_dir)
    if not card.counts.get("val"):
        raise UsageError(f"{options.features_dir!r} has no val split: the search scores trials "
                         f"by their val_accuracy (make the records with a val split)")
    for flag in options.fixed_flags:
        if not flag.startswith("--"):
            raise UsageError(f"unexpected argument {flag!r}: trainer flags are --name=value")
        if flag_name(flag) not in TRAINER_FLAGS:  # argparse would take --epoch for --epochs
            raise UsageError(f"unknown trainer flag {flag.split('=', 1)[0]} (python -m "
                             f"trainer.task --help lists them)")
        if flag_name(flag) in space_lib.TUNED + OWN_FLAGS:
            raise UsageError(f"{flag.split('=', 1)[0]} is set by the search, not a fixed flag "
                             f"(tuned: {', '.join(space_lib.TUNED)})")
    space = space_lib.search_space(card.num_frames)
    if options.first_trial:
        if options.tuner != "bayesian":
            raise UsageError("--first_trial needs --tuner=bayesian (Hyperband's brackets choose "
                             "their own trials)")
        try:
            trial_config(options, space_lib.parse_values(options.first_trial, space),
                         "trial-check")
        except ValueError as err:
            raise UsageError(f"--first_trial {err}") from None
    # Every value of a choice parses and validates with the fixed flags (e.g. --bidirectional
    # needs --head=rnn), so that no trial fails on a usage error.
    for param in space:
        for value in param.values or (param.low, param.high):
            values = {p.flag: (p.values[0] if p.values else p.low) for p in space}
            values[param.flag] = value
            trial_config(options, values, "trial-check")
    return space


def trial_command(options: SearchOptions, values: Dict[str, Any]) -> List[str]:
    """The `python -m trainer.task` flags of a trial (without --job_dir and TRIAL_FLAGS);
    Hyperband's trials train for its `tuner/epochs`."""
    epochs = values.get("tuner/epochs", options.epochs)
    return [f"--features_dir={options.features_dir}", *options.fixed_flags,
            *space_lib.trial_flags(values), f"--epochs={epochs}"]


def trial_config(options: SearchOptions, values: Dict[str, Any], job_dir: str) -> TrainConfig:
    """The trial's TrainConfig, parsed by the trainer's parser (UsageError for bad flags)."""
    config = parse_flags([*trial_command(options, values), f"--job_dir={job_dir}", *TRIAL_FLAGS])
    return config.validate()


class TrainerTuner(base_tuner.BaseTuner):
    """A KerasTuner tuner whose trials are trainer runs (see the module docstring)."""

    def __init__(self, oracle: keras_tuner.Oracle, options: SearchOptions):
        super().__init__(oracle, directory=options.output_dir, project_name=PROJECT,
                         overwrite=False)
        self.options = options
        self.trials_run = 0

    def on_search_begin(self):
        # KerasTuner reloads the oracle only where its tuner file is, which it first writes
        # at a trial's end: written now, a search killed in its first trial resumes too.
        self.save()

    def run_trial(self, trial, *args, **kwargs):
        values = dict(trial.hyperparameters.values)
        job_dir = trial_dir(self.options.output_dir, trial.trial_id)
        try:
            config = trial_config(self.options, values, job_dir)
            keras.backend.clear_session()  # the last trial's graphs and names
            start = time.monotonic()
            summary = train.train(config)
        except (UsageError, preemption.Preempted) as err:
            raise _Stop(err) from err
        except Exception as err:  # KerasTuner records the trial as failed and goes on
            logger.warning("trial %s failed: %s: %s", trial.trial_id, type(err).__name__,
                           one_line(err))
            raise
        best = summary.get("best") or {}
        if best.get("monitor") != OBJECTIVE:
            raise keras_tuner.errors.FailedTrialError(f"trial {trial.trial_id}: no {OBJECTIVE}")
        result = {"trial_id": trial.trial_id, "flags": trial_command(self.options, values),
                  OBJECTIVE: float(best["value"]), "best_epoch": best.get("epoch"),
                  "epochs": config.training.epochs,
                  "seconds": round(time.monotonic() - start, 1)}
        with tf.io.gfile.GFile(os.path.join(job_dir, RESULT_JSON), "w") as f:
            f.write(json.dumps(result, indent=2, sort_keys=True))
        self.trials_run += 1
        return {OBJECTIVE: result[OBJECTIVE]}


def make_oracle(options: SearchOptions,
                space: Sequence[space_lib.Param]) -> keras_tuner.Oracle:
    """Bayesian optimization over --max_trials trials, or Hyperband up to --epochs per trial
    (its brackets decide the trials; --max_trials caps them)."""
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    hp = space_lib.hyperparameters(space)
    if options.tuner == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(
            objective, max_epochs=options.epochs, factor=3, seed=options.seed, hyperparameters=hp)
        oracle.max_trials = options.max_trials  # create_trial stops at it (None: no cap)
        return oracle
    max_trials = options.max_trials or DEFAULT_MAX_TRIALS
    # KerasTuner's default, 3 random trials per dimension (18), would leave a 10-trial search
    # random: a third of the trials (at least 2) are random, the rest follow its Gaussian process.
    first = space_lib.parse_values(options.first_trial, space) if options.first_trial else {}
    return _BayesianOracle(
        objective, max_trials=max_trials, seed=options.seed, hyperparameters=hp,
        num_initial_points=initial_points(max_trials, len(space)), first_values=first)


class _BayesianOracle(keras_tuner.oracles.BayesianOptimizationOracle):
    """KerasTuner's Bayesian optimization whose first trial, when given, takes `first_values`
    (a resumed search has trials already, so it never repeats it)."""

    def __init__(self, *args, first_values: Optional[Dict[str, Any]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_values = dict(first_values or {})

    def populate_space(self, trial_id):
        if self.first_values and not self.trials:
            return {"status": "RUNNING", "values": dict(self.first_values)}
        return super().populate_space(trial_id)


def initial_points(max_trials: int, dimensions: int) -> int:
    """The random trials that start a Bayesian search (kept from its first run on resume)."""
    return min(3 * dimensions, max(2, max_trials // 3))


def check_same_search(options: SearchOptions) -> None:
    """Writes OUTPUT_DIR/search.json, or checks that a search there had the same settings."""
    settings = {"features_dir": options.features_dir, "tuner": options.tuner,
                "epochs": options.epochs, "seed": options.seed,
                "fixed_flags": list(options.fixed_flags),
                "first_trial": list(options.first_trial)}
    path = os.path.join(options.output_dir, SEARCH_JSON)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            before = {"first_trial": [], **json.load(f)}  # searches from before the flag
        changed = sorted(key for key in settings if before.get(key) != settings[key])
        if changed:
            raise UsageError(f"{options.output_dir!r} holds a search with other settings "
                             f"({', '.join(f'{k}={before.get(k)!r}' for k in changed)}): use "
                             f"them to resume it, or another --output_dir")
        return
    tf.io.gfile.makedirs(options.output_dir)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(settings, indent=2, sort_keys=True))


def run_search(options: SearchOptions) -> SearchResult:
    """Runs (or resumes) the search; returns every trial's row and the best.

    Raises UsageError, or `preemption.Preempted` after a SIGTERM (the trial's
    backup written: the same command resumes it).
    """
    space = prepare(options)
    check_same_search(options)
    tuner = TrainerTuner(make_oracle(options, space), options)
    try:
        tuner.search()
    except _Stop as stop:
        raise stop.error from None
    rows = trial_rows(tuner.oracle, options, space)
    completed = [row for row in rows if row[OBJECTIVE] is not None]
    best = None
    if completed:
        best_trial = tuner.oracle.get_best_trials(1)[0]
        best = next(row for row in rows if row["trial_id"] == best_trial.trial_id)
    return SearchResult(rows, best, tuner.trials_run)


def trial_rows(oracle: keras_tuner.Oracle, options: SearchOptions,
               space: Sequence[space_lib.Param]) -> List[Dict[str, Any]]:
    """One row per trial, in the order they started: id, status, each tuned flag, and the
    result of a finished trial (val_accuracy, best_epoch, epochs, seconds, its flags)."""
    rows = []
    for trial_id in oracle.start_order:
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        path = os.path.join(trial_dir(options.output_dir, trial_id), RESULT_JSON)
        result: Dict[str, Any] = {}
        if trial.status == COMPLETED and tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                result = json.load(f)
        row = {"trial_id": trial_id, "status": trial.status,
               **{param.flag: values.get(param.flag) for param in space},
               OBJECTIVE: result.get(OBJECTIVE), "best_epoch": result.get("best_epoch"),
               "epochs": result.get("epochs", values.get("tuner/epochs", options.epochs)),
               "seconds": result.get("seconds"), "flags": result.get("flags")}
        rows.append(row)
    return rows
