"""The embed job end to end on the DirectRunner: cached features equal the saved base's output
on the same decoded frames, the flip view, features.json and check_base, dead letters,
multi-processing workers, and launch errors. Tiny: 32 px frames, 3 frames, VGG16 cut at block1_pool."""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline

from beam_jobs import embed_records, inference
from demo_data import synthetic_records
from schemas import feature_record, features_card, play_record
from schemas.errors import SchemaError, UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = ("train", "val")
NUM_PLAYS, NUM_FRAMES, SIZE, CUT = 4, 3, 32, "block1_pool"


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("embed") / "recs"
    synthetic_records.write_dataset(path, num_plays=NUM_PLAYS, num_frames=NUM_FRAMES, size=SIZE,
                                    splits=SPLITS, num_shards=2)
    return str(path)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A VGG16 notop weights file, saved by the test from a seeded random VGG16."""
    import keras  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(7)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = str(tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5")
    vgg.save_weights(path)
    return path


@pytest.fixture(scope="module")
def flip_run(records_dir, weights_file, tmp_path_factory):
    """One in-memory run with a weights file, --views=flip and float32 features."""
    out = str(tmp_path_factory.mktemp("embed") / "features")
    card = embed_records.run(_flags(records_dir, out, weights_file, "--views=flip",
                                    "--feature_dtype=float32", "--batch_size=3"))
    return out, card


def _flags(records_dir, out, weights, *extra):
    return [f"--records_dir={records_dir}", f"--output_dir={out}", f"--weights={weights}",
            f"--cut_layer={CUT}", "--num_shards=1", "--compute_dtype=float32", *extra]


def _feature_records(out, card):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    found = {}
    for split in card.counts:
        for path in sorted(glob.glob(os.path.join(out, card.shard_glob(split)))):
            for serialized in tf.data.TFRecordDataset(path):
                record = feature_record.decode_features(serialized.numpy())
                assert record.split == split
                found[record.play_id] = record
    return found


def _plays(records_dir):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    paths = sorted(glob.glob(os.path.join(records_dir, "*.tfrecord")))
    return {p.play_id: p for p in (play_record.decode_play(r.numpy())
                                   for r in tf.data.TFRecordDataset(paths))}


def _base_features(out, play, flip=False):
    """The saved base on the play's frames, decoded as the trainer decodes them: [T, D] float32."""
    import keras  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from backbone.vgg16 import VGGPreprocess  # pylint: disable=g-import-not-at-top
    base = keras.saving.load_model(os.path.join(out, "base.keras"), compile=False)
    frames = tf.stack([tf.io.decode_jpeg(jpeg, channels=3) for jpeg in play.frames])
    if flip:
        frames = tf.reverse(frames, axis=[-2])
    return np.asarray(base(VGGPreprocess()(frames), training=False))


def _rejected(out):
    files = glob.glob(os.path.join(out, "rejected-*-of-*.jsonl"))
    assert len(files) == 1
    with open(files[0]) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_feature_record_round_trip_and_version():
    features = np.arange(2 * 3 * 4, dtype=np.float16).reshape(2, 3, 4)
    record = feature_record.FeatureRecord("p1", "cut", 1, "val", features, "synthetic://val/1")
    back = feature_record.decode_features(feature_record.encode_features(record))
    assert (back.play_id, back.label, back.label_index, back.split, back.data_path) == (
        "p1", "cut", 1, "val", "synthetic://val/1")
    assert back.dtype == "float16" and np.array_equal(back.features, features)
    with pytest.raises(SchemaError, match="feature schema version none"):
        feature_record.decode_features(play_record.encode_play(play_record.PlayRecord(
            "p", "cut", 0, [b"x"], [0], 8, 8)))
    with pytest.raises(SchemaError, match="features must be"):
        feature_record.FeatureRecord("p", "cut", 0, "train", np.zeros((3, 4), np.float32))


