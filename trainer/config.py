"""The trainer's run configuration: one dataclass, its command-line flags and their checks.

Each field of `TrainConfig` is declared once, with its default, help text and
choices; `build_parser` turns the fields into the `python -m trainer.task`
flags and `TrainConfig.validate` checks values that argparse cannot (also for
configs built in code). The resolved configuration is written to
JOB_DIR/config.json, so that a run can be reproduced.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from schemas import labels as labels_lib
from schemas.errors import UsageError

STRATEGIES = ("mirrored", "multi_worker", "one_device", "default", "tpu")
RNN_TYPES = ("lstm", "gru")
MIXED_PRECISION = ("none", "bf16", "fp16")
JIT_COMPILE = ("auto", "true", "false")
HEADS = ("rnn", "mean_pool", "single_frame")  # trainer.modeling.model.build_head's choices
EXPORT_WEIGHTS = ("best", "last")
CLASS_WEIGHTS = ("none", "balanced")
SHUFFLE_BUFFER = 256  # records in the training shuffle buffer


def _optional_int(text: str) -> Optional[int]:
    return None if text.lower() in ("", "none") else int(text)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _read_label_file(path: str) -> Optional[str]:
    """A label file's text, local or on a TensorFlow file system (None when there is no such file)."""
    if "://" not in path:
        return labels_lib.read_local_file(path)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from trainer.data import filesystems  # pylint: disable=g-import-not-at-top
    filesystems.ensure_filesystem(path)
    try:
        if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
            return None
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read().decode("utf-8-sig")
    except (tf.errors.OpError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read label file {path}: {err}") from None


def _label_list(text: str) -> Optional[List[str]]:
    """--labels: a comma-separated list or a file of one label per line (schemas.labels)."""
    return labels_lib.label_vocabulary(text, "--labels", _read_label_file)


class _FlagError(Exception):
    """A UsageError raised by a flag's parse function, carried past argparse.

    argparse turns a type function's ValueError into its own `invalid ... value`
    message (and a usage block); this keeps the UsageError's message for the
    command's one `error:` line.
    """


def _keeping_usage_errors(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    @functools.wraps(parse)
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except UsageError as err:
            raise _FlagError(err) from None
    return convert


def flag(default: Any, help: str, *, group: str, parse: Optional[Callable[[str], Any]] = None,  # pylint: disable=redefined-builtin
         choices: Optional[Sequence[str]] = None, env: str = "", minimum: Optional[float] = None):
    """A TrainConfig field that is also a command-line flag.

    Args:
      default: the field's default (the one definition of it).
      help: the flag's help text.
      group: the --help section.
      parse: text -> value (default: the type of `default`).
      choices: the allowed values (checked by `validate`).
      env: an environment variable whose value, when set, is the flag's default
        (Vertex AI's AIP_* variables).
      minimum: the smallest allowed value (checked by `validate`).
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, parse=parse, choices=choices, env=env, minimum=minimum))


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs: the flags of `python -m trainer.task`."""

    # Data: a records-job output folder, or globs (+ the card's values given explicitly).
    data_dir: str = flag("", "the records job's --output_dir (has dataset.json; with "
                         "--features_dir, default: the records the features were computed from)",
                         group="data")
    features_dir: str = flag("", "the embed job's --output_dir (has features.json): train the "
                             "head from cached frozen-base features; evaluation, export and "
                             "fine-tuning use the play records", group="data")
    train_files: str = flag("", "comma-separated globs of the training shards (instead of "
                            "--data_dir)", group="data")
    eval_files: str = flag("", "comma-separated globs of the validation shards", group="data")
    test_files: str = flag("", "comma-separated globs of the test shards", group="data")
    num_frames: Optional[int] = flag(None, "frames per clip (default: all the records hold)",
                                     group="data", parse=_optional_int, minimum=1)
    height: Optional[int] = flag(None, "frame height (default: the card's)", group="data",
                                 parse=_optional_int, minimum=1)
    width: Optional[int] = flag(None, "frame width (default: the card's)", group="data",
                                parse=_optional_int, minimum=1)
    compression: Optional[str] = flag(None, "none|gzip (default: the card's)", group="data",
                                      parse=str)
    labels: Optional[List[str]] = flag(None, "label vocabulary: a comma-separated list or a file "
                                       "with one label per line, blank lines and # comments "
                                       "ignored (default: the card's)", group="data",
                                       parse=_label_list)
    shuffle_buffer: int = flag(SHUFFLE_BUFFER, "record shuffle buffer (training)", group="data", minimum=0)
    skip_corrupt_records: bool = flag(
        False, "skip records that fail their checksum (a corrupt or truncated shard; TFRecord "
        "cannot resynchronize, so one ends its file's reading) instead of stopping with an error "
        "naming the file; the shards are scanned at start-up and the records skipped are counted "
        "per epoch (history.csv's corrupt_records and val_corrupt_records)", group="data")

    # Outputs.
    job_dir: str = flag("", "checkpoints, logs, history, results (default: $AIP_MODEL_DIR)",
                        group="outputs", env="AIP_MODEL_DIR")
    log_all_workers: bool = flag(
        False, "every worker of a cluster logs the per-epoch lines (default: the chief only)",
        group="outputs")
    checkpoint_dir: str = flag("", "default: $AIP_CHECKPOINT_DIR or JOB_DIR/checkpoints",
                               group="outputs", env="AIP_CHECKPOINT_DIR")
    log_dir: str = flag("", "TensorBoard logs (default: $AIP_TENSORBOARD_LOG_DIR or "
                        "JOB_DIR/logs)", group="outputs", env="AIP_TENSORBOARD_LOG_DIR")

    # Model.
    cut_layer: Optional[str] = flag(None, "last VGG16 layer kept, e.g. block4_pool (default: the "
                                    "features card's, else block5_pool)", group="model", parse=str)
    weights: Optional[str] = flag(None, "imagenet | none | PATH of VGG16 notop weights (default: "
                                  "the features card's, else imagenet)", group="model", parse=str)
    trainable_from: str = flag("none", "first trainable VGG16 layer | none (frozen base) | all",
                               group="model")
    head: str = flag("rnn", "what sees the frames: the recurrent layer (rnn), or an order-agnostic "
                     "baseline: the frames' mean (mean_pool) or the middle frame (single_frame), "
                     "each then a Dense layer of --rnn_units", group="model", choices=HEADS)
    rnn: str = flag("lstm", "recurrent layer (--head=rnn)", group="model", choices=RNN_TYPES)
    rnn_units: int = flag(256, "units of the recurrent layer (of the Dense layer of the baseline "
                          "heads)", group="model", minimum=1)
    bidirectional: bool = flag(False, "a bidirectional recurrent layer", group="model")
    dropout: float = flag(0.3, "dropout before the softmax, in [0, 1)", group="model", minimum=0)
    feature_norm: bool = flag(True, "layer-normalize the pooled frame features before the RNN",
                              group="model")

    # Training.
    epochs: int = flag(10, "epochs of the head phase", group="training", minimum=1)
    batch_size: int = flag(8, "global batch size", group="training", minimum=1)
    learning_rate: float = flag(1e-3, "learning rate of the head phase", group="training")
    steps_per_epoch: Optional[int] = flag(None, "default: train plays // batch_size",
                                          group="training", parse=_optional_int, minimum=1)
    steps_per_execution: int = flag(1, "training steps per compiled call: more cuts the per-step "
                                    "overhead when steps are tiny (the head on cached features)",
                                    group="training", minimum=1)
    validation_steps: Optional[int] = flag(None, "default: all validation plays",
                                           group="training", parse=_optional_int, minimum=1)
    fine_tune_epochs: int = flag(0, "epochs of a second phase with the top VGG16 blocks unfrozen",
                                 group="training", minimum=0)
    fine_tune_from: str = flag("", "first layer unfrozen in the fine-tune phase (default: first "
                               "conv of the last block kept by the cut)", group="training")
    fine_tune_learning_rate: float = flag(1e-5, "learning rate of the fine-tune phase",
                                          group="training")
    class_weight: str = flag("none", "balanced: weight each training play by the inverse of its "
                             "label's frequency in the card's train counts (normalised to mean 1)",
                             group="training", choices=CLASS_WEIGHTS)
    balanced_sampling: bool = flag(False, "draw training plays so that every label is equally "
                                   "frequent (per-class rejection resampling in tf.data, seeded)",
                                   group="training")
    seed: Optional[int] = flag(42, "seed of weights, shuffles and augmentation (none: unseeded)",
                               group="training", parse=_optional_int)
    mixed_precision: str = flag("none", "mixed precision policy (for accelerators)",
                                group="training", choices=MIXED_PRECISION)
    jit_compile: str = flag("auto", "XLA; auto = on with GPUs, off on CPU", group="training",
                            choices=JIT_COMPILE)

    # Evaluation and export.
    eval_views: int = flag(3, "temporal windows per play spread over the stored frames, "
                           "probabilities averaged (as log-probabilities) per play: evaluation, "
                           "export and predict; 1 = the centred clip", group="evaluation",
                           minimum=1)
    eval_flip: bool = flag(False, "each view also left-right flipped (2 x --eval_views views)",
                           group="evaluation")
    export_weights: str = flag("best", "the weights evaluated and exported: the best validation "
                               "epoch's (val_accuracy, ties broken by the lower val_loss) or the "
                               "last epoch's", group="evaluation", choices=EXPORT_WEIGHTS)

    # Distribution.
    strategy: str = flag("mirrored", "tf.distribute strategy", group="distribution",
                         choices=STRATEGIES)
    cpu_replicas: int = flag(0, "without GPUs, split the CPU into N devices for "
                             "--strategy=mirrored", group="distribution", minimum=0)
    tpu: str = flag("", "TPU name or address for --strategy=tpu", group="distribution")
    data_service: str = flag("", "grpc://HOST:PORT of a tf.data service dispatcher (python -m "
                             "trainer.data_service): its workers run the training input pipeline "
                             "(parse, frame choice, decode, augment, batch)",
                             group="distribution")

    # Preemption (docs/preemption.md).
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

    def validate(self) -> "TrainConfig":
        """Checks choices, bounds and required values; raises UsageError."""
        for field in dataclasses.fields(self):
            value, meta = getattr(self, field.name), field.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise UsageError(f"unknown --{field.name}={value!r}: use one of "
                                 f"{', '.join(meta['choices'])}")
            if meta.get("minimum") is not None and value is not None and value < meta["minimum"]:
                raise UsageError(f"--{field.name} must be >= {meta['minimum']}, got {value}")
        if not self.data_dir and not self.train_files and not self.features_dir:
            raise UsageError("no training data: give --data_dir (the records job's output), "
                             "--features_dir (the embed job's) or --train_files globs")
        if not self.job_dir:
            raise UsageError("no --job_dir (or AIP_MODEL_DIR) to write checkpoints and the model to")
        if self.deterministic and self.seed is None:
            raise UsageError("--deterministic needs a --seed")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.class_weight != "none" and self.balanced_sampling:
            raise UsageError("--class_weight=balanced and --balanced_sampling both correct the "
                             "label frequencies (together they over-correct): use one of them")
        if self.balanced_sampling and self.skip_corrupt_records:
            raise UsageError("--balanced_sampling drops plays before they are parsed and would "
                             "lose the counts of --skip_corrupt_records: use one of them")
        if self.bidirectional and self.head != "rnn":
            raise UsageError(f"--bidirectional is a setting of --head=rnn, not of "
                             f"--head={self.head}: drop one of them")
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


def build_parser(prog: str = "python -m trainer.task", description: str = "",
                 environ: Optional[Dict[str, str]] = None) -> argparse.ArgumentParser:
    """The command-line flags of TrainConfig's fields, grouped as declared."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    groups: Dict[str, argparse._ArgumentGroup] = {}  # pylint: disable=protected-access
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default = field.default
        if meta["env"] and environ.get(meta["env"]):
            default = environ[meta["env"]]
        # Choices go in the help text and are checked by `validate`, whose error is one line.
        text = meta["help"] + (f" ({'|'.join(meta['choices'])})" if meta["choices"] else "")
        kwargs: Dict[str, Any] = dict(default=default, help=text)
        if isinstance(field.default, bool):
            kwargs.update(type=_bool, nargs="?", const=True)
        else:
            kwargs["type"] = (_keeping_usage_errors(meta["parse"]) if meta["parse"]
                              else type(field.default))
        group.add_argument(f"--{field.name}", **kwargs)
    return parser


def parse_flags(argv: Optional[Sequence[str]] = None, **parser_kwargs) -> TrainConfig:
    """Flags -> TrainConfig (argparse exits 2 on a malformed flag).

    Raises UsageError for a value that a flag's parse function refuses (a
    missing --labels file).
    """
    try:
        args = build_parser(**parser_kwargs).parse_args(argv)
    except _FlagError as err:
        raise err.args[0] from None
    return TrainConfig.from_dict(vars(args))
