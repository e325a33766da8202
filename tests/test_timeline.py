"""trainer.timeline on a demo game video: windows, segments, cached features equal the full model,
frames sampled as the records job samples them, bad input."""

import csv
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from backbone import precision
from demo_data import games as demo_games
from media import frame_stream, video_clips
from schemas.sampling import FrameSampling
from trainer.serving import export, segments, timeline_outputs
from trainer.serving import timeline as timeline_lib
from trainer.serving.timeline_model import TimelineModel
from trainer.evaluation.detection import tiou
from trainer.modeling import model as model_lib
from trainer import timeline

SIZE = 32
NUM_FRAMES = 4  # frames the model sees of each window
RECORD_FRAMES = 8  # frames per record (one window)
RATE = 25.0  # the demo's frame rate: windows of 0.32 s
LABELS = ["cut", "handoff", "isolation"]
HOW = FrameSampling.of(RECORD_FRAMES, SIZE)  # how the records were sampled
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    """A playclips model (random VGG16 cut at block1_pool, GRU head) exported like the trainer's."""
    import keras  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(3)
    model = model_lib.build_model(len(LABELS), image_size=(SIZE, SIZE), num_frames=NUM_FRAMES,
                                  cut_layer="block1_pool", weights="none", rnn="gru", rnn_units=4)
    path = str(tmp_path_factory.mktemp("job"))
    export.export_model(model, path, labels=LABELS, image_size=SIZE, num_frames=NUM_FRAMES,
                        sampling=FrameSampling(num_frames=RECORD_FRAMES, frame_rate=RATE))
    return path


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    """A demo game video of 3 plays of 8 frames at 32 px, and its play table."""
    path = str(tmp_path_factory.mktemp("game") / "game.mp4")
    plays = demo_games.write_game_video(path, seed=5, game=0, num_frames=RECORD_FRAMES,
                                        plays_per_game=3, size=SIZE)
    return path, plays


@pytest.fixture(scope="module")
def tl_model(job_dir):
    return TimelineModel(job_dir)


