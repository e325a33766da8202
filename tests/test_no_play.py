"""The no-play class: background clips from the time no play covers (beam_jobs.no_play)."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import make_records, no_play
from schemas import play_record
from schemas.errors import UsageError
from trainer.evaluation.detection import tiou


def test_parse_amount():
    assert no_play.parse_amount("0") == (0, 0.0)
    assert no_play.parse_amount("3") == (3, 0.0)
    assert no_play.parse_amount("0.5x") == (0, 0.5)
    with pytest.raises(UsageError, match="--no_play_clips"):
        no_play.parse_amount("lots")


def test_free_spans_merge_overlapping_plays():
    assert no_play.free_spans(20.0, [(2, 5), (4, 8), (12, 14)]) == [(0.0, 2), (8, 12), (14, 20.0)]
    assert no_play.free_spans(5.0, [(0, 5)]) == []


def test_background_clips_never_overlap_a_play_at_tiou_0_3_or_more():
    rng = np.random.default_rng(0)
    for _ in range(200):
        starts = np.sort(rng.uniform(0, 60, 8))
        plays = [(float(s), float(s + rng.uniform(1, 3))) for s in starts]  # some overlap
        clips = no_play.draw_clips(plays, 70.0, 6, 0.5, rng)
        for start, end, hard in clips:
            assert 0 <= start < end <= 70.0
            worst = tiou((start, end), plays).max()
            assert worst < no_play.HARD_TIOU
            if not hard:
                assert worst == 0.0  # free clips lie in the spans no play covers
        lengths = {round(e - s, 9) for s, e in plays}
        assert all(round(e - s, 9) in lengths for s, e, _ in clips)  # lengths like the plays'


def test_a_game_with_no_free_span_gives_no_free_clip():
    assert no_play.draw_clips([(0.0, 10.0)], 10.0, 3, 0.0, np.random.default_rng(0)) == []


def test_shifted_ranges_stay_near_the_play_and_inside_the_video():
    rng = np.random.default_rng(0)
    moved = no_play.shifted_ranges((1.0, 3.0), 10.0, 200, 0.3, rng)
    assert len(moved) == 200
    for start, end in moved:
        assert 0 <= start and end <= 10.0 and end - start == pytest.approx(2.0)
        assert abs(start - 1.0) <= 0.6 + 1e-9
        assert tiou((start, end), [(1.0, 3.0)])[0] >= (1 - 0.3) / (1 + 0.3) - 1e-9
    assert max(abs(s - 1.0) for s, _ in moved) > 0.4  # they spread over the allowed shift
    assert no_play.shifted_ranges((0.0, 2.0), 2.0, 5, 0.3, rng) == []  # no room to move


def _records(folder):
    """(split, PlayRecord) of every record in a records folder."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".tfrecord"):
            out += [(name.split("-")[0], play_record.decode_play(r.numpy()))
                    for r in tf.data.TFRecordDataset(os.path.join(folder, name))]
    return out


def test_records_job_cuts_background_clips_by_game(tmp_path):
    out = tmp_path / "records"
    card = make_records.run([f"--output_dir={out}", "--demo_game_videos=2", "--num_frames=6",
                             "--frame_size=32", "--no_play_clips=1x", "--progress_seconds=0"])
    data = json.loads((out / "dataset.json").read_text())
    assert data["no_play_label"] == "no_play" and "no_play" in data["labels"]
    with_splits = _records(out)
    records = [r for _, r in with_splits]
    plays = list(csv.DictReader(open(out / "demo_games" / "plays.csv")))
    background = [r for r in records if r.label == "no_play"]
    assert len(background) == len(plays)  # 1x: one per play, every game had room
    assert data["num_input"] == len(plays) + len(background) == len(records)
    assert data["num_rejected"] == 0
    split_of_game = {}
    for split, record in with_splits:  # a game's plays and background clips share one split
        split_of_game.setdefault(record.game_id, set()).add(split)
    assert all(len(splits) == 1 for splits in split_of_game.values())
    truth = {}
    for row in plays:
        truth.setdefault(row["path"], []).append((float(row["start"]), float(row["end"])))
    for record in background:
        video = os.path.basename(record.data_path)
        span = (record.start_us / 1e6, record.end_us / 1e6)
        assert tiou(span, truth[video]).max() < no_play.HARD_TIOU
    assert sum(card.label_counts[s].get("no_play", 0) for s in card.label_counts) == len(background)


def test_shifted_plays_only_in_the_training_split(tmp_path):
    out = tmp_path / "records"
    make_records.run([f"--output_dir={out}", "--demo_game_videos=3", "--num_frames=4",
                      "--frame_size=16", "--shifted_plays=2", "--progress_seconds=0",
                      "--splits=train=0.5,test=0.5"])
    data = json.loads((out / "dataset.json").read_text())
    with_splits = _records(out)
    plays = {row["play_id"]: row for row in csv.DictReader(open(out / "demo_games" / "plays.csv"))}
    shifted = [(s, r) for s, r in with_splits if "-shifted-" in r.play_id]
    originals = [(s, r) for s, r in with_splits if "-shifted-" not in r.play_id]
    train = [r for s, r in originals if s == "train"]
    assert train and len(originals) < len(with_splits)
    assert len(shifted) == 2 * len(train) and {s for s, _ in shifted} == {"train"}
    assert data["num_input"] == len(plays) + len(shifted) == len(with_splits)
    assert data["no_play_label"] == ""  # no background clips asked for
    for _, record in shifted:
        play = plays[record.play_id.split("-shifted-")[0]]
        assert record.label == play["label"]
        span = (record.start_us / 1e6, record.end_us / 1e6)
        assert tiou(span, [(float(play["start"]), float(play["end"]))])[0] > 0.5


def test_the_reserved_label_is_refused_in_the_vocabulary(tmp_path, capsys):
    code = make_records.main([f"--output_dir={tmp_path / 'r'}", "--demo_game_videos=1",
                              "--no_play_clips=2", "--label_vocabulary=cut,no_play"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--no_play_label" in err[0], err
