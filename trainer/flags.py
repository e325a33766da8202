"""Config fields that are also command-line flags (no TensorFlow, so that --help is quick).

A section of the trainer's configuration (`trainer.data.config.DataConfig`,
`trainer.modeling.config.ModelConfig`, ...) declares each field once with
`flag(...)`: its default, help text, --help group, parse function, choices
and bounds. `trainer.config` turns the fields into `python -m trainer.task`
flags and checks their choices and bounds with `check_fields`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence

from schemas.errors import UsageError


def optional_int(text: str) -> Optional[int]:
    """An int flag where "" or "none" means None."""
    return None if text.lower() in ("", "none") else int(text)


def parse_bool(text: str) -> bool:
    """A boolean flag's value: 1/true/yes/on or 0/false/no/off."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class FlagError(Exception):
    """A UsageError raised by a flag's parse function, carried past argparse.

    argparse turns a type function's ValueError into its own `invalid ... value`
    message (and a usage block); this keeps the UsageError's message for the
    command's one `error:` line.
    """


def keeping_usage_errors(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse`, with a UsageError raised as FlagError (see FlagError)."""
    @functools.wraps(parse)
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except UsageError as err:
            raise FlagError(err) from None
    return convert


def flag(default: Any, help: str, *, group: str, parse: Optional[Callable[[str], Any]] = None,  # pylint: disable=redefined-builtin
         choices: Optional[Sequence[str]] = None, env: str = "", minimum: Optional[float] = None):
    """A config field that is also a command-line flag (`--<field name>`).

    Args:
      default: the field's default (the one definition of it).
      help: the flag's help text.
      group: the --help section.
      parse: text -> value (default: the type of `default`).
      choices: the allowed values (checked by `check_fields`).
      env: an environment variable whose value, when set, is the flag's default
        (Vertex AI's AIP_* variables).
      minimum: the smallest allowed value (checked by `check_fields`).
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, parse=parse, choices=choices, env=env, minimum=minimum))


def check_fields(section: Any) -> None:
    """Checks the choices and bounds of a config section's flag fields; raises UsageError."""
    for field in dataclasses.fields(section):
        value, meta = getattr(section, field.name), field.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise UsageError(f"unknown --{field.name}={value!r}: use one of "
                             f"{', '.join(meta['choices'])}")
        if meta.get("minimum") is not None and value is not None and value < meta["minimum"]:
            raise UsageError(f"--{field.name} must be >= {meta['minimum']}, got {value}")
