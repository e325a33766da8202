"""Model quality parts of the trainer: play-level views, which weights, class imbalance, heads.

Tiny settings: synthetic plays of 6 frames at 32 px, VGG16 cut at block1_pool, weights=None.
"""
import csv
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from demo_data import synthetic_records  # noqa: E402
from schemas import play_record  # noqa: E402
from trainer.training import callbacks, play_task  # noqa: E402
from trainer.data import clips, parsers  # noqa: E402
from trainer.evaluation import metrics, reports  # noqa: E402
from trainer import predict  # noqa: E402
from trainer.data import reader, sources  # noqa: E402
from trainer.modeling import model as model_lib  # noqa: E402
from trainer import task  # noqa: E402
from trainer.training import train  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data.config import DataConfig, ReaderConfig  # noqa: E402

TINY = dict(strategy="default", cut_layer="block1_pool", weights="none", rnn_units=8,
            num_frames=4, dropout=0.0, batch_size=4)


def _by_hand_windows(total, num_frames, windows):
    """Eval's stride, the starts spread evenly from the first to the last possible one."""
    stride = max(total // num_frames, 1)
    room = max(total - ((num_frames - 1) * stride + 1), 0)
    starts = [room // 2] if windows == 1 else [k * room // (windows - 1) for k in range(windows)]
    return [[min(s + i * stride, total - 1) for i in range(num_frames)] for s in starts]


@pytest.mark.parametrize("total,num_frames,windows", [(40, 8, 1), (40, 8, 3), (40, 8, 4),
                                                     (6, 4, 3), (8, 8, 3), (3, 4, 2)])
def test_view_windows_spread_over_the_stored_frames(total, num_frames, windows):
    got = clips.view_windows(total, num_frames, windows).numpy().tolist()
    assert got == _by_hand_windows(total, num_frames, windows)
    centred = clips.frame_indices(total, num_frames).numpy().tolist()
    if windows % 2:
        assert got[windows // 2] == centred  # the middle window is the old centred clip


def test_one_view_equals_the_centred_eval_clip(data_dir):
    serialized = next(iter(tf.data.TFRecordDataset(sources.split_files(data_dir, "test"))))
    parser = parsers.ClipParser(4, (32, 32))
    views, label = parser.views_fn(parsers.EvalViews(1))(serialized)
    clip, same_label = parser.parse_eval(serialized)
    assert views.shape == (1, 4, 32, 32, 3) and int(label) == int(same_label)
    np.testing.assert_array_equal(views.numpy()[0], clip.numpy())


def test_views_of_a_play_are_its_windows_and_their_mirrors(data_dir):
    serialized = next(iter(tf.data.TFRecordDataset(sources.split_files(data_dir, "test"))))
    record = play_record.decode_play(serialized.numpy())
    parser = parsers.ClipParser(4, (32, 32))
    views = parsers.EvalViews(2, flip=True, with_centre=True)
    assert (views.count, views.total, views.centre) == (4, 5, 4)
    got = parser.views_fn(views)(serialized)[0].numpy()
    expected = [parser.eval_clip([record.frames[i] for i in w]).numpy()
                for w in _by_hand_windows(6, 4, 2)]
    for k in range(2):
        np.testing.assert_array_equal(got[k], expected[k])
        np.testing.assert_array_equal(got[2 + k], expected[k][:, :, ::-1])
    np.testing.assert_array_equal(got[4], parser.parse_eval(serialized)[0].numpy())


def test_feature_views_take_the_stored_flipped_view_or_refuse():
    features = np.arange(2 * 6 * 3, dtype=np.float32).reshape(2, 6, 3)
    from schemas import feature_record
    serialized = feature_record.encode_features(feature_record.FeatureRecord(
        play_id="p", label="a", label_index=1, split="test", features=features))
    parser = parsers.FeatureParser(4, 3, "float32", flip_view=1)
    got, label = parser.views_fn(parsers.EvalViews(3, flip=True))(tf.constant(serialized))
    windows = _by_hand_windows(6, 4, 3)
    expected = [features[0][w] for w in windows] + [features[1][w] for w in windows]
    np.testing.assert_array_equal(got.numpy(), np.stack(expected))
    assert int(label) == 1
    np.testing.assert_array_equal(parser.views_fn(parsers.EvalViews(1))(serialized)[0].numpy()[0],
                                  parser.parse_eval(serialized)[0].numpy())
    with pytest.raises(ValueError, match="no flipped view"):
        parsers.FeatureParser(4, 3, "float32").views_fn(parsers.EvalViews(1, flip=True))


def test_play_level_average_is_over_log_probabilities():
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])
    expected = np.exp(np.log(probs).mean(axis=1))
    np.testing.assert_allclose(metrics.average_log_probabilities(probs),
                               expected / expected.sum(axis=1, keepdims=True))
    report = reports.view_report(np.array([0]), probs, ["a", "b"], averaged=3, centre=1,
                                  flip=False)
    assert report["clip"]["accuracy"] == 0.0 and report["play"]["accuracy"] == 1.0
    assert report["accuracy"] == report["play"]["accuracy"]  # the top level is the play level


def _train(data_dir, job, **overrides):
    return train.train(TrainConfig.from_flags(dict(data_dir=data_dir, job_dir=str(job),
                                                   **{**TINY, **overrides})))


def _views_by_hand(model, record, windows, num_frames=4):
    """The model's probabilities of each window's clip of a play, [windows, C]."""
    parser = parsers.ClipParser(num_frames, (32, 32))
    batch = np.stack([parser.eval_clip([record.frames[i] for i in w]).numpy()
                      for w in _by_hand_windows(len(record.frames), num_frames, windows)])
    return model.predict(batch, verbose=0)


def test_eval_json_reports_clip_and_play_levels_and_predict_matches(data_dir, tmp_path):
    """K=3 views: eval.json's play level is the log-probability average of the model's views,
    computed here by hand; its clip level is the centred clip; predict gives the same play-level
    probabilities."""
    job = tmp_path / "job"
    summary = _train(data_dir, job, epochs=2, eval_views=3)
    report = json.loads((job / "eval.json").read_text())
    for level in ("clip", "play"):
        values = report[level]
        assert values["n"] == 8
        assert values["accuracy_ci_low"] <= values["accuracy"] <= values["accuracy_ci_high"]
        assert values["macro_f1_ci_low"] <= values["macro_f1"] <= values["macro_f1_ci_high"]
        assert set(values["per_class_recall"]) == {"pick_and_roll", "isolation"}
        assert 0 <= values["mean_per_class_recall"] <= 1
        assert np.sum(values["confusion_matrix"]) == 8
    assert report["views"] == {"eval_views": 3, "eval_flip": False, "source": "plays"}
    assert report["accuracy"] == report["play"]["accuracy"] == summary["eval"]["accuracy"]
    assert report["num_examples"] == 8 and "per_class" in report and "macro_avg" in report

    model = keras.models.load_model(str(job / "model.keras"), compile=False)
    predictor = predict.Predictor(str(job))
    clip_matrix, play_matrix = np.zeros((2, 2), int), np.zeros((2, 2), int)
    for serialized in tf.data.TFRecordDataset(sources.split_files(data_dir, "test")):
        record = play_record.decode_play(serialized.numpy())
        views = _views_by_hand(model, record, 3)
        play = metrics.average_log_probabilities(views[np.newaxis])[0]
        clip_matrix[record.label_index, np.argmax(views[1])] += 1
        play_matrix[record.label_index, np.argmax(play)] += 1
        np.testing.assert_allclose(predictor.classify_frames(record.frames), play,
                                   rtol=1e-4, atol=1e-5)
    assert report["play"]["confusion_matrix"] == play_matrix.tolist()
    assert report["clip"]["confusion_matrix"] == clip_matrix.tolist()


def _history(job):
    with open(os.path.join(job, "history.csv")) as f:
        return list(csv.DictReader(f))


def _same_weights(model, path, job):
    other = keras.models.clone_model(model)
    other.load_weights(os.path.join(job, "checkpoints", path))
    return all(np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))


