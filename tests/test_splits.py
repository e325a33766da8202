"""beam_jobs.splits: --splits parsing and the stable, game-grouped assignment."""

import collections
import subprocess
import sys

import pytest

from beam_jobs import splits
from schemas.errors import UsageError


def test_parse_splits():
    assert splits.parse_splits("train=0.8,val=0.1,test=0.1") == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert list(splits.parse_splits(" a=0.5 , b=0.5 ")) == ["a", "b"]
    assert splits.parse_splits("all=1") == {"all": 1.0}


@pytest.mark.parametrize("text,match", [
    ("train=0.8,val=0.1", "sum to 1"),
    ("train=0.8,val=0.3,test=-0.1", r"\[0, 1\]"),
    ("train=abc,val=1", "not a number"),
    ("train0.5,val=0.5", "name=fraction"),
    ("tr/ain=0.5,val=0.5", "name=fraction"),
    ("train=0.5,train=0.5", "twice"),
    ("", "no splits"),
])
def test_parse_splits_rejects_invalid(text, match):
    with pytest.raises(UsageError, match=match):
        splits.parse_splits(text)


def test_assignment_is_stable_and_proportional():
    fractions = splits.parse_splits("train=0.8,val=0.1,test=0.1")
    keys = [f"game-{i}" for i in range(5000)]
    first = [splits.assign_split(k, fractions) for k in keys]
    assert first == [splits.assign_split(k, fractions) for k in keys]
    counts = collections.Counter(first)
    assert 0.77 < counts["train"] / 5000 < 0.83
    assert 0.08 < counts["val"] / 5000 < 0.12 and 0.08 < counts["test"] / 5000 < 0.12


def test_assignment_same_in_another_process():
    """Not Python's salted hash(): a fresh interpreter agrees."""
    fractions = splits.parse_splits("train=0.5,val=0.25,test=0.25")
    keys = [f"g{i}" for i in range(50)]
    code = ("from beam_jobs import splits; f = splits.parse_splits('train=0.5,val=0.25,test=0.25');"
            f"print(','.join(splits.assign_split(k, f) for k in {keys!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PYTHONPATH": "."}).stdout.strip()
    assert out.split(",") == [splits.assign_split(k, fractions) for k in keys]


def test_zero_fraction_split_gets_nothing():
    fractions = splits.parse_splits("train=0.5,val=0,test=0.5")
    assert "val" not in {splits.assign_split(f"k{i}", fractions) for i in range(500)}
