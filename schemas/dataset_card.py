"""`dataset.json`: the card the records job writes beside the shards.

The trainer reads frame size, frame count, label vocabulary and shard names from
here, so this module is the one definition of the card's fields.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Optional

from schemas import play_record, sampling

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


@dataclasses.dataclass
class DatasetCard(Card):
    """What a records-job output folder holds."""

    num_frames: int
    height: int
    width: int
    labels: List[str]  # index order: labels[i] has clip/label/index == i
    counts: Dict[str, int]  # split -> plays written
    label_counts: Dict[str, Dict[str, int]]  # split -> label -> plays written
    num_input: int = 0
    num_rejected: int = 0
    rejected_reasons: Dict[str, int] = dataclasses.field(default_factory=dict)
    compression: str = "none"  # "none" or "gzip"
    shard_pattern: str = "{split}-*-of-*.tfrecord"  # glob per split, relative to the card
    frame_rate: Optional[float] = None
    jpeg_quality: int = sampling.DEFAULT_JPEG_QUALITY
    resize_mode: str = sampling.DEFAULT_RESIZE_MODE
    pad_short: str = ""
    args: Dict[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = play_record.SCHEMA_VERSION

    @classmethod
    def check_versions(cls, data: Dict[str, Any]) -> None:
        play_record.check_schema_version(data.get("schema_version"), "dataset card",
                                         ": re-run the records job with this version")