@pytest.mark.parametrize("export_weights", ["best", "last"])
def test_export_weights_picks_the_recorded_epoch(data_dir, tmp_path, export_weights):
    job = str(tmp_path / "job")
    _train(data_dir, job, epochs=3, learning_rate=0.05, export_weights=export_weights)
    report = json.loads(open(os.path.join(job, "eval.json")).read())
    rows = _history(job)
    # Best: the highest val_accuracy, the lowest val_loss among those (the first of equals).
    best = max(range(len(rows)), key=lambda i: (float(rows[i]["val_accuracy"]),
                                                -float(rows[i]["val_loss"]), -i))
    weights = report["weights"]
    assert weights["export_weights"] == export_weights
    assert weights["epoch"] == (best + 1 if export_weights == "best" else 3)
    assert weights["monitor"] == "val_accuracy" and weights["tie_break"] == "val_loss"
    assert weights["value"] == pytest.approx(float(rows[weights["epoch"] - 1]["val_accuracy"]))
    record = json.loads(open(os.path.join(job, "checkpoints", "best.json")).read())
    assert record["epoch"] == best + 1
    model = keras.models.load_model(os.path.join(job, "model.keras"), compile=False)
    assert _same_weights(model, f"{export_weights}.weights.h5", job)


def test_best_weights_break_accuracy_ties_by_the_lower_loss(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="m")
    best = callbacks.BestWeights(str(tmp_path / "best.weights.h5"), str(tmp_path / "best.json"),
                                 monitor="val_accuracy", tie_break="val_loss")
    best.set_model(model)
    saved = []
    for epoch, (accuracy, loss) in enumerate([(0.5, 0.7), (1.0, 0.3), (1.0, 0.2), (1.0, 0.4),
                                              (0.9, 0.1)]):
        model.layers[0].kernel.assign(np.full((2, 1), epoch, np.float32))
        best.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
        saved.append(callbacks.read_best(str(tmp_path / "best.json"))["epoch"])
    assert saved == [1, 2, 3, 3, 3]
    assert best.last["epoch"] == 5
    model.load_weights(str(tmp_path / "best.weights.h5"))
    assert float(model.layers[0].kernel.numpy()[0, 0]) == 2.0  # epoch 3's weights


