"""Training the head from cached features: the `make demo` path at a tiny size.

records job (demo plays) -> embed job (frozen base once per stored frame) ->
`python -m trainer.task --features_dir` -> evaluation and export of the full model.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from beam_jobs import embed_records, make_records  # noqa: E402
from backbone import vgg16  # noqa: E402
from schemas import feature_record, play_record  # noqa: E402
from trainer.data import parsers, reader, sources  # noqa: E402
from trainer.data.config import ReaderConfig  # noqa: E402
from trainer import task  # noqa: E402
from trainer.modeling import model as model_lib  # noqa: E402

CUT = "block1_pool"
HEAD = ["--rnn=gru", "--rnn_units=8", "--num_frames=4", "--dropout=0", "--batch_size=4"]


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory):
    """The demo's first two steps, tiny: 22 demo plays of 8 frames at 32 px, embedded."""
    root = tmp_path_factory.mktemp("demo")
    records, features = str(root / "records"), str(root / "features")
    make_records.run([f"--output_dir={records}", "--demo_plays=22", "--num_frames=8",
                      "--frame_size=32", "--num_shards=2"])
    embed_records.run([f"--records_dir={records}", f"--output_dir={features}", "--weights=none",
                       f"--cut_layer={CUT}", "--views=flip", "--seed=3"])
    return records, features


def _train(features, job, *extra):
    return task.run([f"--features_dir={features}", f"--job_dir={job}", "--strategy=default",
                     "--epochs=2", *HEAD, *extra])


def test_demo_path_trains_evaluates_and_exports(demo_dirs, tmp_path):
    records, features = demo_dirs
    job = tmp_path / "job"
    assert _train(features, job) == 0
    config = json.loads((job / "config.json").read_text())["resolved"]
    assert config["cut_layer"] == CUT and config["weights"] == "none"  # from the features card
    assert config["train_files"][0].startswith(records)  # --data_dir from the card
    report = json.loads((job / "eval.json").read_text())
    card = make_records.read_card(records)
    split = "test" if card.counts.get("test") else "val"
    assert report["num_examples"] == card.counts[split] and 0.0 <= report["accuracy"] <= 1.0
    assert (job / "saved_model" / "saved_model.pb").exists() and (job / "model.keras").exists()
    history = (job / "history.csv").read_text().splitlines()
    assert len(history) == 3  # header + 2 epochs of the head phase


def test_transformer_head_from_features_becomes_the_classifier(demo_dirs, tmp_path):
    """The head trained on cached features moves into the classifier on clips with its learned
    positions (one table of --num_frames rows in both), and model.keras loads in safe mode."""
    _, features = demo_dirs
    job = tmp_path / "job"
    assert _train(features, job, "--head=transformer", "--head_layers=1", "--head_heads=2") == 0
    model = keras.saving.load_model(str(job / "model.keras"), safe_mode=True, compile=False)
    assert model.get_layer("position_embedding").get_weights()[0].shape == (4, 8)
    assert json.loads((job / "config.json").read_text())["config"]["model"]["head_heads"] == 2


