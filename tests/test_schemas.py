"""The record schema and dataset card: round trips and version checks."""
import json

import pytest
import tensorflow as tf

from schemas import dataset_card, play_record


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


def test_record_rejects_mismatched_timestamps_and_bad_pad_mode():
    with pytest.raises(play_record.SchemaError, match="2 frames but 1 timestamps"):
        _record(timestamps_us=[0])
    with pytest.raises(play_record.SchemaError, match="pad_mode"):
        _record(pad_mode="mirror")


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
        num_frames=40, height=64, width=64, labels=["a", "b"], counts={"train": 3},
        label_counts={"train": {"a": 2, "b": 1}}, compression="gzip",
        shard_pattern="{split}-*-of-*.tfrecord.gz")
    again = dataset_card.DatasetCard.from_json(card.to_json())
    assert again == card and again.num_classes == 2
    assert again.shard_glob("val") == "val-*-of-*.tfrecord.gz"
    data = json.loads(card.to_json())
    data["schema_version"] = 0
    with pytest.raises(play_record.SchemaError, match="re-run the records job"):
        dataset_card.DatasetCard.from_json(json.dumps(data))
