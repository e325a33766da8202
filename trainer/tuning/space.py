"""The search space: one definition for `python -m trainer.tune` (KerasTuner) and Vertex AI.

Each parameter is a flag of `python -m trainer.task`, so a trial is a set of
flags: the head and its width (--head, --rnn_units), the frames per clip
(--num_frames, up to all the features hold), --dropout, --learning_rate and
--batch_size. `hyperparameters` turns the space into KerasTuner's
HyperParameters, `trainer.tuning.vertex` into a Vertex AI study spec, and
`trial_flags` a trial's values back into flags, written so that the trainer's
parser reads back the very values the trial trained with.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from trainer.modeling.config import HEADS

if TYPE_CHECKING:
    import keras_tuner

UNITS = (32, 64, 128, 256)  # --rnn_units: the width of every head
BATCH_SIZES = (8, 16, 32)
DROPOUT = (0.0, 0.5)  # a linear range
LEARNING_RATE = (1e-4, 1e-2)  # a log range
# The flags a trial sets (trainer.tune refuses them as fixed flags).
TUNED = ("head", "rnn_units", "num_frames", "dropout", "learning_rate", "batch_size")
# What a trial is scored by: its best epoch's (the trainer's `val_accuracy` log).
OBJECTIVE = "val_accuracy"
# Every trial's own trainer flags: the test split is not read while tuning, nothing exported.
TRIAL_FLAGS = ("--eval_split=none", "--export=false")


@dataclasses.dataclass(frozen=True)
class Param:
    """One tuned flag: a choice among `values` (strings: unordered; numbers: ordered), or a
    float range [low, high] sampled on a linear or a log scale."""

    flag: str
    values: Tuple[Any, ...] = ()
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def categorical(self) -> bool:
        """A choice among names (the heads), with no order between them."""
        return not self.is_range and isinstance(self.values[0], str)


def frame_choices(stored_frames: int) -> Tuple[int, ...]:
    """--num_frames choices: 4, 8, 16, ... below the stored frames, and all of them."""
    choices, n = [], 4
    while n < stored_frames:
        choices.append(n)
        n *= 2
    return tuple(choices + [stored_frames])


def search_space(stored_frames: int) -> Tuple[Param, ...]:
    """The space over a feature cache whose plays hold `stored_frames` frames."""
    space = (Param("head", tuple(HEADS)),
             Param("rnn_units", UNITS),
             Param("num_frames", frame_choices(stored_frames)),
             Param("dropout", low=DROPOUT[0], high=DROPOUT[1]),
             Param("learning_rate", low=LEARNING_RATE[0], high=LEARNING_RATE[1], log=True),
             Param("batch_size", BATCH_SIZES))
    assert tuple(param.flag for param in space) == TUNED
    return space


def hyperparameters(space: Sequence[Param]) -> "keras_tuner.HyperParameters":
    """KerasTuner's HyperParameters of `space` (named by flag)."""
    import keras_tuner  # pylint: disable=g-import-not-at-top
    hp = keras_tuner.HyperParameters()
    for param in space:
        if param.is_range:
            hp.Float(param.flag, param.low, param.high, sampling="log" if param.log else "linear")
        else:
            hp.Choice(param.flag, list(param.values), ordered=not param.categorical)
    return hp


def parse_values(flags: Sequence[str], space: Sequence[Param]) -> Dict[str, Any]:
    """`--flag=value` of every tuned flag -> a trial's values (ValueError: a flag missing,
    unknown, or a value outside the space)."""
    given = {}
    for text in flags:
        name, _, value = text[2:].partition("=") if text.startswith("--") else (text, "", "")
        given[name] = value
    by_flag = {param.flag: param for param in space}
    unknown = sorted(set(given) - set(by_flag))
    missing = [flag for flag in by_flag if flag not in given]
    if unknown or missing:
        raise ValueError(f"needs each tuned flag once ({', '.join(TUNED)})"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                         + (f"; missing: {', '.join(missing)}" if missing else ""))
    values: Dict[str, Any] = {}
    for flag, param in by_flag.items():
        text = given[flag]
        try:
            value = (float(text) if param.is_range else
                     type(param.values[0])(text))
        except ValueError:
            raise ValueError(f"--{flag}={text} is not a {'number' if param.is_range else 'choice'}"
                             ) from None
        inside = (param.low <= value <= param.high if param.is_range else value in param.values)
        if not inside:
            where = (f"[{param.low:g}, {param.high:g}]" if param.is_range
                     else ", ".join(map(str, param.values)))
            raise ValueError(f"--{flag}={text} is outside the search space ({where})")
        values[flag] = value
    return values


def format_value(value: Any) -> str:
    """A flag value as text: floats in their shortest exact form (repr), so that the trainer
    parses back the same float."""
    return repr(float(value)) if isinstance(value, float) else str(value)


def trial_flags(values: Mapping[str, Any]) -> List[str]:
    """`--flag=value` for each tuned flag, from a trial's values."""
    return [f"--{flag}={format_value(values[flag])}" for flag in TUNED]
