"""beam_jobs/find_plays.py: games cut into chunks give the single-process timeline window by window;
unreadable, empty and truncated videos go to the dead letter; repeated windows are dropped."""

import csv
import glob
import itertools
import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from beam_jobs import find_plays, find_plays_pipeline  # noqa: E402
from demo_data import games as demo_games  # noqa: E402
from schemas.sampling import FrameSampling  # noqa: E402
from trainer.modeling import model as model_lib  # noqa: E402
from trainer.serving import export, segments  # noqa: E402
from trainer.serving import timeline as timeline_lib  # noqa: E402
from trainer.serving import timeline_outputs  # noqa: E402
from trainer.serving.timeline_model import TimelineModel  # noqa: E402

SIZE = 32
NUM_FRAMES = 4  # frames the model sees of each window
RECORD_FRAMES = 8  # frames per record (one window: 0.32 s at 25 fps)
RATE = 25.0
LABELS = ["cut", "handoff", "isolation"]
HOP = 0.2
CHUNK = 3.0  # seconds: a game of ~15 s in 5-6 chunks
# A random model is never sure: take every window's top label, keep one-window plays.
SETTINGS = {"min_confidence": 0.0, "min_play_seconds": 0.0}


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory, season):
    """A playclips model (random VGG16 cut at block1_pool, GRU head) exported like the trainer's,
    its logits sharpened and centred on game 0 so that its windows' labels vary (a random model
    gives every window of a game the same label)."""
    import keras  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(3)
    model = model_lib.build_model(len(LABELS), image_size=(SIZE, SIZE), num_frames=NUM_FRAMES,
                                  cut_layer="block1_pool", weights="none", rnn="gru", rnn_units=4)
    path = str(tmp_path_factory.mktemp("job"))

    def export_it():
        export.export_model(model, path, labels=LABELS, image_size=SIZE, num_frames=NUM_FRAMES,
                            sampling=FrameSampling(num_frames=RECORD_FRAMES, frame_rate=RATE))

    export_it()
    timeline = _reference(TimelineModel(path), os.path.join(season[0], "game-0.mp4"))
    mean = np.log([w["probabilities"] for w in timeline["windows"]]).mean(0)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel * 10, (bias - mean + mean.mean()) * 10])
    export_it()
    return path


@pytest.fixture(scope="module")
def tl_model(job_dir):
    return TimelineModel(job_dir)


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    """Two demo game videos (4 plays and 1 play of 8 frames at 32 px) and their manifest."""
    folder = str(tmp_path_factory.mktemp("season"))
    rows = []
    for game, plays in ((0, 4), (1, 1)):
        name = f"game-{game}.mp4"
        table = demo_games.write_game_video(os.path.join(folder, name), seed=5, game=game,
                                            num_frames=RECORD_FRAMES, plays_per_game=plays,
                                            size=SIZE)
        rows += [(p.play_id, p.label, name, p.game_id, p.start, p.end) for p in table]
    manifest = os.path.join(folder, "plays.csv")
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([demo_games.MANIFEST_COLUMNS, *rows])
    return folder, manifest


def _reference(tl_model, video):
    return timeline_lib.compute_timeline(tl_model, video, hop_seconds=HOP, **SETTINGS)


def _assert_same_timeline(got, expected):
    assert len(got["windows"]) == len(expected["windows"])
    np.testing.assert_allclose([w["probabilities"] for w in got["windows"]],
                               [w["probabilities"] for w in expected["windows"]], atol=1e-5)
    for key in ("index", "start", "end", "owned_start", "owned_end", "label", "uncertain"):
        assert [w[key] for w in got["windows"]] == [w[key] for w in expected["windows"]], key
    for key in ("segments", "plays"):
        strip = lambda items: [{k: v for k, v in s.items() if k != "confidence"} for s in items]
        assert strip(got[key]) == strip(expected[key]), key
        np.testing.assert_allclose([s["confidence"] for s in got[key]],
                                   [s["confidence"] for s in expected[key]], atol=1e-5)
    for key in ("duration", "labels", "window_seconds", "hop_seconds", "frame_rate",
                "min_play_seconds", "no_play_label"):
        assert got[key] == expected[key], key


def test_window_ranges_equal_one_pass(tl_model, season):
    """scan_windows over ranges (each streamed from a seek) gives one pass's windows."""
    video = os.path.join(season[0], "game-0.mp4")
    grid = timeline_lib.window_grid(tl_model, HOP)
    whole = timeline_lib.scan_windows(tl_model, video, grid)
    assert whole.reached_end and whole.error is None
    chunks = find_plays_pipeline.plan_chunks(grid, int(CHUNK * RATE), whole.stream.duration)
    assert len(chunks) >= 4
    probs, ends = [], []
    for _, first, stop in chunks:
        part = timeline_lib.scan_windows(tl_model, video, grid, first_window=first,
                                         stop_window=stop)
        assert part.first_window == first == len(probs)
        probs += part.probabilities
        ends.append(part.reached_end)
    assert ends == [False] * (len(chunks) - 1) + [True]
    np.testing.assert_allclose(probs, whole.probabilities, atol=1e-5)