def _video_frames(path):
    import av  # pylint: disable=g-import-not-at-top
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def test_windows_segments_and_one_base_call_per_frame(tl_model, game):
    path, _ = game
    total = _video_frames(path)
    calls = []
    real_features = tl_model.features
    tl_model.features = lambda jpegs: calls.append(len(jpegs)) or real_features(jpegs)
    try:
        result = timeline_lib.compute_timeline(tl_model, path, hop_seconds=0.1)
    finally:
        del tl_model.features
    hop_frames = 0.1 * RATE
    assert result["counts"]["frames_sampled"] == total  # the video's own rate: every frame
    expected = math.floor((total - RECORD_FRAMES) / hop_frames + 1e-9) + 1
    assert len(result["windows"]) == expected
    grid = segments.WindowGrid(RATE, RECORD_FRAMES, hop_frames)
    offsets = tl_model.window_offsets(RECORD_FRAMES)
    # Frames some window uses; near the end also those of windows the video ends inside of
    # (the stream cannot know that before the end).
    used = {grid.start(k) + o for k in range(expected + 4) for o in offsets
            if grid.start(k) + o < total}
    assert sum(calls) == result["counts"]["frames_embedded"] == len(used) < total
    segs = result["segments"]
    assert segs[0]["start"] == 0 and segs[-1]["end"] == pytest.approx(total / RATE)
    assert all(a["end"] == b["start"] for a, b in zip(segs, segs[1:]))
    assert all(a["label"] != b["label"] for a, b in zip(segs, segs[1:]))
    assert {s["label"] for s in segs} <= set(LABELS) | {segments.UNCERTAIN}
    for window in result["windows"]:
        assert window["uncertain"] == (window["confidence"] < result["min_confidence"])
        assert sum(window["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_cached_features_equal_the_full_model_on_each_window(tl_model, game):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    path, _ = game
    cached = timeline_lib.compute_timeline(tl_model, path, hop_seconds=0.2)
    per_window = timeline_lib.compute_timeline(tl_model, path, hop_seconds=0.2, mode="per_window")
    jpegs = [jpeg for _, jpeg in frame_stream.sample_video(path, RATE, HOW)]
    grid = segments.WindowGrid(RATE, RECORD_FRAMES, 0.2 * RATE)
    offsets = tl_model.window_offsets(RECORD_FRAMES)
    clips = np.stack([np.stack([tf.io.decode_jpeg(jpegs[grid.start(k) + o]).numpy()
                                for o in offsets]) for k in range(grid.count(len(jpegs)))])
    reference = tl_model.model.predict(clips, verbose=0)
    for result in (cached, per_window):
        got = np.array([w["probabilities"] for w in result["windows"]])
        np.testing.assert_allclose(got, reference, atol=1e-5)
    assert per_window["counts"]["frames_embedded"] == len(reference) * NUM_FRAMES


def test_bfloat16_timeline_matches_float32_without_re_export(tl_model, job_dir, game, capsys):
    """The float32 export rebuilt in bfloat16 (weights copied, softmax float32): the same windows
    and top labels, probabilities within 0.05; a bad --compute_dtype is a usage error."""
    path, _ = game
    bf16 = TimelineModel(job_dir, compute_dtype="bfloat16")
    assert model_lib.base_of(bf16.model).get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert bf16.model.get_layer("gru").compute_dtype == "bfloat16"
    assert bf16.head.layers[-1].compute_dtype == "float32"  # the probabilities
    float32 = timeline_lib.compute_timeline(tl_model, path, hop_seconds=0.2)
    got = timeline_lib.compute_timeline(bf16, path, hop_seconds=0.2)
    assert (float32["compute_dtype"], got["compute_dtype"]) == ("float32", "bfloat16")
    expected = np.array([w["probabilities"] for w in float32["windows"]])
    probs = np.array([w["probabilities"] for w in got["windows"]])
    assert probs.shape == expected.shape and probs.dtype == np.float64
    np.testing.assert_allclose(probs, expected, atol=0.05)
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.01  # windows whose top label is not a near tie
    assert clear.any()
    assert (probs.argmax(1) == expected.argmax(1))[clear].all()
    with pytest.raises(SystemExit) as exit_info:
        timeline.run([f"--model={job_dir}", path, "--compute_dtype=fp16"])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "--compute_dtype" in err[0], err


def test_frames_are_sampled_as_the_records_job_cuts_a_play(game):
    path, plays = game
    jpegs = [jpeg for _, jpeg in frame_stream.sample_video(path, RATE, HOW)]
    for play in plays:
        clip = video_clips.read_clip(path, play.start, play.end, HOW)
        first = round(play.start * RATE)
        assert clip.frames == jpegs[first:first + RECORD_FRAMES]


def test_a_video_shorter_than_one_window_is_one_segment(tl_model, tmp_path):
    path = str(tmp_path / "short.mp4")
    frames = np.full((5, SIZE, SIZE, 3), 120, np.uint8)
    demo_games.write_h264(path, list(frames), fps=int(RATE))
    result = timeline_lib.compute_timeline(tl_model, path, hop_seconds=0.2)
    assert len(result["windows"]) == 1 and len(result["segments"]) == 1
    assert result["segments"][0]["start"] == 0
    assert result["segments"][0]["end"] == pytest.approx(5 / RATE)
    assert "shorter than one window" in result["notes"][0]


def test_segments_tile_and_merge():
    grid = segments.WindowGrid(rate=10.0, window_frames=10, hop_frames=2.5)
    assert [grid.start(k) for k in range(5)] == [0, 2, 5, 7, 10]
    assert grid.count(9) == 1 and grid.count(10) == 1 and grid.count(20) == 5
    assert grid.windows_holding(5) == [0, 1, 2]
    probs = [[0.9, 0.1], [0.8, 0.2], [0.55, 0.45], [0.1, 0.9], [0.2, 0.8]]
    windows = segments.describe_windows(grid, probs, ["a", "b"], duration=2.0, min_confidence=0.6)
    got = segments.merge_segments(windows, ["a", "b"])
    assert [(s["label"], s["start"], s["end"]) for s in got] == [
        ("a", 0.0, 0.85), (segments.UNCERTAIN, 0.85, 1.1), ("b", 1.1, 2.0)]
    assert got[0]["confidence"] == pytest.approx(0.85)
    assert segments.majority_label(got, 0.3, 0.9) == "a"
    assert segments.majority_label(got, 0.9, 1.6) == "b"


def test_no_play_and_uncertain_segments_are_not_plays():
    got = [{"start": 0.0, "end": 1.0, "label": "no_play", "confidence": 0.9},
           {"start": 1.0, "end": 2.5, "label": "cut", "confidence": 0.8},
           {"start": 2.5, "end": 3.0, "label": segments.UNCERTAIN, "confidence": 0.3},
           {"start": 3.0, "end": 4.0, "label": "iso", "confidence": 0.7},
           {"start": 4.0, "end": 5.0, "label": "no_play", "confidence": 0.95}]
    assert segments.detected_plays(got) == [
        {"start": 1.0, "end": 2.5, "label": "cut", "confidence": 0.8},
        {"start": 3.0, "end": 4.0, "label": "iso", "confidence": 0.7}]
    assert [p["label"] for p in segments.detected_plays(got, "other")] == [
        "no_play", "cut", "iso", "no_play"]


def test_plays_shorter_than_min_seconds_are_dropped():
    got = [{"start": 0.0, "end": 0.5, "label": "cut", "confidence": 0.9},  # one window
           {"start": 0.5, "end": 2.0, "label": "no_play", "confidence": 0.9},
           {"start": 2.0, "end": 3.0, "label": "iso", "confidence": 0.7},
           {"start": 3.0, "end": 3.79, "label": "cut", "confidence": 0.8}]
    assert [p["label"] for p in segments.detected_plays(got, min_seconds=0.8)] == ["iso"]
    assert [p["label"] for p in segments.detected_plays(got, min_seconds=0.5)] == [
        "cut", "iso", "cut"]
    assert len(segments.detected_plays(got)) == 3  # no minimum by default


def test_command_writes_the_outputs(job_dir, game, tmp_path):
    path, plays = game
    manifest = tmp_path / "plays.csv"
    manifest.write_text("play_id,label,path,start,end\n" + "".join(
        f"{p.play_id},{LABELS[i % 3]},{os.path.basename(path)},{p.start},{p.end}\n"
        for i, p in enumerate(plays)))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.timeline", f"--model={job_dir}", path,
         f"--output_dir={out}", f"--plays={manifest}", "--hop_seconds=0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    assert float(lines["real_time_factor"]) > 0 and float(lines["frames_per_s"]) > 0
    assert 0 <= float(lines["play_majority_accuracy"]) <= 1
    result = json.loads((out / "timeline.json").read_text())
    assert result["compute_dtype"] == lines["compute_dtype"] == precision.resolve_compute_dtype(
        "auto")  # the default: auto, resolved by the probe
    assert result["truth"]["n"] == len(plays)
    rows = (out / "timeline.csv").read_text().splitlines()
    assert rows[0].startswith("start,end,label") and len(rows) == len(result["segments"]) + 1
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "eval.json").read_text())
    assert result["min_play_seconds"] == pytest.approx(result["window_seconds"] / 2)
    labelled = [s for s in result["segments"] if s["label"] != segments.UNCERTAIN
                and s["end"] - s["start"] >= result["min_play_seconds"] - 1e-9]
    assert [(p["start"], p["label"]) for p in result["plays"]] == [
        (s["start"], s["label"]) for s in labelled]  # the model has no no_play label
    assert report["num_true_plays"] == len(plays) and report["num_detections"] == len(labelled)
    table = list(csv.DictReader(io.StringIO((out / "plays.csv").read_text())))
    assert list(table[0]) == ["play_id", "label", "path", "game_id", "start", "end", "confidence"]
    assert len(table) == len(labelled) and {row["path"] for row in table} == {path}
    assert [float(row["start"]) for row in table] == pytest.approx(
        [p["start"] for p in result["plays"]], abs=1e-3)
    assert report["play_majority_accuracy"] == result["truth"]["play_majority_accuracy"]
    text = (out / "false_plays.csv").read_text()
    assert text.splitlines()[0] == ",".join(timeline_outputs.FALSE_PLAYS_COLUMNS)
    false = list(csv.DictReader(io.StringIO(text)))
    assert len(false) == report["num_false_plays"] == int(lines["false_plays"])
    spans = [(p.start, p.end) for p in plays]
    for row in false:  # background rows for the manifest: its path, the model's no-play label
        assert row["label"] == segments.NO_PLAY and row["path"] == os.path.basename(path)
        assert tiou((float(row["start"]), float(row["end"])), spans).max() < 0.3
    for key in ("map_tiou_0_5", "f1_tiou_0_5", "map_tiou_avg"):
        assert float(lines[key]) == pytest.approx(report[key], abs=1e-4)
        low, high = report["intervals"][key]
        assert 0 <= low <= report[key] + 1e-9 and report[key] - 1e-9 <= high <= 1


