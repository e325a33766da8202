"""trainer.evaluation.detection: ActivityNet-style AP at tIoU on hand-computed cases."""

import subprocess
import sys

import numpy as np
import pytest

from trainer.evaluation import detection
from trainer.evaluation.detection import Segment

TRUTH = [Segment("g", 0, 10, "cut"), Segment("g", 20, 30, "cut"), Segment("g", 40, 50, "iso")]


def _det(start, end, label, score, game="g"):
    return Segment(game, start, end, label, score)


def test_tiou_by_hand():
    assert detection.tiou((0, 10), [[0, 10], [5, 15], [10, 20], [20, 30]]).tolist() == pytest.approx(
        [1.0, 5 / 15, 0.0, 0.0])


def test_interpolated_ap_takes_the_precision_envelope():
    # precisions 1, 0.5, 2/3 at recalls 0.5, 0.5, 1: 0.5 * 1 + 0.5 * 2/3
    assert detection.interpolated_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == \
        pytest.approx(0.5 + 1 / 3)


def test_a_perfect_detector_scores_one_everywhere():
    dets = [_det(p.start, p.end, p.label, 0.9) for p in TRUTH]
    metrics = detection.detection_metrics(TRUTH, dets)
    assert all(value == pytest.approx(1.0) for value in metrics.values()), metrics


def test_a_missed_play():
    dets = [_det(0, 10, "cut", 0.9), _det(40, 50, "iso", 0.8)]
    metrics = detection.detection_metrics(TRUTH, dets)
    assert metrics["map_tiou_0_5"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["precision_tiou_0_5"] == 1.0
    assert metrics["recall_tiou_0_5"] == pytest.approx(2 / 3)
    assert metrics["f1_tiou_0_5"] == pytest.approx(0.8)


def test_a_duplicate_detection_is_a_false_positive():
    dets = [_det(0, 10, "cut", 0.9), _det(1, 10, "cut", 0.8), _det(20, 30, "cut", 0.7),
            _det(40, 50, "iso", 0.7)]
    ap, per_label = detection.mean_ap(TRUTH, dets, 0.5)
    assert per_label["cut"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert ap == pytest.approx((0.5 + 1 / 3 + 1) / 2)
    prf = detection.precision_recall_f1(TRUTH, dets)
    assert (prf["precision"], prf["recall"]) == (0.75, 1.0)
    assert prf["f1"] == pytest.approx(6 / 7)


def test_a_wrong_label_matches_nothing():
    dets = [_det(0, 10, "cut", 1.0), _det(20, 30, "cut", 1.0), _det(40, 50, "cut", 1.0)]
    ap, per_label = detection.mean_ap(TRUTH, dets, 0.5)
    assert per_label == {"cut": 1.0, "iso": 0.0} and ap == 0.5
    prf = detection.precision_recall_f1(TRUTH, dets)
    assert prf["precision"] == pytest.approx(2 / 3) and prf["recall"] == pytest.approx(2 / 3)


def test_a_shifted_boundary_counts_below_its_tiou_only():
    dets = [_det(5, 15, "cut", 0.9), _det(20, 30, "cut", 0.8), _det(40, 50, "iso", 0.7)]
    metrics = detection.detection_metrics(TRUTH, dets)  # tIoU of the shifted play: 5/15
    assert metrics["map_tiou_0_3"] == pytest.approx(1.0)
    assert metrics["map_tiou_0_5"] == pytest.approx((0.25 + 1.0) / 2)
    assert metrics["map_tiou_0_7"] == pytest.approx((0.25 + 1.0) / 2)


def test_plays_of_another_game_do_not_match():
    dets = [_det(p.start, p.end, p.label, 0.9, game="other") for p in TRUTH]
    assert detection.detection_metrics(TRUTH, dets)["map_tiou_0_5"] == 0.0


def test_false_detections_overlap_no_true_play_of_their_game():
    dets = [_det(0, 10, "iso", 0.9),  # a true play with the wrong label: not false
            _det(9, 16, "cut", 0.8),  # tIoU 1/16 with the play at 0-10: false
            _det(22, 28, "cut", 0.8),  # inside a play: tIoU 0.6, not false
            _det(31, 39, "iso", 0.7),  # dead ball between plays: false
            _det(0, 10, "cut", 0.9, game="h")]  # a game with no true play: false
    false = detection.false_detections(TRUTH, dets)
    assert [(d.game, d.start) for d in false] == [("g", 9), ("g", 31), ("h", 0)]
    assert detection.false_detections(TRUTH, dets, max_tiou=0.05) == [dets[3], dets[4]]


def test_report_has_counts_and_intervals_over_games():
    truth = TRUTH + [Segment("h", 0, 10, "cut")]
    dets = [_det(p.start, p.end, p.label, 0.9, p.game) for p in TRUTH]  # game h's play missed
    report = detection.detection_report(truth, dets, samples=200)
    assert report["num_true_plays"] == 4 and report["num_detections"] == 3
    assert report["num_games"] == 2
    low, high = report["intervals"]["recall_tiou_0_5"]
    assert low == 0.0 and high == 1.0  # games g alone (1.0) and h alone (0.0) are both drawn
    assert report["recall_tiou_0_5"] == 0.75


def test_detection_imports_no_tensorflow():
    code = ("import sys; from trainer.evaluation import detection; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
