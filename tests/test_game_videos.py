"""The records job on plays cut from game videos by start/end: records, dead letters, one open
per video, the demo game videos."""

import collections
import glob
import io
import json
import os

import av
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline
from PIL import Image

from beam_jobs import make_records, records_pipeline
from demo_data import plays as demo_plays
from media import frames, video_clips
from schemas import play_record
from schemas.sampling import FrameSampling
from tests import media_fixtures as mf

FPS = 25


def _records(out):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return {rec.play_id: rec for path in sorted(glob.glob(os.path.join(out, "*.tfrecord")))
            for rec in (play_record.decode_play(r.numpy()) for r in tf.data.TFRecordDataset(path))}


def _rejected(out):
    with open(glob.glob(os.path.join(out, "rejected-*.jsonl"))[0]) as f:
        return [json.loads(line) for line in f if line.strip()]


def _run(argv, monkeypatch):
    """Runs the job in this process; returns (card, counters, av.open calls per path)."""
    opened = collections.Counter()
    real_open = av.open

    def counting_open(file, *args, **kwargs):
        opened[getattr(file, "name", file)] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    config = make_records.config_from_args(make_records.build_parser().parse_args(argv))
    p = test_pipeline.TestPipeline()
    records_pipeline.build(p, config)
    result = p.run()
    result.wait_until_finish()
    counters = collections.Counter()  # summed over the steps that count
    for c in result.metrics().query(MetricsFilter().with_namespace("playclips"))["counters"]:
        counters[c.key.metric.name] += c.committed
    return make_records.read_card(config.output_dir), counters, collections.Counter(opened)


def test_plays_cut_from_game_videos_and_every_rejection(tmp_path, monkeypatch):
    game1 = mf.write_h264(str(tmp_path / "videos" / "game1.mp4"), 16 * FPS, gop=FPS)
    game2 = mf.write_h264(str(tmp_path / "videos" / "game2.mp4"), 4 * FPS, gop=FPS)
    mf.write_corrupt_file(str(tmp_path / "videos" / "broken.mp4"))
    mf.write_frame_folder(str(tmp_path / "clips" / "whole"), 12)
    rows = [  # (play_id, path, start, end) -> expected kind, or None when written
        ("g1a", "videos/game1.mp4", "0.5", "2.5", None),
        ("g1b", "videos/game1.mp4", "2", "3", None),  # overlaps g1a: fine, plays may overlap
        ("g1c", "videos/game1.mp4", "12.04", "13", None),
        ("g2a", "videos/game2.mp4", "1", "3", None),
        ("whole", "clips/whole", "", "", None),
        ("g1a", "videos/game1.mp4", "1.0", "2.0", "duplicate_play_id"),  # same id, overlapping
        ("same", "videos/game1.mp4", "2.0", "3.0", "duplicate_clip"),  # g1b under another id
        ("backwards", "videos/game1.mp4", "5", "4", "bad_range"),
        ("half", "videos/game1.mp4", "5", "", "bad_range"),
        ("outside", "videos/game1.mp4", "15", "17", "range_outside_video"),
        ("short", "videos/game1.mp4", "6", "6.2", "too_few_frames"),
        ("broken1", "videos/broken.mp4", "1", "2", "undecodable_video"),
        ("broken2", "videos/broken.mp4", "3", "4", "undecodable_video"),
        ("missing", "videos/missing.mp4", "1", "2", "missing_path"),
    ]
    manifest = mf.write_manifest(str(tmp_path / "plays.csv"), [
        {"play_id": i, "label": "cut" if n % 2 else "post_up", "path": path, "start": start,
         "end": end, "game_id": "g"} for n, (i, path, start, end, _) in enumerate(rows)])
    out = str(tmp_path / "recs")
    card, counters, opened = _run([f"--input={manifest}", f"--output_dir={out}", "--num_frames=8",
                                   "--frame_size=32", "--splits=train=1.0"], monkeypatch)

    written = _records(out)
    assert sorted(written) == ["g1a", "g1b", "g1c", "g2a", "whole"]
    rejected = _rejected(out)
    assert sorted((r["play_id"], r["kind"]) for r in rejected) == sorted(
        (i, kind) for i, _, _, _, kind in rows if kind)
    assert card.num_input == len(rows) == len(written) + len(rejected) == card.num_rejected + 5
    assert card.rejected_reasons == dict(collections.Counter(kind for *_, kind in rows if kind))
    reasons = {r["play_id"]: r["reason"] for r in rejected}
    assert "ends after the end of the video (16.000 s)" in reasons["outside"]
    assert "game1.mp4 0.500-2.500 s" in reasons["g1a"] and "'g1b'" in reasons["same"]
    assert "broken.mp4" in reasons["broken1"] and "broken.mp4" in reasons["broken2"]

    # MediaSequence clip/data_path, clip/start|end/timestamp; frames as a direct cut gives them.
    for play_id, path, start, end, _ in rows[:4]:
        rec = written[play_id]
        assert rec.data_path == str(tmp_path / path)
        assert (rec.start_us, rec.end_us) == (round(float(start) * 1e6), round(float(end) * 1e6))
        assert all(rec.start_us <= t < rec.end_us for t in rec.timestamps_us)
        direct = video_clips.read_clip(rec.data_path, float(start), float(end),
                                       FrameSampling.of(8, 32))
        assert rec.frames == direct.frames and rec.timestamps_us == direct.timestamps_us
        assert rec.source_num_frames == direct.source_num_frames and rec.frame_rate == FPS
    assert written["whole"].start_us is None and written["whole"].end_us is None

    # Each video is opened once for all of its plays (the missing one never).
    assert opened == {game1: 1, game2: 1, str(tmp_path / "videos" / "broken.mp4"): 1}
    assert counters["game_videos_opened"] == 3 and counters["plays_written"] == 5