@pytest.mark.parametrize("case, expected", [
    ("no_export", "cannot load model"),
    ("empty_video", "undecodable video"),
    ("text_video", "undecodable video"),
    ("missing_video", "missing video file"),
    ("hop_too_short", "shorter than one sampled frame"),
    ("hop_too_long", "longer than the window"),
])
def test_bad_input_is_one_error_line_and_exit_2(job_dir, game, tmp_path, capsys, case, expected):
    path = game[0]
    args = [f"--model={job_dir}", path, f"--output_dir={tmp_path / 'out'}", "--hop_seconds=0.2"]
    if case == "no_export":
        args[0] = f"--model={tmp_path}"
    elif case in ("empty_video", "text_video"):
        args[1] = str(tmp_path / "bad.mp4")
        with open(args[1], "wb") as f:
            f.write(b"" if case == "empty_video" else b"not a video\n" * 20)
    elif case == "missing_video":
        args[1] = str(tmp_path / "nowhere.mp4")
    elif case == "hop_too_short":
        args.append("--hop_seconds=0.01")
    else:
        args.append("--hop_seconds=1.0")
    assert timeline.run(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("timeline: error: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()


def test_split_model_uses_the_models_own_base_after_fine_tuning():
    import keras  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(4)
    model = model_lib.build_model(len(LABELS), image_size=(SIZE, SIZE), num_frames=None,
                                  cut_layer="block1_pool", weights="none", rnn="gru", rnn_units=4)
    frame_model, head = model_lib.split_model(model)
    clips = np.random.default_rng(0).integers(0, 256, (2, 3, SIZE, SIZE, 3)).astype(np.uint8)
    conv = model_lib.base_of(model).get_layer("block1_conv1")
    conv.kernel.assign(conv.kernel.numpy() * 1.5 + 0.01)  # as fine-tuning changes the base
    features = frame_model.predict(clips.reshape(-1, SIZE, SIZE, 3), verbose=0).reshape(2, 3, -1)
    np.testing.assert_allclose(head.predict(features, verbose=0),
                               model.predict(clips, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="frame_features"):
        model_lib.split_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
