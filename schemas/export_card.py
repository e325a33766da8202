"""`playclips_export.json`: the card `trainer.serving.export` writes inside a SavedModel.

It sits in the SavedModel's `assets.extra/` (TF Serving's folder for files
beside a model) and tells a client how to feed the model: the label
vocabulary, the serving signature's name and input, the frames and frame size
the model takes, the views the signature averages, and `sampling`, how to
sample a play for it (the records' frame sampling at the model's frame size;
`sampling.num_frames` frames a play, of which the signature picks `num_frames`).
The prediction job, `trainer.predict` and the timeline read it with `read`;
the export writes it with `write`. Cards of export version 1 (sampling
settings as top-level keys, `record_num_frames`) are still read.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from typing import Any, Dict, List

from schemas import play_record
from schemas.errors import SchemaError
from schemas.sampling import FrameSampling

CARD_NAME = "playclips_export.json"
MODEL_FILENAME = "model.keras"  # the Keras model, beside the SavedModel folder in the JOB_DIR
CARD_DIR = "assets.extra"  # inside the SavedModel folder
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "clips"
EXPORT_VERSION = 2  # 2: `sampling` is one object; 1: its settings were top-level keys
# Version-1 keys of the sampling settings (record_num_frames is sampling.num_frames).
_V1_SAMPLING_KEYS = ("resize_mode", "pad_short", "jpeg_quality", "frame_rate")


@dataclasses.dataclass
class ExportCard:
    """What a client needs to know to feed an exported model."""

    labels: List[str]  # index order of the model's probabilities
    image_size: List[int]  # [height, width] of the frames the model takes
    num_frames: int  # frames the model sees of a play
    sampling: FrameSampling  # how a client samples a play (at image_size)
    eval_views: int = 1  # windows the signature averages per play
    eval_flip: bool = False  # each window also left-right flipped
    signature: str = SIGNATURE_NAME
    input: str = INPUT_NAME
    schema_version: int = play_record.SCHEMA_VERSION
    export_version: int = EXPORT_VERSION

    @property
    def record_num_frames(self) -> int:
        """Frames a client sends per play (the records' frame count)."""
        return self.sampling.num_frames

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, what: str = "export card") -> "ExportCard":
        """The card in `text`; SchemaError for another record schema or a newer export version."""
        data = json.loads(text)
        hint = ": re-export the model with this version"
        play_record.check_schema_version(data.get("schema_version"), what, hint)
        version = int(data.get("export_version", 1))
        if not 1 <= version <= EXPORT_VERSION:
            raise SchemaError(f"{what} has export version {version}, this code reads versions "
                              f"1 to {EXPORT_VERSION}{hint}")
        height, width = (int(v) for v in data["image_size"])
        if version == 1:
            settings = {k: data.pop(k) for k in _V1_SAMPLING_KEYS if k in data}
            data["sampling"] = dict(settings, num_frames=data.pop("record_num_frames", None)
                                    or data["num_frames"], height=height, width=width)
        data["sampling"] = FrameSampling.from_dict(data["sampling"])
        data["export_version"] = EXPORT_VERSION
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def card_path(saved_model_dir: str) -> str:
    """Where the card is inside a SavedModel folder (local or gs://)."""
    return posixpath.join(saved_model_dir, CARD_DIR, CARD_NAME)


def read(saved_model_dir: str) -> ExportCard:
    """The card of a SavedModel folder (FileNotFoundError: none there; SchemaError: foreign)."""
    # TensorFlow reads gs:// paths; imported here so that `schemas` stays free of it.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    path = card_path(saved_model_dir)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path!r} is missing: the SavedModel was not written by trainer.serving.export")
    with tf.io.gfile.GFile(path, "r") as f:
        return ExportCard.from_json(f.read(), f"the export {path!r}")


def write(card: ExportCard, saved_model_dir: str) -> str:
    """Writes the card into a SavedModel folder; returns its path."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    path = card_path(saved_model_dir)
    tf.io.gfile.makedirs(posixpath.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(card.to_json())
    return path