def test_long_games_are_cut_in_time_chunks(tmp_path, monkeypatch):
    game = mf.write_h264(str(tmp_path / "game.mp4"), 16 * FPS, gop=FPS)
    starts = [0.5, 2.0, 4.5, 9.0, 9.5, 14.0]  # chunks of 4 s: 0, 0, 1, 2, 2, 3
    manifest = mf.write_manifest(str(tmp_path / "plays.jsonl"), [
        {"play_id": f"p{i}", "label": "cut", "path": "game.mp4", "start": s, "end": s + 1.0}
        for i, s in enumerate(starts)])
    out = str(tmp_path / "recs")
    card, counters, opened = _run([f"--input={manifest}", f"--output_dir={out}", "--num_frames=8",
                                   "--frame_size=32", "--video_chunk_seconds=4"], monkeypatch)
    assert sum(card.counts.values()) == len(starts) and card.num_rejected == 0
    assert opened == {game: 4} and counters["game_videos_opened"] == 4


def _image(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)


def test_demo_game_videos(tmp_path):
    out = str(tmp_path / "recs")
    card = make_records.run([f"--output_dir={out}", "--demo_game_videos=1", "--num_frames=8",
                             "--frame_size=32", "--demo_seed=3"])
    assert card.num_input == demo_plays.PLAYS_PER_GAME == sum(card.counts.values())
    assert os.path.exists(os.path.join(out, "demo_games", "plays.csv"))
    records = _records(out)
    for index in (0, demo_plays.PLAYS_PER_GAME - 1):
        demo = demo_plays.render_play(3, index)
        rec = records[demo.play_id]
        assert rec.label == demo.label and rec.game_id == demo.game_id == "demo-game-0000"
        assert rec.data_path.endswith("demo-game-0000.mp4") and rec.source_num_frames == 40
        # The 40 frames of the play, sampled as a whole demo play's are.
        offsets = [round(i * 1e6 / FPS) for i in frames.sample_indices(40, 8)]
        assert [t - rec.start_us for t in rec.timestamps_us] == offsets
        assert rec.end_us - rec.start_us == 40 * 1e6 / FPS
        # Each stored frame is its rendered frame (h264 is lossy: nearest of the play's frames).
        rendered = [_image(frames.encode_jpeg(frames.resize_image(Image.fromarray(f), 32)))
                    for f in demo.frames]
        for jpeg, i in zip(rec.frames, frames.sample_indices(40, 8)):
            errors = [np.abs(_image(jpeg) - r).mean() for r in rendered]
            assert errors[i] < 12 and errors[i] <= min(errors) + 1.0, (index, i)
