"""The record schema and dataset card: round trips and version checks."""
import json
import subprocess
import sys

import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2

from schemas import dataset_card, example_proto, play_record
from schemas.sampling import FrameSampling


def _record(**overrides):
    fields = dict(
        play_id="p1", label="post_up", label_index=3, frames=[b"\xff\xd8a", b"\xff\xd8b"],
        timestamps_us=[0, 40000], height=32, width=48, game_id="g7", data_path="/x/p1",
        frame_rate=25.0, source_num_frames=90, pad_mode="")
    fields.update(overrides)
    return play_record.PlayRecord(**fields)


def test_encode_decode_round_trip():
    record = _record()
    assert play_record.decode_play(play_record.encode_play(record)) == record


def test_decode_keeps_missing_frame_rate_as_none():
    record = _record(frame_rate=None, pad_mode="loop")
    decoded = play_record.decode_play(play_record.encode_play(record))
    assert decoded.frame_rate is None and decoded.pad_mode == "loop"


def test_clip_start_end_round_trip_and_are_absent_without_a_range():
    cut = _record(start_us=754_200_000, end_us=761_000_000, timestamps_us=[754_200_000, 754_240_000])
    serialized = play_record.encode_play(cut)
    assert play_record.decode_play(serialized) == cut
    context = example_pb2.SequenceExample.FromString(serialized).context.feature
    assert context[play_record.CLIP_START_TIMESTAMP].int64_list.value == [754_200_000]
    assert context[play_record.CLIP_END_TIMESTAMP].int64_list.value == [761_000_000]
    whole = play_record.encode_play(_record())
    assert play_record.CLIP_START_TIMESTAMP.encode() not in whole
    assert play_record.decode_play(whole).start_us is None
    with pytest.raises(play_record.SchemaError, match="go together"):
        _record(start_us=0)


def test_record_rejects_mismatched_timestamps_and_bad_pad_mode():
    with pytest.raises(play_record.SchemaError, match="2 frames but 1 timestamps"):
        _record(timestamps_us=[0])
    with pytest.raises(play_record.SchemaError, match="pad_mode"):
        _record(pad_mode="mirror")


def test_records_are_tensorflows_sequence_example_byte_for_byte():
    for record in (_record(), _record(frame_rate=None, pad_mode="loop", frames=[], timestamps_us=[])):
        ours = play_record.encode_play(record)
        theirs = example_pb2.SequenceExample.FromString(ours)
        assert theirs.SerializeToString(deterministic=True) == \
            example_proto.SequenceExample.FromString(ours).SerializeToString(deterministic=True)
        assert play_record.decode_play(theirs.SerializeToString()) == record
    # Every field of TensorFlow's messages (number, type, packing) has its twin here.
    seq = tf.train.SequenceExample()
    feature = seq.context.feature["f"]
    feature.float_list.value.extend([1.5, -2.0])
    seq.feature_lists.feature_list["l"].feature.add().int64_list.value.extend([1, -(2 ** 40)])
    seq.feature_lists.feature_list["l"].feature.add().bytes_list.value.append(b"\x00x")
    raw = seq.SerializeToString(deterministic=True)
    assert example_proto.SequenceExample.FromString(raw).SerializeToString(deterministic=True) == raw
    _assert_same_messages(example_proto.SequenceExample.DESCRIPTOR,
                          example_pb2.SequenceExample.DESCRIPTOR, set())


def _assert_same_messages(ours, theirs, seen):
    if theirs.full_name in seen:
        return
    seen.add(theirs.full_name)
    assert ours.full_name == theirs.full_name
    assert [(f.name, f.number, f.type, f.label) for f in ours.fields] == \
        [(f.name, f.number, f.type, f.label) for f in theirs.fields]
    assert [o.name for o in ours.oneofs] == [o.name for o in theirs.oneofs]
    for a, b in zip(ours.fields, theirs.fields):
        assert a.GetOptions().packed == b.GetOptions().packed, a.full_name
        if b.message_type is not None:
            _assert_same_messages(a.message_type, b.message_type, seen)


