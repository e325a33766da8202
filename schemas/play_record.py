"""The play record: one `tf.train.SequenceExample` per play, MediaSequence layout.

This module is the single definition of the record. The records job
(`beam_jobs/`) encodes with `encode_play`, the trainer (`trainer/`) parses with
`parse_play`; no other module spells a key name.

Context (per play):
  example/id            bytes   play id
  clip/media_id         bytes   game id (the grouping key for splits)
  clip/data_path        bytes   where the play came from
  clip/start/timestamp  int64   start of the play in `clip/data_path`, microseconds
  clip/end/timestamp    int64   end of the play (exclusive), microseconds; both only for
                                plays cut from a longer video by time range
  clip/label/index      int64   index into the dataset card's label vocabulary
  clip/label/string     bytes   label name
  image/format          bytes   "JPEG"
  image/height, image/width, image/channels   int64
  image/frame_rate      float   frames per second of the source, where known
  playclips/schema_version  int64
  playclips/source_num_frames  int64  frames in the source before sampling
  playclips/pad_mode    bytes   "" (no padding), "loop" or "last"
Feature lists (per frame):
  image/encoded         bytes   one JPEG per frame
  image/timestamp       int64   microseconds from the start of the source
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from schemas import example_proto, sampling
from schemas.errors import SchemaError

SCHEMA_VERSION = 1

# Context keys (MediaSequence names where the standard has one).
EXAMPLE_ID = "example/id"
MEDIA_ID = "clip/media_id"
DATA_PATH = "clip/data_path"
CLIP_START_TIMESTAMP = "clip/start/timestamp"
CLIP_END_TIMESTAMP = "clip/end/timestamp"
LABEL_INDEX = "clip/label/index"
LABEL_STRING = "clip/label/string"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
IMAGE_FRAME_RATE = "image/frame_rate"
SCHEMA_VERSION_KEY = "playclips/schema_version"
SOURCE_NUM_FRAMES = "playclips/source_num_frames"
PAD_MODE = "playclips/pad_mode"

# Feature-list keys.
IMAGE_ENCODED = "image/encoded"
IMAGE_TIMESTAMP = "image/timestamp"

IMAGE_FORMAT_JPEG = "JPEG"
PAD_MODES = sampling.PAD_SHORT_MODES


@dataclasses.dataclass
class PlayRecord:
    """One play, ready to be written: `frames` are encoded JPEG bytes."""

    play_id: str
    label: str
    label_index: int
    frames: List[bytes]
    timestamps_us: List[int]
    height: int
    width: int
    game_id: str = ""
    data_path: str = ""
    channels: int = 3
    frame_rate: Optional[float] = None
    source_num_frames: int = 0
    pad_mode: str = ""
    start_us: Optional[int] = None  # the play's range in data_path (cut from a longer video)
    end_us: Optional[int] = None

    def __post_init__(self):
        if len(self.frames) != len(self.timestamps_us):
            raise SchemaError(
                f"play {self.play_id!r}: {len(self.frames)} frames but "
                f"{len(self.timestamps_us)} timestamps")
        if self.pad_mode not in PAD_MODES:
            raise SchemaError(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if (self.start_us is None) != (self.end_us is None):
            raise SchemaError(f"play {self.play_id!r}: start_us and end_us go together")


def check_version(version, expected: int, what: str, hint: str = "",
                  name: str = "schema version") -> None:
    """Raises SchemaError unless `version` (of `what`) is `expected`; `hint` says what to do."""
    if version != expected:
        raise SchemaError(f"{what} has {name} {version}, this code reads version {expected}{hint}")


def check_schema_version(version, what: str, hint: str = "") -> None:
    """Raises SchemaError unless `version` (of a record, card or export) is SCHEMA_VERSION."""
    check_version(version, SCHEMA_VERSION, what, hint)


def encode_play(record: PlayRecord) -> bytes:
    """Serializes a PlayRecord to SequenceExample bytes."""
    seq = example_proto.SequenceExample()
    ctx = seq.context.feature

    def put_bytes(key: str, value: str) -> None:
        ctx[key].bytes_list.value.append(value.encode("utf-8"))

    def put_int(key: str, value: int) -> None:
        ctx[key].int64_list.value.append(int(value))

    put_bytes(EXAMPLE_ID, record.play_id)
    put_bytes(MEDIA_ID, record.game_id)
    put_bytes(DATA_PATH, record.data_path)
    if record.start_us is not None:  # optional keys: records of whole clips stay as they were
        put_int(CLIP_START_TIMESTAMP, record.start_us)
        put_int(CLIP_END_TIMESTAMP, record.end_us)
    put_int(LABEL_INDEX, record.label_index)
    put_bytes(LABEL_STRING, record.label)
    put_bytes(IMAGE_FORMAT, IMAGE_FORMAT_JPEG)
    put_int(IMAGE_HEIGHT, record.height)
    put_int(IMAGE_WIDTH, record.width)
    put_int(IMAGE_CHANNELS, record.channels)
    if record.frame_rate:
        ctx[IMAGE_FRAME_RATE].float_list.value.append(float(record.frame_rate))
    put_int(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
    put_int(SOURCE_NUM_FRAMES, record.source_num_frames)
    put_bytes(PAD_MODE, record.pad_mode)

    encoded = seq.feature_lists.feature_list[IMAGE_ENCODED].feature
    stamps = seq.feature_lists.feature_list[IMAGE_TIMESTAMP].feature
    for jpeg, ts in zip(record.frames, record.timestamps_us):
        encoded.add().bytes_list.value.append(jpeg)
        stamps.add().int64_list.value.append(int(ts))
    return seq.SerializeToString()


def decode_play(serialized: bytes) -> PlayRecord:
    """Parses SequenceExample bytes back into a PlayRecord (pure Python; for tools and tests).

    Raises SchemaError for bytes that are not a play record of this schema
    version (not a SequenceExample, another version, a frame or timestamp
    entry without exactly one value, text that is not UTF-8), never another error.
    """
    from google.protobuf.message import DecodeError  # pylint: disable=g-import-not-at-top
    try:
        seq = example_proto.SequenceExample.FromString(bytes(serialized))
    except (DecodeError, RecursionError) as err:
        raise SchemaError(f"not a tf.train.SequenceExample: {err}") from None
    ctx = seq.context.feature
    version = list(ctx[SCHEMA_VERSION_KEY].int64_list.value) if SCHEMA_VERSION_KEY in ctx else []
    check_schema_version(version[0] if len(version) == 1 else (version or "none"), "record")

    def get_bytes(key: str) -> str:
        values = ctx[key].bytes_list.value if key in ctx else []
        try:
            return values[0].decode("utf-8") if values else ""
        except UnicodeDecodeError:
            raise SchemaError(f"record: '{key}' is not UTF-8 text") from None

    def get_int(key: str, default: Optional[int] = 0) -> Optional[int]:
        values = ctx[key].int64_list.value if key in ctx else []
        return int(values[0]) if values else default

    def one_each(key: str, value_list: str) -> list:
        values = []
        for t, feature in enumerate(lists[key].feature if key in lists else []):
            value = getattr(feature, value_list).value
            if len(value) != 1:
                raise SchemaError(f"record: '{key}' entry {t} holds {len(value)} {value_list} "
                                  f"values, not one")
            values.append(value[0])
        return values

    rates = ctx[IMAGE_FRAME_RATE].float_list.value if IMAGE_FRAME_RATE in ctx else []
    lists = seq.feature_lists.feature_list
    return PlayRecord(
        play_id=get_bytes(EXAMPLE_ID),
        game_id=get_bytes(MEDIA_ID),
        data_path=get_bytes(DATA_PATH),
        label=get_bytes(LABEL_STRING),
        label_index=get_int(LABEL_INDEX),
        frames=[bytes(f) for f in one_each(IMAGE_ENCODED, "bytes_list")],
        timestamps_us=[int(t) for t in one_each(IMAGE_TIMESTAMP, "int64_list")],
        height=get_int(IMAGE_HEIGHT),
        width=get_int(IMAGE_WIDTH),
        channels=get_int(IMAGE_CHANNELS),
        frame_rate=float(rates[0]) if rates else None,
        source_num_frames=get_int(SOURCE_NUM_FRAMES),
        pad_mode=get_bytes(PAD_MODE),
        start_us=get_int(CLIP_START_TIMESTAMP, None),
        end_us=get_int(CLIP_END_TIMESTAMP, None),
    )


def parse_specs():
    """The (context, sequence) feature specs for `tf.io.parse_single_sequence_example`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    context = {
        EXAMPLE_ID: tf.io.FixedLenFeature([], tf.string),
        MEDIA_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64),
        LABEL_STRING: tf.io.FixedLenFeature([], tf.string, default_value=""),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
        SCHEMA_VERSION_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }
    sequence = {
        IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string),
    }
    return context, sequence


