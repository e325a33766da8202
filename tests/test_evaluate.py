"""trainer.evaluation.evaluate: metrics against hand-computed values, eval.json and the PNG."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.evaluation import evaluate

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
    report = evaluate.classification_metrics(Y_TRUE, _probabilities(), LABELS, top_k=(1, 3, 4, 5))
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
    matrix = evaluate.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], 3)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert evaluate.top_k_accuracy([0, 0], probs, 1) == pytest.approx(0.5)
    assert evaluate.top_k_accuracy([0, 0], probs, 2) == pytest.approx(0.5)
    assert evaluate.top_k_accuracy([0, 0], probs, 3) == pytest.approx(1.0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        evaluate.classification_metrics([0, 1], np.ones((2, 3)) / 3, LABELS)
    with pytest.raises(ValueError, match="2 labels but 3 predictions"):
        evaluate.classification_metrics([0, 1], np.ones((3, 4)) / 4, LABELS)
    with pytest.raises(ValueError, match="out of range"):
        evaluate.confusion_matrix([0, 5], [0, 1], 4)


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
    clips = np.zeros((len(SCORES), 2, 8, 8, 3), np.uint8)
    clips[:, 0, 0, :len(LABELS), 0] = np.asarray(SCORES, np.uint8)
    labels = np.asarray(Y_TRUE, np.int32)
    return tf.data.Dataset.from_tensor_slices((clips, labels)).batch(batch_size)


def test_evaluate_model_writes_json_and_png(tmp_path):
    out_dir = str(tmp_path / "job")
    # Batch 4 over 6 clips: the last batch is partial.
    report = evaluate.evaluate_model(_score_model(len(LABELS)), _dataset(4), LABELS, out_dir,
                                     top_k=(1, 3))
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["top_3"] == pytest.approx(5 / 6)
    assert report["confusion_matrix"] == EXPECTED_CONFUSION
    with open(os.path.join(out_dir, evaluate.EVAL_JSON)) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    with open(os.path.join(out_dir, evaluate.CONFUSION_PNG), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_model_with_a_mirrored_model(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        clips = keras.Input((None, 8, 8, 3), dtype="uint8")
        x = keras.layers.Rescaling(1 / 255.0)(clips)
        x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
        x = keras.layers.GlobalAveragePooling1D()(x)
        model = keras.Model(clips, keras.layers.Dense(len(LABELS), activation="softmax")(x))
    report = evaluate.evaluate_model(model, _dataset(4), LABELS, str(tmp_path))
    assert report["num_examples"] == len(Y_TRUE)
    matrix = np.asarray(report["confusion_matrix"])
    np.testing.assert_array_equal(matrix.sum(axis=1), EXPECTED_SUPPORT)


def test_plot_readable_for_eleven_classes(tmp_path):
    names = [f"play_type_{i}" for i in range(11)]
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, (11, 11))
    matrix[3] = 0  # a class with no examples must not divide by zero
    path = str(tmp_path / "cm.png")
    evaluate.plot_confusion_matrix(matrix, names, path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_empty_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        evaluate.evaluate_model(_score_model(len(LABELS)), _dataset(4).take(0), LABELS,
                                str(tmp_path))


def test_evaluate_model_on_the_real_eval_pipeline(tmp_path):
    from demo_data import synthetic_records as record_fixtures
    from trainer.data import parsers, reader, sources
    labels = ["pick_and_roll", "isolation", "post_up"]
    card = record_fixtures.write_dataset(tmp_path / "records", num_plays=7, num_frames=6, size=32,
                                         labels=labels, splits=("test",), num_shards=2)
    dataset = reader.make_dataset(sources.split_files(str(tmp_path / "records"), "test"),
                                  parsers.ClipParser(3, (32, 32)), reader.ReaderConfig(4),
                                  training=False)
    clips = keras.Input((None, 32, 32, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(clips)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
    x = keras.layers.GRU(4)(x)
    model = keras.Model(clips, keras.layers.Dense(len(labels), activation="softmax")(x))
    report = evaluate.evaluate_model(model, dataset, labels, str(tmp_path / "job"))
    assert report["num_examples"] == card.counts["test"] == 7
    assert {name: row["support"] for name, row in report["per_class"].items()} == \
        card.label_counts["test"]
    assert "top_3" not in report  # 3 classes: top-3 is always 1
    assert os.path.exists(tmp_path / "job" / evaluate.CONFUSION_PNG)


PREDICTED = [0, 1, 1, 1, 0, 3]  # argmax of SCORES


@pytest.mark.parametrize("correct,n,low,high", [
    (5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)])
def test_wilson_interval_matches_published_values(correct, n, low, high):
    got = evaluate.wilson_interval(correct, n)
    assert got == pytest.approx((low, high), abs=1e-4)
    assert evaluate.wilson_interval(0, 0) == (0.0, 1.0)


def test_macro_f1_and_mean_recall_leave_out_classes_that_never_occur():
    assert evaluate.macro_f1(Y_TRUE, PREDICTED, 4) == pytest.approx(2.3 / 4)
    assert evaluate.macro_f1(Y_TRUE, PREDICTED, 6) == pytest.approx(2.3 / 4)  # 2 unused classes
    recall = evaluate.per_class_recall(Y_TRUE, PREDICTED, 5)
    np.testing.assert_allclose(recall[:4], EXPECTED_RECALL)
    assert np.isnan(recall[4])
    assert evaluate.mean_per_class_recall(Y_TRUE, PREDICTED, 5) == pytest.approx(2.5 / 4)
    # Imbalanced: always predicting the majority scores high accuracy, low balanced figures.
    labels = [0] * 18 + [1, 2]
    assert evaluate.mean_per_class_recall(labels, [0] * 20, 3) == pytest.approx(1 / 3)
    assert evaluate.macro_f1(labels, [0] * 20, 3) == pytest.approx((2 * 18 / 38) / 3)


def test_bootstrap_macro_f1_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    predictions = np.where(rng.random(400) < 0.7, labels, rng.integers(0, 5, 400))
    point = evaluate.macro_f1(labels, predictions, 5)
    low, high = evaluate.bootstrap_macro_f1(labels, predictions, 5, resamples=1000, seed=1)
    assert (low, high) == evaluate.bootstrap_macro_f1(labels, predictions, 5, resamples=1000, seed=1)
    assert low < point < high and 0.04 < high - low < 0.2
    small = evaluate.bootstrap_macro_f1(labels[:50], predictions[:50], 5, resamples=1000)
    assert small[1] - small[0] > high - low  # less data, a wider interval
    assert evaluate.bootstrap_macro_f1(labels, labels, 5, resamples=50) == (1.0, 1.0)


def test_report_has_intervals_next_to_the_old_keys():
    report = evaluate.classification_metrics(Y_TRUE, _probabilities(), LABELS)
    assert report["accuracy"] == pytest.approx(4 / 6) and report["accuracy_n"] == 6
    assert (report["accuracy_ci_low"], report["accuracy_ci_high"]) == \
        pytest.approx(evaluate.wilson_interval(4, 6))
    assert report["macro_f1"] == pytest.approx(2.3 / 4)
    assert report["macro_f1_ci_low"] <= report["macro_f1"] <= report["macro_f1_ci_high"]
    assert report["mean_per_class_recall"] == pytest.approx(2.5 / 4)
    json.dumps(report)


def test_view_metrics_scores_clip_and_play_side_by_side():
    # 3 views of 4 plays: the middle view is wrong on plays 1 and 3, the other two views right.
    labels = np.array([0, 1, 2, 1])
    right = np.eye(3)[labels] * 0.8 + 0.1
    wrong = np.eye(3)[(labels + 1) % 3] * 0.8 + 0.1
    middle = np.where(np.array([False, True, False, True])[:, None], wrong, right)
    scores = np.stack([right, middle, right], axis=1)
    report = evaluate.view_metrics(labels, scores, ["a", "b", "c"])
    assert report["views"] == 3
    assert report["clip"]["accuracy"] == pytest.approx(0.5)
    assert report["play"]["accuracy"] == pytest.approx(1.0)
    assert report["play"]["accuracy_n"] == 4
    logits = np.log(scores)
    np.testing.assert_allclose(evaluate.average_views(logits, from_logits=True).sum(axis=1), 1.0)
    assert evaluate.view_metrics(labels, logits, ["a", "b", "c"],
                                 from_logits=True)["play"]["accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"\[N, K, C\]"):
        evaluate.average_views(right)