def test_class_weights_are_inverse_frequencies_with_mean_one():
    weights = play_task.class_weights_of((30, 10, 20))
    assert np.mean(weights) == pytest.approx(1.0)
    assert weights == pytest.approx((6 / 11, 18 / 11, 9 / 11))


def _imbalanced_records(path, per_label=(12, 4, 2)):
    records = []
    for label, count in enumerate(per_label):
        for j in range(count):
            frames = synthetic_records.play_frames(label, 3, 2, 8, 8, play_seed=j)
            records.append(play_record.encode_play(play_record.PlayRecord(
                play_id=f"{label}-{j}", label=str(label), label_index=label,
                frames=[synthetic_records.encode_jpeg(f) for f in frames],
                timestamps_us=[0, 40000], height=8, width=8)))
    return [synthetic_records.write_records(str(path / "train-00000-of-00001.tfrecord"), records)]


def test_balanced_sampling_gives_about_uniform_labels(tmp_path):
    files = _imbalanced_records(tmp_path)
    parser = parsers.ClipParser(2, (8, 8), augment=False)

    def label_counts(label_frequencies=None):
        options = ReaderConfig(6, seed=7, label_frequencies=label_frequencies)
        ds = reader.make_dataset(files, parser, options, training=True, repeat=True)
        labels = np.concatenate([batch[1].numpy() for batch in ds.take(100)])
        return np.bincount(labels, minlength=3)

    plain = label_counts()
    assert plain[0] > 0.55 * plain.sum()  # 12 of 18 plays: two thirds
    counts = label_counts(label_frequencies=(12.0, 4.0, 2.0))
    assert counts.sum() == 600
    assert np.all(np.abs(counts - 200) < 50), counts  # binomial sd about 12