def _run(*argv):
    return find_plays.run([*argv, "--compute_dtype=float32", "--runner=DirectRunner",
                           f"--hop_seconds={HOP}", "--min_confidence=0", "--min_play_seconds=0"])


def _plays_table(out, prefix="plays"):
    shards = sorted(glob.glob(os.path.join(out, f"{prefix}-*-of-*.csv")))
    assert shards
    rows = []
    for shard in shards:
        with open(shard) as f:
            table = list(csv.reader(f))
        assert table[0] == list(timeline_outputs.FALSE_PLAYS_COLUMNS if prefix == "false_plays"
                                else timeline_outputs.PLAYS_COLUMNS)
        rows += table[1:]
    return rows


def test_chunked_job_equals_the_single_process_timeline(job_dir, tl_model, season, tmp_path):
    folder, manifest = season
    out = str(tmp_path / "out")
    card = _run(f"--model={job_dir}", f"--input={manifest}", f"--output_dir={out}",
                f"--chunk_seconds={CHUNK}")
    assert card["num_input"] == card["num_games"] == 2 and card["num_games_rejected"] == 0
    assert card["num_rejected"] == 0 and card["num_chunks"] >= 6
    rows, false_rows = [], []
    crossed = 0
    for name in ("game-0", "game-1"):
        expected = _reference(tl_model, os.path.join(folder, name + ".mp4"))
        with open(os.path.join(out, name, "timeline.json")) as f:
            got = json.load(f)
        _assert_same_timeline(got, expected)
        assert len(expected["segments"]) > (5 if name == "game-0" else 0)
        assert got["truth"]["n"] == (4 if name == "game-0" else 1)
        with open(os.path.join(out, name, "plays.csv")) as f:
            rows += list(csv.reader(f))[1:]
        with open(os.path.join(out, name, "false_plays.csv")) as f:
            false_rows += list(csv.reader(f))[1:]
        borders = [c * CHUNK for c in range(1, 10)]
        crossed += sum(1 for p in got["plays"] for b in borders if p["start"] < b < p["end"])
    assert crossed > 0  # a chunk border inside a detected play
    assert sorted(_plays_table(out)) == sorted(rows)
    assert sorted(_plays_table(out, "false_plays")) == sorted(false_rows)
    assert {row[1] for row in false_rows} <= {"no_play"}
    report = json.load(open(os.path.join(out, "eval.json")))
    assert report["num_false_plays"] == len(false_rows)
    assert card["false_plays_files"] == "false_plays-*-of-*.csv"
    assert card["num_plays"] == len(rows) > 0
    assert card["num_windows"] == sum(g["windows"] for g in card["games"])
    assert report["num_true_plays"] == 5 and report["num_games"] == 2
    assert card["eval_file"] == "eval.json" and card["chunk_seconds"] == CHUNK
    # The folder rule: a second run needs --overwrite, which replaces the game folders too.
    with pytest.raises(Exception, match="not empty"):
        _run(f"--model={job_dir}", f"--input={folder}/game-1.mp4", f"--output_dir={out}")
    card = _run(f"--model={job_dir}", f"--input={folder}/game-1.mp4", f"--output_dir={out}",
                "--overwrite")
    assert card["num_games"] == 1 and not os.path.exists(os.path.join(out, "game-0"))
    assert card["eval_file"] == ""


def _write_faststart(path, seed):
    """A demo game as an mp4 with its index first, so that a truncated copy still opens."""
    import av  # pylint: disable=g-import-not-at-top
    pieces, table, _ = demo_games.render_game(seed, 0, num_frames=RECORD_FRAMES,
                                              plays_per_game=4, size=SIZE)
    with av.open(path, "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=int(RATE))
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "50", "crf": "18", "preset": "veryfast"}
        for array in itertools.chain.from_iterable(pieces):
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return table


def _truncate(path, share):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * share)])


