"""`dataset.json`: the card the records job writes beside the shards.

The trainer reads the frame sampling (`schemas.sampling.FrameSampling`: frame
count and size, resize mode, padding, JPEG quality, frame rate), the label
vocabulary and the shard names from here, so this module is the one
definition of the card's fields.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List

from schemas import play_record
from schemas.sampling import FrameSampling

CARD_NAME = "dataset.json"
SPLITS = ("train", "val", "test")


class Card:
    """What the cards of a job's output folder share: labels, shard globs, JSON.

    Subclasses are dataclasses with `labels` and `shard_pattern` fields; they
    check the versions of what they read in `check_versions`.
    """

    labels: List[str]
    shard_pattern: str

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def shard_glob(self, split: str) -> str:
        """The shard glob of one split, relative to the folder holding the card."""
        return self.shard_pattern.format(split=split)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def check_versions(cls, data: Dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def from_json(cls, text: str):
        """The card in `text` (SchemaError for another version; unknown keys are ignored)."""
        data = json.loads(text)
        cls.check_versions(data)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Sampling keys at the top level of a card, as earlier versions wrote them (still read).
_FLAT_SAMPLING_KEYS = ("num_frames", "height", "width", "frame_rate", "jpeg_quality",
                       "resize_mode", "pad_short")


@dataclasses.dataclass
class DatasetCard(Card):
    """What a records-job output folder holds, and how its plays were sampled (`sampling`).

    The sampling settings are also read as attributes (`card.num_frames`,
    `card.height`, ...). A card written with flat sampling keys reads the same.
    """

    sampling: FrameSampling
    labels: List[str]  # index order: labels[i] has clip/label/index == i
    counts: Dict[str, int]  # split -> plays written
    label_counts: Dict[str, Dict[str, int]]  # split -> label -> plays written
    num_input: int = 0
    num_rejected: int = 0
    rejected_reasons: Dict[str, int] = dataclasses.field(default_factory=dict)
    compression: str = "none"  # "none" or "gzip"
    shard_pattern: str = "{split}-*-of-*.tfrecord"  # glob per split, relative to the card
    args: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # The reserved label of the background clips cut from game videos ("" when there are none):
    # the time no play covers (`beam_jobs.no_play`); its plays per split are in label_counts.
    no_play_label: str = ""
    schema_version: int = play_record.SCHEMA_VERSION

    num_frames = property(lambda self: self.sampling.num_frames)
    height = property(lambda self: self.sampling.height)
    width = property(lambda self: self.sampling.width)
    frame_rate = property(lambda self: self.sampling.frame_rate)
    jpeg_quality = property(lambda self: self.sampling.jpeg_quality)
    resize_mode = property(lambda self: self.sampling.resize_mode)
    pad_short = property(lambda self: self.sampling.pad_short)

    @classmethod
    def check_versions(cls, data: Dict[str, Any]) -> None:
        play_record.check_schema_version(data.get("schema_version"), "dataset card",
                                         ": re-run the records job with this version")

    @classmethod
    def from_json(cls, text: str) -> "DatasetCard":
        data = json.loads(text)
        cls.check_versions(data)
        flat = {k: data.pop(k) for k in _FLAT_SAMPLING_KEYS if k in data}
        data["sampling"] = FrameSampling.from_dict(data.get("sampling") or flat)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