def test_writing_records_does_not_import_tensorflow():
    # The records job's workers encode records; a TensorFlow import would cost each seconds.
    code = ("import sys; from beam_jobs import records_pipeline; from media import frames; from schemas import play_record; "
            "play_record.encode_play(play_record.PlayRecord(play_id='p', label='a', label_index=0, "
            "frames=[b'x'], timestamps_us=[0], height=1, width=1)); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parse_play_in_graph_matches_python_decoder():
    record = _record()
    parsed = play_record.parse_play(tf.constant(play_record.encode_play(record)))
    assert parsed["frames"].numpy().tolist() == record.frames
    assert int(parsed["label"]) == 3
    assert parsed["play_id"].numpy() == b"p1" and parsed["game_id"].numpy() == b"g7"
    assert (int(parsed["height"]), int(parsed["width"])) == (32, 48)


def test_wrong_schema_version_is_a_clear_error():
    seq = tf.train.SequenceExample.FromString(play_record.encode_play(_record()))
    seq.context.feature[play_record.SCHEMA_VERSION_KEY].int64_list.value[0] = 99
    bad = seq.SerializeToString()
    with pytest.raises(play_record.SchemaError, match="schema version"):
        play_record.decode_play(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match="schema version mismatch"):
        play_record.parse_play(tf.constant(bad))


def test_dataset_card_round_trip_and_version_check():
    card = dataset_card.DatasetCard(
        sampling=FrameSampling(num_frames=40, height=64, width=64, frame_rate=25.0),
        labels=["a", "b"], counts={"train": 3},
        label_counts={"train": {"a": 2, "b": 1}}, compression="gzip",
        shard_pattern="{split}-*-of-*.tfrecord.gz")
    again = dataset_card.DatasetCard.from_json(card.to_json())
    assert again == card and again.num_classes == 2
    assert (again.num_frames, again.height, again.width, again.frame_rate) == (40, 64, 64, 25.0)
    assert again.shard_glob("val") == "val-*-of-*.tfrecord.gz"
    data = json.loads(card.to_json())
    data["schema_version"] = 0
    with pytest.raises(play_record.SchemaError, match="re-run the records job"):
        dataset_card.DatasetCard.from_json(json.dumps(data))


def test_dataset_card_with_flat_sampling_keys_is_read():
    """A dataset.json that holds the sampling settings as top-level keys reads as the same card."""
    old = {"num_frames": 8, "height": 32, "width": 48, "labels": ["a"], "counts": {"train": 1},
           "label_counts": {"train": {"a": 1}}, "frame_rate": 25.0, "jpeg_quality": 80,
           "resize_mode": "pad", "pad_short": "loop", "args": {"x": 1},
           "schema_version": play_record.SCHEMA_VERSION}
    card = dataset_card.DatasetCard.from_json(json.dumps(old))
    assert card.sampling == FrameSampling(num_frames=8, height=32, width=48, resize_mode="pad",
                                          pad_short="loop", jpeg_quality=80, frame_rate=25.0)
    assert (card.num_frames, card.height, card.width, card.jpeg_quality, card.resize_mode,
            card.pad_short, card.frame_rate) == (8, 32, 48, 80, "pad", "loop", 25.0)
    assert json.loads(card.to_json())["sampling"]["width"] == 48
    minimal = dict(old, frame_rate=None)
    for key in ("jpeg_quality", "resize_mode", "pad_short"):
        del minimal[key]
    assert dataset_card.DatasetCard.from_json(json.dumps(minimal)).sampling == FrameSampling(
        num_frames=8, height=32, width=48)


def test_frame_sampling_checks_its_settings():
    assert FrameSampling.of(8, (24, 40)).size == (24, 40)
    assert FrameSampling().folder_frame_rate == 30.0
    for bad in (dict(num_frames=0), dict(resize_mode="stretch"), dict(pad_short="x"),
                dict(jpeg_quality=101), dict(frame_rate=-1.0)):
        with pytest.raises(ValueError):
            FrameSampling(**bad)
