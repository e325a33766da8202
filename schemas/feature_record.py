"""The feature record: one play's cached frozen-base features, one `tf.train.SequenceExample`.

The embed job (`beam_jobs/embed_records.py`) runs the frozen VGG16 base once on
every stored frame and writes one record per play with `encode_features`; the
trainer reads them with `parse_features` and trains only the head. This module
is the single definition of the record's keys; the play-level keys are those of
`schemas.play_record`, so a feature record names its play the same way.

Context only (the features are one tensor, not a per-frame list):
  example/id                        bytes   play id
  clip/label/index                  int64   index into the card's label vocabulary
  clip/label/string                 bytes   label name
  clip/data_path                    bytes   the play record's data_path
  playclips/split                   bytes   train | val | test
  playclips/feature_schema_version  int64
  feature/encoded                   bytes   raw little-endian array [views, frames, dim]
  feature/dtype                     bytes   "float16" or "float32"
  feature/num_views, feature/num_frames, feature/dim   int64

View 0 is the frames as stored; view 1 (with the embed job's --views=flip) the
left-right flipped frames.
"""

from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np

from schemas import example_proto, play_record
from schemas.errors import SchemaError

FEATURE_SCHEMA_VERSION = 1

EXAMPLE_ID = play_record.EXAMPLE_ID
LABEL_INDEX = play_record.LABEL_INDEX
LABEL_STRING = play_record.LABEL_STRING
DATA_PATH = play_record.DATA_PATH
SPLIT = "playclips/split"
FEATURE_SCHEMA_VERSION_KEY = "playclips/feature_schema_version"
FEATURE_ENCODED = "feature/encoded"
FEATURE_DTYPE = "feature/dtype"
FEATURE_NUM_VIEWS = "feature/num_views"
FEATURE_NUM_FRAMES = "feature/num_frames"
FEATURE_DIM = "feature/dim"

DTYPES = ("float16", "float32")


@dataclasses.dataclass
class FeatureRecord:
    """One play's features: `features` is [views, frames, dim], float16 or float32."""

    play_id: str
    label: str
    label_index: int
    split: str
    features: np.ndarray
    data_path: str = ""

    def __post_init__(self):
        features = np.asarray(self.features)
        if features.ndim != 3:
            raise SchemaError(f"play {self.play_id!r}: features must be [views, frames, dim], "
                              f"got shape {features.shape}")
        if features.dtype.name not in DTYPES:
            raise SchemaError(f"play {self.play_id!r}: feature dtype must be one of {DTYPES}, "
                              f"got {features.dtype.name}")
        self.features = features

    @property
    def dtype(self) -> str:
        return self.features.dtype.name


def check_feature_schema_version(version, what: str, hint: str = "") -> None:
    """Raises SchemaError unless `version` (of a feature record or card) is FEATURE_SCHEMA_VERSION."""
    play_record.check_version(version, FEATURE_SCHEMA_VERSION, what, hint,
                              name="feature schema version")


def encode_features(record: FeatureRecord) -> bytes:
    """Serializes a FeatureRecord to SequenceExample bytes (no TensorFlow import)."""
    seq = example_proto.SequenceExample()
    ctx = seq.context.feature

    def put_bytes(key: str, value) -> None:
        ctx[key].bytes_list.value.append(value if isinstance(value, bytes) else value.encode("utf-8"))

    def put_int(key: str, value: int) -> None:
        ctx[key].int64_list.value.append(int(value))

    views, frames, dim = record.features.shape
    put_bytes(EXAMPLE_ID, record.play_id)
    put_int(LABEL_INDEX, record.label_index)
    put_bytes(LABEL_STRING, record.label)
    put_bytes(DATA_PATH, record.data_path)
    put_bytes(SPLIT, record.split)
    put_int(FEATURE_SCHEMA_VERSION_KEY, FEATURE_SCHEMA_VERSION)
    little_endian = record.features.astype(record.features.dtype.newbyteorder("<"), copy=False)
    put_bytes(FEATURE_ENCODED, np.ascontiguousarray(little_endian).tobytes())
    put_bytes(FEATURE_DTYPE, record.dtype)
    put_int(FEATURE_NUM_VIEWS, views)
    put_int(FEATURE_NUM_FRAMES, frames)
    put_int(FEATURE_DIM, dim)
    return seq.SerializeToString()