def parse_play(serialized) -> Dict[str, "tf.Tensor"]:
    """Parses one serialized record inside a tf.data pipeline (graph mode).

    Returns a dict with `frames` (string [T], one JPEG each), `label` (int64),
    `play_id`, `game_id`, `height`, `width`. Fails with a clear message when the
    record was written by another schema version or is not a play record.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    context_spec, sequence_spec = parse_specs()
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec)
    version = context[SCHEMA_VERSION_KEY]
    check = tf.debugging.assert_equal(
        version, tf.constant(SCHEMA_VERSION, tf.int64),
        message=(f"playclips record schema version mismatch: this trainer reads version "
                 f"{SCHEMA_VERSION} (-1 means the record has no '{SCHEMA_VERSION_KEY}'; "
                 f"re-run the records job)"))
    with tf.control_dependencies([check]):
        frames = tf.identity(sequence[IMAGE_ENCODED])
    return {
        "frames": frames,
        "label": context[LABEL_INDEX],
        "play_id": context[EXAMPLE_ID],
        "game_id": context[MEDIA_ID],
        "height": context[IMAGE_HEIGHT],
        "width": context[IMAGE_WIDTH],
    }


__all__ = [name for name in dir() if name.isupper()] + [
    "PlayRecord", "SchemaError", "check_schema_version", "encode_play", "decode_play", "parse_specs", "parse_play",
]