def test_class_weights_ride_with_the_training_batches(data_dir):
    plays = sources.resolve_play_source(DataConfig(data_dir=data_dir))
    options = ReaderConfig(global_batch_size=4, seed=1, class_weights=(0.5, 1.5))
    inputs, labels, weights = next(iter(reader.read(plays, "train", parsers.ClipParser(4, (32, 32)),
                                                    options, training=True, repeat=True)))
    np.testing.assert_array_equal(weights.numpy(), np.where(labels.numpy() == 0, 0.5, 1.5))


@pytest.mark.parametrize("head,extra", [("mean_pool", dict(class_weight="balanced")),
                                        ("single_frame", dict(balanced_sampling=True)),
                                        ("transformer", dict(head_layers=1, head_heads=2))])
def test_baseline_heads_train_and_export(data_dir, tmp_path, head, extra):
    """The baselines, and the transformer (its positions sized by the run's --num_frames)."""
    job = tmp_path / "job"
    summary = _train(data_dir, job, epochs=1, head=head, eval_views=2, **extra)
    assert 0.0 <= summary["eval"]["accuracy"] <= 1.0
    config = json.loads((job / "config.json").read_text())
    assert config["config"]["model"]["head"] == head and config["resolved"]["head"] == head
    assert config["config"]["training"]["class_weight"] == extra.get("class_weight", "none")
    assert config["config"]["training"]["balanced_sampling"] == extra.get("balanced_sampling",
                                                                          False)
    if "class_weight" in extra:
        assert config["resolved"]["class_weights"] == {"pick_and_roll": 1.0, "isolation": 1.0}
    model = keras.models.load_model(str(job / "model.keras"), compile=False, safe_mode=True)
    layer = {"mean_pool": "mean_pool", "single_frame": "middle_frame",
             "transformer": "position_embedding"}[head]
    assert model.get_layer(layer) is not None
    if head == "transformer":
        assert config["config"]["model"]["head_layers"] == 1
        assert model.get_layer(layer).get_weights()[0].shape == (4, 8)  # --num_frames=4 rows
    record = play_record.decode_play(next(iter(tf.data.TFRecordDataset(
        sources.split_files(data_dir, "test")))).numpy())
    play = metrics.average_log_probabilities(_views_by_hand(model, record, 2)[np.newaxis])[0]
    np.testing.assert_allclose(predict.Predictor(str(job)).classify_frames(record.frames), play,
                               rtol=1e-4, atol=1e-5)


def test_weights_of_another_model_are_a_one_line_error(data_dir, tmp_path, capsys):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    code = task.run([f"--data_dir={data_dir}", f"--job_dir={tmp_path / 'job'}",
                     "--strategy=default", "--cut_layer=block1_pool", f"--weights={path}",
                     "--num_frames=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "not a VGG16 notop" in err[0], err


def test_eval_flip_on_features_without_flipped_views_is_refused(data_dir, tmp_path, capsys):
    from beam_jobs import embed_records
    features = str(tmp_path / "features")
    embed_records.run([f"--records_dir={data_dir}", f"--output_dir={features}", "--weights=none",
                       "--cut_layer=block1_pool"])
    code = task.run([f"--features_dir={features}", f"--job_dir={tmp_path / 'job'}",
                     "--strategy=default", "--eval_flip"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "--eval_flip needs the flipped frames' features" in err[0], err
    assert "--views=flip" in err[0]