def _window_starts(total, num_frames, windows):
    """Eval's stride and the windows' first frames, by hand (spread from first to last start)."""
    stride = max(total // num_frames, 1)
    room = max(total - ((num_frames - 1) * stride + 1), 0)
    return stride, [k * room // (windows - 1) for k in range(windows)]


def test_export_equals_base_plus_head_on_the_plays_jpegs(demo_dirs, tmp_path):
    """The exported model (raw JPEGs in) gives base + head's probabilities averaged over the
    play's views (3 windows, each also flipped) as log-probabilities."""
    records, features = demo_dirs
    job = tmp_path / "job"
    assert _train(features, job, "--eval_views=3", "--eval_flip") == 0
    fcard = sources.load_features_card(features)
    base = keras.models.load_model(os.path.join(features, fcard.base_model), compile=False)
    trained = keras.models.load_model(str(job / "model.keras"), compile=False)
    head = model_lib.build_head_model(fcard.num_classes, fcard.feature_dim, rnn="gru", rnn_units=8,
                                      dropout=0.0)
    model_lib.copy_head_weights(trained, head)
    meta = json.loads((job / "saved_model" / "assets.extra" / "playclips_export.json").read_text())
    assert meta["eval_views"] == 3 and meta["eval_flip"] is True

    serve = tf.saved_model.load(str(job / "saved_model")).signatures["serving_default"]
    shard = sources.split_files(records, "val")[0]
    checked = 0
    for serialized in tf.data.TFRecordDataset(shard).take(3):
        record = play_record.decode_play(serialized.numpy())
        exported = serve(clips=tf.constant([record.frames]))["probabilities"].numpy()[0]
        stride, starts = _window_starts(len(record.frames), 4, 3)
        assert starts == [0, 0, 1]  # 8 stored frames, 4 used at stride 2
        log_probs = []
        for start in starts:
            window = [record.frames[start + i * stride] for i in range(4)]
            frames = parsers.ClipParser(4, (record.height, record.width)).eval_clip(window)
            for clip in (frames, tf.reverse(frames, axis=[2])):
                per_frame = base(vgg16.VGGPreprocess()(clip), training=False)
                log_probs.append(np.log(head(per_frame[tf.newaxis], training=False).numpy()[0]))
        mean = np.mean(log_probs, axis=0)
        ours = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
        np.testing.assert_allclose(exported, ours, rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked


def test_features_of_another_base_are_refused(demo_dirs, tmp_path, capsys):
    _, features = demo_dirs
    for flag, message in (("--cut_layer=block2_pool", "--cut_layer=block2_pool but the cached "
                           "features"), ("--weights=imagenet", "--weights=imagenet but the cached")):
        assert _train(features, tmp_path / "job", flag) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_incomplete_features_dir_is_refused(demo_dirs, tmp_path, capsys):
    assert _train(str(tmp_path), tmp_path / "job") == 2
    err = capsys.readouterr().err
    assert "no features.json" in err and "embed job" in err


def test_feature_dataset_frame_choice_and_views(demo_dirs, tmp_path):
    """Eval: view 0, centred frames; training: both views drawn, strided frames."""
    _, features = demo_dirs
    fcard = sources.load_features_card(features)
    assert fcard.views == ["none", "flip"]
    shards = sorted(tf.io.gfile.glob(os.path.join(features, fcard.shard_glob("train"))))
    serialized = next(iter(tf.data.TFRecordDataset(shards).take(1))).numpy()
    first = feature_record.decode_features(serialized)
    files = [str(tmp_path / "one.tfrecord")]
    with tf.io.TFRecordWriter(files[0]) as writer:
        writer.write(serialized)
    parser = parsers.FeatureParser(4, fcard.feature_dim, fcard.dtype)
    eval_ds = reader.make_dataset(files, parser, ReaderConfig(1), training=False)
    clip, _ = next(iter(eval_ds))
    expected = first.features[0].astype(np.float32)[[0, 2, 4, 6]]  # stride 2, centred
    np.testing.assert_array_equal(clip.numpy()[0], expected)
    train_ds = reader.make_dataset(files, parser, ReaderConfig(1, seed=0, shuffle_buffer=0),
                                   training=True, repeat=True)
    views = first.features.astype(np.float32)
    seen = set()
    for clip, _ in train_ds.take(40):
        row = clip.numpy()[0, 0]
        for v in range(2):
            if any(np.array_equal(row, views[v, t]) for t in range(views.shape[1])):
                seen.add(v)
    assert seen == {0, 1}


def test_fine_tune_continues_on_the_jpegs_from_the_trained_head(demo_dirs, tmp_path):
    """Phase 2 unfreezes the top block of the features' base and trains on the play records."""
    _, features = demo_dirs
    job = tmp_path / "job"
    assert _train(features, job, "--fine_tune_epochs=1", "--fine_tune_learning_rate=1e-2") == 0
    history = (job / "history.csv").read_text().splitlines()
    assert len(history) == 4  # header, 2 head epochs (cached features), 1 fine-tune epoch (JPEGs)
    fcard = sources.load_features_card(features)
    base = keras.models.load_model(os.path.join(features, fcard.base_model), compile=False)
    tuned = model_lib.base_of(keras.models.load_model(str(job / "model.keras"), compile=False))
    conv1, conv2 = base.get_layer("block1_conv1"), base.get_layer("block1_conv2")
    # block1_pool's block is the top block: unfrozen from block1_conv1, so both convs moved.
    assert not np.allclose(conv2.get_weights()[0], tuned.get_layer("block1_conv2").get_weights()[0])
    assert not np.allclose(conv1.get_weights()[0], tuned.get_layer("block1_conv1").get_weights()[0])