def test_bad_and_truncated_videos_go_to_the_dead_letter(job_dir, tl_model, season, tmp_path):
    folder = tmp_path / "games"
    folder.mkdir()
    shutil.copy(os.path.join(season[0], "game-1.mp4"), folder / "good.mp4")
    (folder / "text.mp4").write_text("not a video\n")
    (folder / "empty.mp4").write_bytes(b"")
    shutil.copy(os.path.join(season[0], "game-0.mp4"), folder / "no_index.mp4")
    _truncate(folder / "no_index.mp4", 0.5)  # its index (moov) was at the end: unreadable
    full = str(tmp_path / "full.mp4")
    _write_faststart(full, seed=5)
    shutil.copy(full, folder / "broken.mp4")
    _truncate(folder / "broken.mp4", 0.5)  # breaks mid-way
    out = str(tmp_path / "out")
    card = _run(f"--model={job_dir}", f"--input={folder}", f"--output_dir={out}",
                f"--chunk_seconds={CHUNK}")
    assert card["num_input"] == 5
    assert (card["num_games"], card["num_games_partial"], card["num_games_rejected"]) == (2, 1, 3)
    entries = [json.loads(line) for path in glob.glob(os.path.join(out, "rejected-*.jsonl"))
               for line in open(path)]
    by_path = {}
    for entry in entries:
        by_path.setdefault(os.path.basename(entry["path"]), []).append(entry)
    assert set(by_path) == {"text.mp4", "empty.mp4", "no_index.mp4", "broken.mp4"}
    assert all(e["kind"] == "undecodable_video" for e in by_path["text.mp4"])
    broken = sorted(by_path["broken.mp4"], key=lambda e: e["start"])
    assert broken[0]["start"] > 0 and all("chunk" in e["play_id"] for e in broken)
    assert broken[-1]["end"] is None  # up to the end of the video
    assert sum(card["rejected_reasons"].values()) == card["num_rejected"] == len(entries)
    assert set(card["rejected_reasons"]) <= {"undecodable_video", "no_frames"}
    # The broken game keeps what came before the break: the full game's first windows.
    with open(os.path.join(out, "broken", "timeline.json")) as f:
        got = json.load(f)
    expected = _reference(tl_model, full)
    kept = len(got["windows"])
    assert 0 < kept < len(expected["windows"])
    assert got["duration"] <= broken[0]["start"] + 0.32 + 1e-9
    np.testing.assert_allclose([w["probabilities"] for w in got["windows"]],
                               [w["probabilities"] for w in expected["windows"][:kept]],
                               atol=1e-5)
    end = got["windows"][-1]["owned_start"]
    before = [[p for p in t["plays"] if p["end"] <= end] for t in (got, expected)]
    assert before[0] and [(p["start"], p["end"], p["label"]) for p in before[0]] == [
        (p["start"], p["end"], p["label"]) for p in before[1]]
    assert any("could not be read to its end" in note for note in got["notes"])
    assert sorted(g["game"] for g in card["games"]) == ["broken", "good"]


def test_repeated_windows_and_chunk_reports_are_dropped(tl_model, season):
    """A retried chunk sends its windows again: the game's timeline is the same."""
    video = os.path.join(season[0], "game-1.mp4")
    grid = timeline_lib.window_grid(tl_model, HOP)
    scan = timeline_lib.scan_windows(tl_model, video, grid)
    report = {"chunk": 0, "first_window": 0, "stop_window": None,
              "windows": len(scan.probabilities), "reached_end": True,
              "num_sampled": scan.stream.frames_sampled, "duration": scan.stream.duration,
              "error": ""}
    elements = [("window", k, p) for k, p in enumerate(scan.probabilities)]
    info = find_plays.model_info(os.path.dirname(tl_model.model_path), "float32")
    kwargs = dict(min_confidence=0.0, no_play_label=segments.NO_PLAY, min_play_seconds=0.0)
    once, summary = find_plays_pipeline.assemble_game(
        info, grid, video, [*elements, ("chunk", report)], **kwargs)
    twice, summary2 = find_plays_pipeline.assemble_game(
        info, grid, video, [*reversed(elements), ("chunk", report), *elements[3:],
                            ("chunk", dict(report))], **kwargs)
    assert summary["complete"] and summary == summary2
    assert once == twice
    _assert_same_timeline(once, _reference(tl_model, video))


def test_two_worker_processes(job_dir, season, tmp_path):
    folder, manifest = season
    out = str(tmp_path / "out")
    card = _run(f"--model={job_dir}", f"--input={manifest}", f"--output_dir={out}",
                f"--chunk_seconds={CHUNK}", "--direct_num_workers=2",
                "--direct_running_mode=multi_processing")
    assert card["num_games"] == 2 and card["num_rejected"] == 0
    assert len(_plays_table(out)) == card["num_plays"] > 0


@pytest.mark.parametrize("case,expected", [
    ("no_model", "--model is required"),
    ("no_input", "--input is required"),
    ("chunk", "--chunk_seconds must be > 0"),
    ("hop", "--hop_seconds"),
    ("empty_glob", "names no game video"),
    ("typo", "did you mean --chunk_seconds"),
])
def test_usage_errors_are_one_line_and_exit_2(job_dir, season, tmp_path, capsys, case, expected):
    folder, manifest = season
    argv = {"no_model": [f"--input={manifest}"],
            "no_input": [f"--model={job_dir}"],
            "chunk": [f"--model={job_dir}", f"--input={manifest}", "--chunk_seconds=0"],
            "hop": [f"--model={job_dir}", f"--input={manifest}", "--hop_seconds=5"],
            "empty_glob": [f"--model={job_dir}", f"--input={folder}/*.mkv"],
            "typo": [f"--model={job_dir}", f"--input={manifest}", "--chunk_second=3"]}[case]
    hop = [] if case == "hop" else [f"--hop_seconds={HOP}"]
    assert find_plays.main([*argv, *hop, f"--output_dir={tmp_path / 'out'}"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and expected in err[0], err
