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
from tests.media_fixtures import write_frame_folder
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


def test_rows_of_the_label_are_background_clips_neither_shifted_nor_avoided(tmp_path):
    """Mined false plays (or corrected detections) go back in as rows labelled no_play."""
    from demo_data import games as demo_games
    from demo_data import plays as demo_plays
    manifest = demo_games.write_demo_games(str(tmp_path / "games"), 1, num_frames=4)
    plays = list(csv.DictReader(open(manifest)))
    dead = [row for row in csv.DictReader(open(tmp_path / "games" / "dead_ball.csv"))
            if float(row["end"]) - float(row["start"]) > 0.5]
    with open(manifest, "a", newline="") as f:  # two dead-ball pieces marked as background
        writer = csv.writer(f)
        for k, row in enumerate(dead[:2]):
            writer.writerow([f"mined-{k}", "no_play", plays[0]["path"], plays[0]["game_id"],
                             row["start"], row["end"]])
    out = tmp_path / "records"
    labels = sorted({row["label"] for row in plays})
    card = make_records.run([
        f"--input={manifest}", f"--output_dir={out}", "--num_frames=4", "--frame_size=16",
        f"--frame_rate={demo_plays.DEMO_FRAME_RATE}", "--no_play_clips=1", "--shifted_plays=1",
        "--splits=train=1.0", f"--label_vocabulary={','.join(labels + ['no_play'])}",
        "--progress_seconds=0"])
    records = [r for _, r in _records(out)]
    by_id = {r.play_id: r for r in records}
    assert {"mined-0", "mined-1"} <= set(by_id) and by_id["mined-0"].label == "no_play"
    assert not any(r.play_id.startswith("mined-") and "-shifted-" in r.play_id for r in records)
    assert sum("-shifted-" in r.play_id for r in records) == len(plays)  # one per play
    drawn = [r for r in records if r.label == "no_play" and not r.play_id.startswith("mined-")]
    assert len(drawn) == 1
    assert card.num_input == len(records) == len(plays) * 2 + 2 + 1 and card.num_rejected == 0
    assert card.labels.count("no_play") == 1 and card.no_play_label == "no_play"
    assert card.label_counts["train"]["no_play"] == 3


def test_rows_of_the_label_alone_make_a_no_play_dataset(tmp_path):
    """Without --no_play_clips, background rows still mark the card's no_play_label."""
    folder = tmp_path / "tree"
    for label in ("cut", "no_play"):
        for k in range(2):
            write_frame_folder(str(folder / label / f"{label}{k}"), 4)
    card = make_records.run([f"--input={folder}", f"--output_dir={tmp_path / 'r'}",
                             "--num_frames=4", "--frame_size=16", "--progress_seconds=0"])
    assert card.no_play_label == "no_play" and card.num_rejected == 0
