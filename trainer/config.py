"""The trainer's run configuration: nested sections, their command-line flags and their checks.

`TrainConfig` holds one section per part of the trainer, each declared by
the package that uses it (Model Garden style): `data`
(`trainer.data.config.DataConfig`), `model` (`trainer.modeling.config`),
`training`, `evaluation` and `runtime` (`trainer.training.config`). Each part
of the trainer is handed only its section. A section's fields are declared
once, with default, help text and choices (`trainer.flags.flag`);
`build_parser` turns them into the flat `python -m trainer.task` flags
(`--epochs`, not `--training.epochs`) and `TrainConfig.validate` checks values
that argparse cannot (also for configs built in code). The configuration
is written to JOB_DIR/config.json, so that a run can be reproduced. No
TensorFlow import: --help and flag parsing stay quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from schemas.errors import UsageError
from trainer import flags
from trainer.data.config import DataConfig
from trainer.modeling.config import ModelConfig
from trainer.training.config import EvaluationConfig, RuntimeConfig, TrainingConfig

# TrainConfig's sections: name -> type.
SECTIONS = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig,
            "evaluation": EvaluationConfig, "runtime": RuntimeConfig}
# The --help sections, in this order.
HELP_GROUPS = ("data", "outputs", "model", "training", "evaluation", "distribution", "preemption")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs: the flags of `python -m trainer.task`, by section."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def validate(self) -> "TrainConfig":
        """Checks choices, bounds and required values; raises UsageError."""
        for name in SECTIONS:
            flags.check_fields(getattr(self, name))
        data, model, training, runtime = self.data, self.model, self.training, self.runtime
        if not data.data_dir and not data.train_files and not data.features_dir:
            raise UsageError("no training data: give --data_dir (the records job's output), "
                             "--features_dir (the embed job's) or --train_files globs")
        if not runtime.job_dir:
            raise UsageError("no --job_dir (or AIP_MODEL_DIR) to write checkpoints and the model to")
        if runtime.deterministic and training.seed is None:
            raise UsageError("--deterministic needs a --seed")
        if not 0.0 <= model.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {model.dropout}")
        if training.class_weight != "none" and training.balanced_sampling:
            raise UsageError(f"--class_weight={training.class_weight} and --balanced_sampling "
                             f"both correct the label frequencies (together they over-correct): "
                             f"use one of them")
        if training.logit_adjustment_tau != 1.0 and training.class_weight != "logit_adjusted":
            raise UsageError(f"--logit_adjustment_tau is a setting of "
                             f"--class_weight=logit_adjusted, not of "
                             f"--class_weight={training.class_weight}: drop one of them")
        if training.balanced_sampling and data.skip_corrupt_records:
            raise UsageError("--balanced_sampling drops plays before they are parsed and would "
                             "lose the counts of --skip_corrupt_records: use one of them")
        if model.bidirectional and model.head != "rnn":
            raise UsageError(f"--bidirectional is a setting of --head=rnn, not of "
                             f"--head={model.head}: drop one of them")
        return self

    def to_dict(self) -> Dict[str, Any]:
        """{section: {flag name: value}}."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """The inverse of `to_dict` (config.json's "config"); UsageError for an unknown key."""
        unknown = sorted(set(values) - set(SECTIONS))
        for name, section_type in SECTIONS.items():
            known = {field.name for field in dataclasses.fields(section_type)}
            unknown += sorted(f"{name}.{key}" for key in set(values.get(name, {})) - known)
        if unknown:
            raise UsageError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**{name: section_type(**values.get(name, {}))
                      for name, section_type in SECTIONS.items()})

    @classmethod
    def from_flags(cls, values: Dict[str, Any]) -> "TrainConfig":
        """Flat flag values ({"epochs": 3, "head": "rnn", ...}) into their sections."""
        owner = {name: section for section, name, _ in _flag_fields()}
        unknown = sorted(set(values) - set(owner))
        if unknown:
            raise UsageError(f"unknown config keys: {', '.join(unknown)}")
        nested: Dict[str, Dict[str, Any]] = {name: {} for name in SECTIONS}
        for name, value in values.items():
            nested[owner[name]][name] = value
        return cls.from_dict(nested)


def _flag_fields() -> Iterator[Tuple[str, str, dataclasses.Field]]:
    """(section, flag name, field) of every flag; flag names are unique across sections."""
    seen = set()
    for section, section_type in SECTIONS.items():
        for field in dataclasses.fields(section_type):
            if field.name in seen:
                raise ValueError(f"--{field.name} is declared by two config sections")
            seen.add(field.name)
            yield section, field.name, field


def build_parser(prog: str = "python -m trainer.task", description: str = "",
                 environ: Optional[Dict[str, str]] = None) -> argparse.ArgumentParser:
    """The command-line flags of TrainConfig's fields, grouped as declared."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    groups = {name: parser.add_argument_group(name) for name in HELP_GROUPS}
    for _, name, field in _flag_fields():
        meta = field.metadata
        default = field.default
        if meta["env"] and environ.get(meta["env"]):
            default = environ[meta["env"]]
        # Choices go in the help text and are checked by `validate`, whose error is one line.
        text = meta["help"] + (f" ({'|'.join(meta['choices'])})" if meta["choices"] else "")
        kwargs: Dict[str, Any] = dict(default=default, help=text)
        if isinstance(field.default, bool):
            kwargs.update(type=flags.parse_bool, nargs="?", const=True)
        else:
            kwargs["type"] = (flags.keeping_usage_errors(meta["parse"]) if meta["parse"]
                              else type(field.default))
        groups[meta["group"]].add_argument(f"--{name}", **kwargs)
    return parser


def parse_flags(argv: Optional[Sequence[str]] = None, **parser_kwargs) -> TrainConfig:
    """Flags -> TrainConfig (argparse exits 2 on a malformed flag).

    Raises UsageError for a value that a flag's parse function refuses (a
    missing --labels file).
    """
    try:
        args = build_parser(**parser_kwargs).parse_args(argv)
    except flags.FlagError as err:
        raise err.args[0] from None
    return TrainConfig.from_flags(vars(args))
