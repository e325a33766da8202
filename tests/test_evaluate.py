"""trainer.evaluation: metrics against hand-computed values, predictions over views, eval.json and the PNG."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.evaluation import metrics, predictions, reports

LABELS = ["a", "b", "c", "d"]
Y_TRUE = [0, 0, 1, 1, 2, 3]
# Scores per clip (each row sums to 100); argmax = [0, 1, 1, 1, 0, 3].
SCORES = [
    [50, 30, 15, 5],   # true a, predicted a
    [30, 50, 15, 5],   # true a, predicted b (a is 2nd: top-3 hit)
    [10, 60, 20, 10],  # true b, predicted b
    [5, 70, 20, 5],    # true b, predicted b
    [60, 25, 5, 10],   # true c, predicted a (c is last: top-3 miss)
    [10, 20, 30, 40],  # true d, predicted d
]
# By hand. Confusion (rows true, cols predicted):
EXPECTED_CONFUSION = [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
EXPECTED_PRECISION = [1 / 2, 2 / 3, 0.0, 1.0]
EXPECTED_RECALL = [1 / 2, 1.0, 0.0, 1.0]
EXPECTED_F1 = [1 / 2, 0.8, 0.0, 1.0]
EXPECTED_SUPPORT = [2, 2, 1, 1]


def _probabilities():
    return np.asarray(SCORES, np.float64) / 100.0


def test_metrics_match_hand_computed_values():
    report = metrics.classification_metrics(Y_TRUE, _probabilities(), LABELS, top_k=(1, 3, 4, 5))
    assert report["num_examples"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["top_1"] == pytest.approx(4 / 6)
    assert report["top_3"] == pytest.approx(5 / 6)
    assert "top_4" not in report and "top_5" not in report  # k >= number of classes
    assert report["confusion_matrix"] == EXPECTED_CONFUSION
    for i, name in enumerate(LABELS):
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(EXPECTED_PRECISION[i])
        assert row["recall"] == pytest.approx(EXPECTED_RECALL[i])
        assert row["f1"] == pytest.approx(EXPECTED_F1[i])
        assert row["support"] == EXPECTED_SUPPORT[i]
    assert report["macro_avg"]["precision"] == pytest.approx((0.5 + 2 / 3 + 0 + 1) / 4)
    assert report["macro_avg"]["recall"] == pytest.approx(2.5 / 4)
    assert report["macro_avg"]["f1"] == pytest.approx(2.3 / 4)
    assert report["weighted_avg"]["precision"] == pytest.approx((1 + 4 / 3 + 0 + 1) / 6)
    assert report["weighted_avg"]["recall"] == pytest.approx(4 / 6)
    assert report["weighted_avg"]["f1"] == pytest.approx(3.6 / 6)
    assert report["labels"] == LABELS


def test_confusion_matrix_and_top_k_primitives():
    matrix = metrics.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], 3)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert metrics.top_k_accuracy([0, 0], probs, 1) == pytest.approx(0.5)
    assert metrics.top_k_accuracy([0, 0], probs, 2) == pytest.approx(0.5)
    assert metrics.top_k_accuracy([0, 0], probs, 3) == pytest.approx(1.0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        metrics.classification_metrics([0, 1], np.ones((2, 3)) / 3, LABELS)
    with pytest.raises(ValueError, match="2 labels but 3 predictions"):
        metrics.classification_metrics([0, 1], np.ones((3, 4)) / 4, LABELS)
    with pytest.raises(ValueError, match="out of range"):
        metrics.confusion_matrix([0, 5], [0, 1], 4)


def _score_model(num_classes):
    """A real Keras model whose output is the normalized first row of frame 0, channel 0."""
    clips = keras.Input((None, 8, 8, 3), dtype="uint8")
    scores = keras.layers.Lambda(
        lambda x: tf.cast(x[:, 0, 0, :num_classes, 0], tf.float32),
        output_shape=(num_classes,))(clips)
    probs = keras.layers.Lambda(lambda s: s / tf.reduce_sum(s, axis=-1, keepdims=True),
                                output_shape=(num_classes,))(scores)
    return keras.Model(clips, probs)


def _dataset(batch_size):
    """(views [B, 1, 2, 8, 8, 3], labels): one view per play, its scores in frame 0."""
    clips = np.zeros((len(SCORES), 1, 2, 8, 8, 3), np.uint8)
    clips[:, 0, 0, 0, :len(LABELS), 0] = np.asarray(SCORES, np.uint8)
    labels = np.asarray(Y_TRUE, np.int32)
    return tf.data.Dataset.from_tensor_slices((clips, labels)).batch(batch_size)


def _report(labels, scores, top_k=(1, 3)):
    return reports.view_report(labels, scores, LABELS, averaged=1, centre=0, flip=False,
                               top_k=top_k)


def test_predictions_over_views_write_json_and_png(tmp_path):
    out_dir = str(tmp_path / "job")
    # Batch 4 over 6 plays: the last batch is partial.
    labels, scores = predictions.predict_views(_score_model(len(LABELS)), _dataset(4))
    assert scores.shape == (6, 1, len(LABELS))
    report = _report(labels, scores)
    reports.write_report(report, LABELS, out_dir)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["top_3"] == pytest.approx(5 / 6)
    assert report["confusion_matrix"] == EXPECTED_CONFUSION
    with open(os.path.join(out_dir, reports.EVAL_JSON)) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    with open(os.path.join(out_dir, reports.CONFUSION_PNG), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_predictions_with_a_mirrored_model():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        clips = keras.Input((None, 8, 8, 3), dtype="uint8")
        x = keras.layers.Rescaling(1 / 255.0)(clips)
        x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
        x = keras.layers.GlobalAveragePooling1D()(x)
        model = keras.Model(clips, keras.layers.Dense(len(LABELS), activation="softmax")(x))
    labels, scores = predictions.predict_views(model, _dataset(4))
    report = _report(labels, scores)
    assert report["num_examples"] == len(Y_TRUE)
    matrix = np.asarray(report["confusion_matrix"])
    np.testing.assert_array_equal(matrix.sum(axis=1), EXPECTED_SUPPORT)


def test_plot_readable_for_eleven_classes(tmp_path):
    names = [f"play_type_{i}" for i in range(11)]
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, (11, 11))
    matrix[3] = 0  # a class with no examples must not divide by zero
    path = str(tmp_path / "cm.png")
    reports.plot_confusion_matrix(matrix, names, path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_empty_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        predictions.predict_views(_score_model(len(LABELS)), _dataset(4).take(0))


def test_predictions_on_the_real_eval_pipeline(tmp_path):
    from demo_data import synthetic_records as record_fixtures
    from trainer.data import parsers, reader, sources
    labels = ["pick_and_roll", "isolation", "post_up"]
    card = record_fixtures.write_dataset(tmp_path / "records", num_plays=7, num_frames=6, size=32,
                                         labels=labels, splits=("test",), num_shards=2)
    parser = parsers.ClipParser(3, (32, 32))
    views = parsers.EvalViews(2, flip=True)
    dataset = reader.make_dataset(sources.split_files(str(tmp_path / "records"), "test"),
                                  parser, reader.ReaderConfig(4), training=False,
                                  parse=parser.views_fn(views))
    clips = keras.Input((None, 32, 32, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(clips)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
    x = keras.layers.GRU(4)(x)
    model = keras.Model(clips, keras.layers.Dense(len(labels), activation="softmax")(x))
    true_labels, scores = predictions.predict_views(model, dataset)
    assert scores.shape == (7, views.count, len(labels))
    report = reports.view_report(true_labels, scores, labels, averaged=views.count, centre=0,
                                 flip=True)
    reports.write_report(report, labels, str(tmp_path / "job"))
    assert report["num_examples"] == card.counts["test"] == 7
    assert {name: row["support"] for name, row in report["per_class"].items()} == \
        card.label_counts["test"]
    assert "top_3" not in report  # 3 classes: top-3 is always 1
    assert os.path.exists(tmp_path / "job" / reports.CONFUSION_PNG)


def test_metrics_import_no_tensorflow_keras_or_matplotlib():
    code = ("import sys; from trainer.evaluation import metrics; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


PREDICTED = [0, 1, 1, 1, 0, 3]  # argmax of SCORES


@pytest.mark.parametrize("correct,n,low,high", [
    (5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)])
def test_wilson_interval_matches_published_values(correct, n, low, high):
    got = metrics.wilson_interval(correct, n)
    assert got == pytest.approx((low, high), abs=1e-4)
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)


def test_macro_f1_and_mean_recall_leave_out_classes_that_never_occur():
    assert metrics.macro_f1(Y_TRUE, PREDICTED, 4) == pytest.approx(2.3 / 4)
    assert metrics.macro_f1(Y_TRUE, PREDICTED, 6) == pytest.approx(2.3 / 4)  # 2 unused classes
    recall = metrics.per_class_recall(Y_TRUE, PREDICTED, 5)
    np.testing.assert_allclose(recall[:4], EXPECTED_RECALL)
    assert np.isnan(recall[4])
    assert metrics.mean_per_class_recall(Y_TRUE, PREDICTED, 5) == pytest.approx(2.5 / 4)
    # Imbalanced: always predicting the majority scores high accuracy, low balanced figures.
    labels = [0] * 18 + [1, 2]
    assert metrics.mean_per_class_recall(labels, [0] * 20, 3) == pytest.approx(1 / 3)
    assert metrics.macro_f1(labels, [0] * 20, 3) == pytest.approx((2 * 18 / 38) / 3)


def test_bootstrap_macro_f1_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    predictions = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 5, 400))
    point = metrics.macro_f1(labels, predictions, 5)
    low, high = metrics.bootstrap_macro_f1(labels, predictions, 5, resamples=1000, seed=1)
    assert (low, high) == metrics.bootstrap_macro_f1(labels, predictions, 5, resamples=1000, seed=1)
    assert low < point < high and 0.04 < high - low < 0.2
    small = metrics.bootstrap_macro_f1(labels[:50], predictions[:50], 5, resamples=1000)
    assert small[1] - small[0] > high - low  # less data, a wider interval
    assert metrics.bootstrap_macro_f1(labels, labels, 5, resamples=50) == (1.0, 1.0)


def test_report_has_intervals_next_to_the_old_keys():
    report = metrics.classification_metrics(Y_TRUE, _probabilities(), LABELS)
    assert report["accuracy"] == pytest.approx(4 / 6) and report["accuracy_n"] == 6
    assert (report["accuracy_ci_low"], report["accuracy_ci_high"]) == \
        pytest.approx(metrics.wilson_interval(4, 6))
    assert report["macro_f1"] == pytest.approx(2.3 / 4)
    assert report["macro_f1_ci_low"] <= report["macro_f1"] <= report["macro_f1_ci_high"]
    assert report["mean_per_class_recall"] == pytest.approx(2.5 / 4)
    json.dumps(report)


def test_play_level_average_is_a_geometric_mean_of_the_views():
    # 3 views of 4 plays: the middle view is wrong on plays 1 and 3, the other two views right.
    labels = np.array([0, 1, 2, 1])
    right = np.eye(3)[labels] * 0.8 + 0.1
    wrong = np.eye(3)[(labels + 1) % 3] * 0.8 + 0.1
    middle = np.where(np.array([False, True, False, True])[:, None], wrong, right)
    scores = np.stack([right, middle, right], axis=1)
    report = reports.view_report(labels, scores, ["a", "b", "c"], averaged=3, centre=1, flip=False)
    assert report["clip"]["accuracy"] == pytest.approx(0.5)
    assert report["play"]["accuracy"] == pytest.approx(1.0)
    assert report["play"]["n"] == 4
    play = metrics.average_log_probabilities(scores)
    geometric = np.exp(np.log(scores).mean(axis=1))
    np.testing.assert_allclose(play, geometric / geometric.sum(axis=1, keepdims=True))
    # A zero probability is floored, not -inf: the other views still count.
    zero = np.array([[[0.0, 1.0], [0.9, 0.1], [0.9, 0.1]]])
    assert np.isfinite(metrics.average_log_probabilities(zero)).all()
    with pytest.raises(ValueError, match=r"\[N, K, C\]"):
        metrics.average_log_probabilities(right)


def test_tensorflow_play_average_equals_the_numpy_one():
    from trainer.serving import averaging
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4, 6)) * 4
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    probs[0, 1, 2] = 0.0  # the floor
    got = averaging.average_log_probabilities(tf.constant(probs, tf.float32)).numpy()
    np.testing.assert_allclose(got, metrics.average_log_probabilities(probs), rtol=1e-5,
                               atol=1e-7)


def test_play_labels_are_reported_with_and_without_the_no_play_class():
    names = ["cut", "no_play", "iso"]
    labels = np.array([0, 1, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 0, 2, 1])  # one no-play called cut, one iso called no play
    scores = (np.eye(3)[predicted] * 0.9 + 0.05)[:, None, :]
    report = reports.view_report(labels, scores, names, averaged=1, centre=0, flip=False,
                                 no_play_label="no_play")
    assert report["play"]["n"] == 6 and report["play"]["accuracy"] == pytest.approx(4 / 6)
    plays_only = report["play_labels"]
    assert plays_only["without"] == "no_play" and plays_only["n"] == 3
    assert plays_only["accuracy"] == pytest.approx(2 / 3)  # cut right, iso right, iso missed
    assert "play_labels" not in reports.view_report(labels, scores, names, averaged=1, centre=0,
                                                    flip=False)
