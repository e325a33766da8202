"""beam_jobs.plays: manifests (CSV / JSON Lines), folder trees, launch-time checks."""

import json
import os

import pytest

from beam_jobs import plays
from beam_jobs.plays import PlaySpec
from schemas.errors import UsageError
from tests import media_fixtures as mf


def _split(items):
    specs = [i for i in items if isinstance(i, PlaySpec)]
    rejected = [i for i in items if not isinstance(i, PlaySpec)]
    return specs, rejected


@pytest.mark.parametrize("name", ["plays.csv", "plays.jsonl"])
def test_manifest_rows_and_relative_paths(tmp_path, name):
    rows = [
        {"play_id": "p1", "label": "cut", "path": "clips/p1", "game_id": "g1", "frame_rate": "25"},
        {"play_id": "p2", "label": "post_up", "path": "/abs/p2.mp4", "split": "val"},
        {"play_id": "p3", "label": "", "path": "clips/p3"},
        {"play_id": "p4", "label": "cut", "path": "clips/p4", "frame_rate": "fast"},
    ]
    manifest = mf.write_manifest(str(tmp_path / name), rows)
    specs, rejected = _split(list(plays.read_manifest(manifest)))
    assert [s.play_id for s in specs] == ["p1", "p2"]
    assert specs[0].path == os.path.join(str(tmp_path), "clips", "p1")
    assert specs[0].frame_rate == 25.0 and specs[0].game_id == "g1" and specs[0].row == 1
    assert specs[0].group_key == "g1" and specs[1].group_key == "p2"
    assert specs[1].path == "/abs/p2.mp4" and specs[1].split == "val"
    assert [(r["play_id"], r["kind"]) for r in rejected] == [
        ("p3", "missing_value"), ("p4", "bad_value")]
    assert "label" in rejected[0]["reason"] and "frame_rate" in rejected[1]["reason"]