def test_cached_features_equal_the_base_and_flip_view(records_dir, flip_run):
    out, card = flip_run
    cached, plays = _feature_records(out, card), _plays(records_dir)
    assert sorted(cached) == sorted(plays) and len(cached) == NUM_PLAYS * len(SPLITS)
    for play_id, record in cached.items():
        play = plays[play_id]
        assert record.features.shape == (2, NUM_FRAMES, 64) and record.dtype == "float32"
        assert (record.label, record.label_index, record.data_path) == (
            play.label, play.label_index, play.data_path)
        np.testing.assert_allclose(record.features[0], _base_features(out, play), rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(record.features[1], _base_features(out, play, flip=True),
                                   rtol=1e-5, atol=1e-5)
        assert not np.allclose(record.features[0], record.features[1])  # the frames are asymmetric
    # The trainer's graph-mode parser reads what the job wrote.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    files = sorted(glob.glob(os.path.join(out, "*.tfrecord")))
    parsed = tf.data.TFRecordDataset(files).map(
        lambda s: feature_record.parse_features(s, card.dtype))
    for item in parsed:
        record = cached[item["play_id"].numpy().decode()]
        assert int(item["label"]) == record.label_index and item["features"].dtype == tf.float32
        np.testing.assert_array_equal(item["features"].numpy(), record.features)


def test_features_card_and_check_base(records_dir, weights_file, flip_run, tmp_path, monkeypatch):
    out, card = flip_run
    assert card == embed_records.read_card(out)
    assert card.counts == {"train": NUM_PLAYS, "val": NUM_PLAYS} and card.num_rejected == 0
    assert card.num_input == sum(card.counts.values()) == NUM_PLAYS * len(SPLITS)
    assert _rejected(out) == []
    assert card.base_sha256 == features_card.sha256_of_file(os.path.join(out, "base.keras"))
    assert card.weights_sha256 == features_card.sha256_of_file(weights_file)
    assert (card.cut_layer, card.height, card.width, card.num_frames) == (CUT, SIZE, SIZE, NUM_FRAMES)
    assert (card.views, card.dtype, card.feature_dim, card.pooling) == (
        ["none", "flip"], "float32", 64, "avg")
    assert card.records_dir == os.path.abspath(records_dir) and card.base_model == "base.keras"
    assert card.labels == ["pick_and_roll", "isolation"] and card.weights == weights_file

    copy = str(tmp_path / "copy.weights.h5")
    shutil.copy(weights_file, copy)
    card.check_base(CUT, copy, SIZE, SIZE)  # the same file elsewhere is the same base
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    os.makedirs(tmp_path / "keras" / "models")
    shutil.copy(weights_file, tmp_path / "keras" / "models" / features_card.IMAGENET_WEIGHTS_FILE)
    card.check_base(CUT, "imagenet", SIZE, SIZE)  # the Keras cache holds the same file
    with pytest.raises(UsageError, match="--cut_layer=block2_pool .* --cut_layer=block1_pool"):
        card.check_base("block2_pool", weights_file, SIZE, SIZE)
    with pytest.raises(UsageError, match="frame size 48x48 .* 32x32"):
        card.check_base(CUT, weights_file, 48, 48)
    with pytest.raises(UsageError, match=r"--weights=none .* --weights=.*vgg16_notop"):
        card.check_base(CUT, "none", SIZE, SIZE)
    other = str(tmp_path / "other.weights.h5")
    with open(copy, "rb") as src, open(other, "wb") as dst:
        dst.write(src.read() + b"\0")
    with pytest.raises(UsageError, match="--weights="):
        card.check_base(CUT, other, SIZE, SIZE)
    # A complete output is not replaced without --overwrite.
    with pytest.raises(UsageError, match="already holds features.json.*--overwrite"):
        embed_records.run(_flags(records_dir, out, weights_file))


def test_dead_letters_float16_and_random_base(records_dir, tmp_path):
    bad_dir = tmp_path / "recs"
    shutil.copytree(records_dir, bad_dir)
    short = play_record.PlayRecord(
        "short", "isolation", 1, [synthetic_records.encode_jpeg(np.zeros((SIZE, SIZE, 3)))] * 2,
        [0, 1], SIZE, SIZE)
    synthetic_records.write_records(str(bad_dir / "train-00009-of-00010.tfrecord"),
                                    [b"not a play record", play_record.encode_play(short)])
    out = str(tmp_path / "features")
    pipeline = test_pipeline.TestPipeline()
    card = embed_records.run(_flags(bad_dir, out, "none", "--seed=3", "--batch_size=2"),
                             test_pipeline=pipeline)
    counters = {c.key.metric.name: c.committed for c in pipeline.result.metrics().query(
        MetricsFilter().with_namespace("playclips"))["counters"]}
    assert counters["plays_embedded"] == NUM_PLAYS * len(SPLITS) == sum(card.counts.values())
    assert counters["written_train"] == NUM_PLAYS and counters["plays_rejected"] == 2
    kinds = sorted(entry["kind"] for entry in _rejected(out))
    assert kinds == ["not_a_play_record", "wrong_num_frames"]
    assert card.rejected_reasons == {"not_a_play_record": 1, "wrong_num_frames": 1}
    assert card.num_input == NUM_PLAYS * len(SPLITS) + 2
    assert sum(card.counts.values()) + card.num_rejected == card.num_input
    assert card.weights_sha256 == "" and card.dtype == "float16" and card.views == ["none"]
    plays = _plays(records_dir)
    for play_id, record in _feature_records(out, card).items():
        assert record.dtype == "float16" and record.features.shape == (1, NUM_FRAMES, 64)
        np.testing.assert_allclose(record.features[0].astype(np.float32),
                                   _base_features(out, plays[play_id]), rtol=1e-2, atol=1e-2)


def test_a_play_the_base_fails_on_is_a_dead_letter(records_dir, tmp_path):
    """A JPEG whose header is whole but whose data is cut passes ParsePlays and fails in the base."""
    bad_dir = tmp_path / "recs"
    shutil.copytree(records_dir, bad_dir)
    jpeg = synthetic_records.encode_jpeg(np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3)))
    broken = play_record.PlayRecord(
        "broken", "isolation", 1, [jpeg, jpeg[:len(jpeg) // 2], jpeg], [0, 1, 2], SIZE, SIZE,
        data_path="somewhere/broken")
    synthetic_records.write_records(str(bad_dir / "val-00009-of-00010.tfrecord"),
                                    [play_record.encode_play(broken)])
    out = str(tmp_path / "features")
    pipeline = test_pipeline.TestPipeline()
    card = embed_records.run(_flags(bad_dir, out, "none", "--batch_size=1"),
                             test_pipeline=pipeline)
    [entry] = _rejected(out)
    assert (entry["play_id"], entry["path"], entry["kind"], entry["split"]) == (
        "broken", "somewhere/broken", "inference_failed", "val")
    assert entry["reason"].startswith("inference failed: ") and entry["row"] == 0
    assert card.rejected_reasons == {"inference_failed": 1}
    assert card.counts == {"train": NUM_PLAYS, "val": NUM_PLAYS}
    assert card.num_input == NUM_PLAYS * len(SPLITS) + 1 == sum(card.counts.values()) + 1
    counters = {c.key.metric.name: c.committed for c in pipeline.result.metrics().query(
        MetricsFilter().with_namespace("playclips"))["counters"]}
    assert counters["plays_rejected"] == 1 and counters["rejected_inference_failed"] == 1
    assert counters["plays_embedded"] == NUM_PLAYS * len(SPLITS)
    assert sorted(_feature_records(out, card)) == sorted(_plays(records_dir))


def test_model_sharing_flags_reach_the_handler(records_dir, tmp_path):
    args = embed_records.build_parser().parse_args([
        f"--records_dir={records_dir}", f"--output_dir={tmp_path / 'out'}", "--weights=none",
        f"--cut_layer={CUT}", "--share_model_across_processes", "--model_copies=2"])
    config = embed_records.config_from_args(args)
    handler = inference.keyed_handler(
        config.base_path, config.card.views, config.batch_size,
        share_model_across_processes=config.share_model_across_processes,
        model_copies=config.model_copies)
    assert handler.share_model_across_processes() and handler.model_copies() == 2
    plain = inference.keyed_handler(config.base_path, ["none"], 4)
    assert not plain.share_model_across_processes() and plain.model_copies() == 1
    assert plain.batch_elements_kwargs() == {"min_batch_size": 4, "max_batch_size": 4}


def test_script_multiprocessing_matches_in_memory_run(records_dir, weights_file, flip_run, tmp_path):
    """`python beam_jobs/embed_records.py` from another folder, with 2 worker processes."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    out = str(tmp_path / "features")
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "beam_jobs", "embed_records.py"),
         *_flags(records_dir, out, weights_file, "--views=flip", "--feature_dtype=float32"),
         "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"features: {NUM_PLAYS * len(SPLITS)} plays embedded" in done.stdout
    card = embed_records.read_card(out)
    ours, theirs = _feature_records(out, card), _feature_records(*flip_run)
    assert sorted(ours) == sorted(theirs)
    for play_id, record in ours.items():
        np.testing.assert_allclose(record.features, theirs[play_id].features, rtol=1e-5, atol=1e-6)


def test_usage_errors(tmp_path, capsys):
    script = os.path.join(ROOT, "beam_jobs", "embed_records.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    missing = subprocess.run([sys.executable, script, "--records_dir=nowhere", "--output_dir=out"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error: --records_dir=nowhere: no dataset.json")
    assert len(missing.stderr.strip().splitlines()) == 1
    assert embed_records.main([f"--record_dir={tmp_path}", f"--output_dir={tmp_path}/o"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown flag --record_dir (did you mean --records_dir?)")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
