"""Train/val/test splits: parse `--splits`, assign plays by a stable hash of the game.

All plays of a game land in the same split (no game leaks across splits), and a
re-run assigns the same splits: the hash is SHA-256 of the key, not Python's
salted `hash()`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Dict, Mapping

from schemas.errors import UsageError

DEFAULT_SPLITS = "train=0.8,val=0.1,test=0.1"
_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def parse_splits(text: str) -> Dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' -> {'train': 0.8, ...} (order kept).

    Raises UsageError unless names are distinct words and fractions are >= 0
    and sum to 1.
    """
    splits: Dict[str, float] = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise UsageError(f"--splits: expected name=fraction (letters, digits, _), got {part!r}")
        if name in splits:
            raise UsageError(f"--splits: split {name!r} given twice")
        try:
            fraction = float(value)
        except ValueError:
            raise UsageError(f"--splits: fraction of {name!r} is not a number: {value!r}") from None
        if not 0.0 <= fraction <= 1.0:
            raise UsageError(f"--splits: fraction of {name!r} must be in [0, 1], got {fraction}")
        splits[name] = fraction
    if not splits:
        raise UsageError("--splits: no splits given (e.g. train=0.8,val=0.1,test=0.1)")
    total = sum(splits.values())
    if abs(total - 1.0) > 1e-6:
        raise UsageError(f"--splits: fractions must sum to 1, got {total:g} ({text})")
    return splits


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) from `key`."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def assign_split(key: str, splits: Mapping[str, float]) -> str:
    """The split of a play whose grouping key (game id, else play id) is `key`."""
    point = hash_fraction(key)
    cumulative = 0.0
    last = None
    for name, fraction in splits.items():
        if fraction <= 0:
            continue
        cumulative += fraction
        last = name
        if point < cumulative:
            return name
    return last  # rounding: the top of the range goes to the last non-empty split