def decode_features(serialized: bytes) -> FeatureRecord:
    """Parses feature-record bytes (pure Python and numpy; for tools and tests).

    Raises SchemaError for another feature schema version or an inconsistent layout.
    """
    seq = example_proto.SequenceExample.FromString(serialized)
    ctx = seq.context.feature

    def values(key: str, value_list: str) -> list:
        return list(getattr(ctx[key], value_list).value) if key in ctx else []

    version = values(FEATURE_SCHEMA_VERSION_KEY, "int64_list")
    check_feature_schema_version(version[0] if len(version) == 1 else (version or "none"),
                                 "feature record")

    def get_bytes(key: str) -> bytes:
        found = values(key, "bytes_list")
        return found[0] if found else b""

    def get_int(key: str) -> int:
        found = values(key, "int64_list")
        return int(found[0]) if found else 0

    dtype = get_bytes(FEATURE_DTYPE).decode("utf-8")
    if dtype not in DTYPES:
        raise SchemaError(f"feature record: {FEATURE_DTYPE} must be one of {DTYPES}, got {dtype!r}")
    shape = (get_int(FEATURE_NUM_VIEWS), get_int(FEATURE_NUM_FRAMES), get_int(FEATURE_DIM))
    raw = get_bytes(FEATURE_ENCODED)
    itemsize = np.dtype(dtype).itemsize
    if len(raw) != itemsize * int(np.prod(shape)):
        raise SchemaError(f"feature record: {FEATURE_ENCODED} holds {len(raw)} bytes, the layout "
                          f"{shape} of {dtype} needs {itemsize * int(np.prod(shape))}")
    features = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return FeatureRecord(
        play_id=get_bytes(EXAMPLE_ID).decode("utf-8"),
        label=get_bytes(LABEL_STRING).decode("utf-8"),
        label_index=get_int(LABEL_INDEX),
        split=get_bytes(SPLIT).decode("utf-8"),
        features=features.astype(dtype),
        data_path=get_bytes(DATA_PATH).decode("utf-8"))


def parse_specs() -> Dict[str, "tf.io.FixedLenFeature"]:
    """The context feature spec for `tf.io.parse_single_sequence_example`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return {
        EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64),
        FEATURE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        FEATURE_DTYPE: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FEATURE_NUM_VIEWS: tf.io.FixedLenFeature([], tf.int64),
        FEATURE_NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
        FEATURE_DIM: tf.io.FixedLenFeature([], tf.int64),
        FEATURE_SCHEMA_VERSION_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }


def parse_features(serialized, dtype: str) -> Dict[str, "tf.Tensor"]:
    """Parses one serialized feature record inside a tf.data pipeline (graph mode).

    `dtype` is the card's feature dtype (the raw bytes are decoded as that type).
    Returns `features` (float32 [V, T, D]), `label` (int64) and `play_id`. Fails with
    a clear message for another feature schema version or another dtype.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if dtype not in DTYPES:
        raise SchemaError(f"feature dtype must be one of {DTYPES}, got {dtype!r}")
    context, _ = tf.io.parse_single_sequence_example(serialized, context_features=parse_specs())
    checks = [
        tf.debugging.assert_equal(
            context[FEATURE_SCHEMA_VERSION_KEY], tf.constant(FEATURE_SCHEMA_VERSION, tf.int64),
            message=(f"playclips feature record schema version mismatch: this code reads version "
                     f"{FEATURE_SCHEMA_VERSION} (-1 means the record has no "
                     f"'{FEATURE_SCHEMA_VERSION_KEY}'; re-run the embed job)")),
        tf.debugging.assert_equal(
            context[FEATURE_DTYPE], tf.constant(dtype),
            message=f"playclips feature record dtype differs from the card's {dtype}"),
    ]
    shape = tf.stack([context[FEATURE_NUM_VIEWS], context[FEATURE_NUM_FRAMES], context[FEATURE_DIM]])
    with tf.control_dependencies(checks):
        raw = tf.io.decode_raw(context[FEATURE_ENCODED], tf.dtypes.as_dtype(dtype), little_endian=True)
        features = tf.cast(tf.reshape(raw, shape), tf.float32)
    return {"features": features, "label": context[LABEL_INDEX], "play_id": context[EXAMPLE_ID]}


__all__ = [name for name in dir() if name.isupper()] + [
    "FeatureRecord", "SchemaError", "check_feature_schema_version", "encode_features",
    "decode_features", "parse_specs", "parse_features",
]