def test_jsonl_bad_lines_are_rejections(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"play_id": "a", "label": "x", "path": "a"}\n{not json\n[1, 2]\n\n')
    specs, rejected = _split(list(plays.read_manifest(str(path))))
    assert [s.play_id for s in specs] == ["a"]
    assert [r["kind"] for r in rejected] == ["bad_row", "bad_row"]
    assert "invalid JSON" in rejected[0]["reason"]


def test_folder_tree(tmp_path):
    root = tmp_path / "tree"
    mf.write_frame_folder(str(root / "cut" / "p1"), 3)
    mf.write_frame_folder(str(root / "cut" / "p2"), 3, ext="jpg")
    mf.write_video(str(root / "post_up" / "p3.mp4"), 5)
    (root / "README.txt").write_text("not a play")
    (root / "cut" / "notes.txt").write_text("not a play")
    specs = list(plays.read_folder_tree(str(root) + "/"))
    assert all(isinstance(s, PlaySpec) for s in specs)
    assert [(s.label, s.play_id) for s in specs] == [("cut", "p1"), ("cut", "p2"), ("post_up", "p3")]
    assert specs[0].path == str(root / "cut" / "p1")
    assert specs[2].path == str(root / "post_up" / "p3.mp4")
    assert plays.check_input(str(root)) == 3


def test_check_input_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        plays.check_input(str(tmp_path / "nope.csv"))
    bad = mf.write_manifest(str(tmp_path / "bad.csv"), [{"id": "p1", "file": "x"}])
    with pytest.raises(UsageError, match="has no 'play_id', 'label', 'path' column"):
        plays.check_input(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("play_id,label,path\n")
    with pytest.raises(UsageError, match="no rows"):
        plays.check_input(str(empty))
    (tmp_path / "emptytree").mkdir()
    with pytest.raises(UsageError, match="holds no plays"):
        plays.check_input(str(tmp_path / "emptytree"))
    good = mf.write_manifest(str(tmp_path / "good.jsonl"),
                             [{"play_id": "a", "label": "x", "path": "a"}])
    assert plays.check_input(good) == 1


def test_is_folder_tree(tmp_path):
    assert plays.is_folder_tree(str(tmp_path)) and plays.is_folder_tree("gs://b/plays/")
    assert plays.is_folder_tree("gs://b/plays") and not plays.is_folder_tree("gs://b/m.csv")
    assert not plays.is_folder_tree(str(tmp_path / "m.jsonl"))


def test_start_and_end_columns(tmp_path):
    rows = [
        {"play_id": "r1", "label": "cut", "path": "game.mp4", "start": "12.5", "end": "19"},
        {"play_id": "r2", "label": "cut", "path": "game.mp4", "start": "", "end": ""},
        {"play_id": "r3", "label": "cut", "path": "game.mp4", "start": "20", "end": "20"},
        {"play_id": "r4", "label": "cut", "path": "game.mp4", "start": "5", "end": ""},
        {"play_id": "r5", "label": "cut", "path": "game.mp4", "start": "soon", "end": "9"},
        {"play_id": "r6", "label": "cut", "path": "frames/p6", "start": "1", "end": "2"},
    ]
    manifest = mf.write_manifest(str(tmp_path / "plays.csv"), rows)
    specs, rejected = _split(list(plays.read_manifest(manifest)))
    assert [(s.play_id, s.start, s.end, s.has_range) for s in specs] == [
        ("r1", 12.5, 19.0, True), ("r2", None, None, False)]
    assert {r["play_id"]: r["kind"] for r in rejected} == {k: "bad_range" for k in ("r3", "r4", "r5", "r6")}
    reasons = {r["play_id"]: r["reason"] for r in rejected}
    assert "must be before end" in reasons["r3"] and "together" in reasons["r4"]
    assert "seconds" in reasons["r5"] and "video file" in reasons["r6"]
    # Without a game_id, plays cut from one video share a split (they are one game).
    assert specs[0].group_key == specs[0].path and specs[1].group_key == "r2"


def test_jsonl_values_of_the_wrong_type_are_rejected_naming_the_column(tmp_path):
    ok = {"play_id": "p", "label": "shot", "path": "clips/p"}
    rows = [
        {**ok, "label": ["shot"]},
        {**ok, "label": {"name": "shot"}},
        {**ok, "label": True},
        {**ok, "label": 3},  # a number is not a label (an index? a name?): rejected
        {**ok, "path": 7, "split": False},
        {**ok, "play_id": 1.5},
        {**ok, "game_id": [12345]},
        {**ok, "frame_rate": [30]},
        {**ok, "start": {"s": 1}, "end": True},
        {**ok, "play_id": 17, "game_id": 12345, "frame_rate": 30, "start": None, "end": None},
        {**ok, "play_id": "s", "frame_rate": "29.97", "split": None},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    specs, rejected = _split(list(plays.read_manifest(str(path))))
    assert [r["kind"] for r in rejected] == ["bad_type"] * 9
    reasons = [r["reason"].split(": ", 1)[1] for r in rejected]
    assert reasons == [
        "label: expected a string, got a list",
        "label: expected a string, got an object",
        "label: expected a string, got a boolean",
        "label: expected a string, got an integer",
        "path: expected a string, got an integer; split: expected a string, got a boolean",
        "play_id: expected a string or an integer, got a number",
        "game_id: expected a string or an integer, got a list",
        "frame_rate: expected a number, got a list",
        "start: expected a number, got an object; end: expected a number, got a boolean",
    ]
    assert [r["play_id"] for r in rejected][:5] == ["p"] * 5 and rejected[5]["play_id"] == ""
    # Integer ids are read as their decimal string; null is an absent value.
    assert [(s.play_id, s.game_id, s.frame_rate, s.split, s.has_range) for s in specs] == [
        ("17", "12345", 30.0, "", False), ("s", "", 29.97, "", False)]


@pytest.mark.parametrize("value,kind", [
    ("nan", "bad_value"), ("inf", "bad_value"), ("1e400", "bad_value"), ("1_000", "bad_value"),
    ("0x1E", "bad_value"), ("\u0663\u0660", "bad_value"), ("30", None), ("+2.5e1", None)])
def test_csv_numbers_must_be_finite_decimal_numbers(tmp_path, value, kind):
    rows = [{"play_id": "f", "label": "cut", "path": "clips/f", "frame_rate": value},
            {"play_id": "s", "label": "cut", "path": "g.mp4", "start": value, "end": "1e9"}]
    manifest = mf.write_manifest(str(tmp_path / "m.csv"), rows)
    specs, rejected = _split(list(plays.read_manifest(manifest)))
    if kind is None:
        assert [s.play_id for s in specs] == ["f", "s"]
        assert specs[0].frame_rate == float(value) == specs[1].start
    else:
        assert [(r["play_id"], r["kind"]) for r in rejected] == [("f", kind), ("s", "bad_range")]
        assert rejected[0]["reason"].endswith(f"frame_rate: expected a positive finite number, "
                                              f"got {value!r}")
        assert rejected[1]["reason"].endswith(f"start: expected a finite number of seconds, "
                                              f"got {value!r}")


def test_json_numbers_must_be_finite(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"play_id": "a", "label": "x", "path": "a", "frame_rate": NaN}\n'
                    '{"play_id": "b", "label": "x", "path": "b", "frame_rate": 1%s}\n'
                    '{"play_id": "c", "label": "x", "path": "c.mp4", "start": 0, "end": Infinity}\n'
                    % ("0" * 400))
    specs, rejected = _split(list(plays.read_manifest(str(path))))
    assert not specs
    assert [(r["play_id"], r["kind"]) for r in rejected] == [
        ("a", "bad_value"), ("b", "bad_value"), ("c", "bad_range")]
    assert "end: expected a finite number of seconds" in rejected[2]["reason"]
