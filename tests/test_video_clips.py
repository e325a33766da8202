"""media.video_clips: plays cut from one long video by time range in one forward decode."""

import av
import pytest

from media import frames, video_clips
from media.sample_plays import Play, sample_plays
from media.video_clips import Clip
from schemas.sampling import FrameSampling
from tests import media_fixtures as mf

FPS = 25
NUM_FRAMES = 8
SIZE = 32
HOW = FrameSampling.of(NUM_FRAMES, SIZE)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """16 s of 64x48 h264 with B-frames, a keyframe every second."""
    return mf.write_h264(str(tmp_path_factory.mktemp("video") / "game.mp4"), 16 * FPS, gop=FPS)


def _plain_decode(path):
    """(time in microseconds, image) of every frame, decoded from the start of the video."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        return [(int(round((f.pts - (stream.start_time or 0)) * stream.time_base * 1e6)),
                 f.to_image()) for f in container.decode(stream)]


def _expected(decoded, clip, pad_short=""):
    inside = [(t, image) for t, image in decoded if clip.start_us <= t < clip.end_us]
    indices = frames.sample_indices(len(inside), NUM_FRAMES, pad_short)
    return ([frames.encode_jpeg(frames.resize_image(inside[i][1], SIZE)) for i in indices],
            [inside[i][0] for i in indices], len(inside))


CLIPS = [Clip("a", 0.5, 2.5), Clip("b", 2.0, 3.0), Clip("late", 12.04, 13.0),  # after a 9 s gap
         Clip("c", 13.5, 14.0), Clip("end", 15.0, 16.0)]


def test_grouped_cut_equals_plain_decode_from_the_start(long_video):
    decoded = _plain_decode(long_video)
    stats = video_clips.CutStats()
    got = dict(video_clips.cut_clips(long_video, CLIPS[::-1], HOW, stats=stats))
    assert set(got) == {c.clip_id for c in CLIPS}
    for clip in CLIPS:
        jpegs, stamps, count = _expected(decoded, clip)
        play = got[clip.clip_id]
        assert isinstance(play, frames.SampledPlay), play
        assert play.frames == jpegs and play.timestamps_us == stamps, clip
        assert play.source_num_frames == count and play.frame_rate == FPS and play.pad_mode == ""
        assert all(clip.start_us <= t < clip.end_us for t in play.timestamps_us)
    # One open; the 9 s gap is sought over, so not every frame is decoded.
    assert stats.opens == 1 and stats.seeks == 1
    assert stats.frames_decoded < len(decoded) - 5 * FPS
    # Without seeking (decoding from the start), the same plays.
    naive = dict(video_clips.cut_clips(long_video, CLIPS, HOW, seek_gap=None))
    assert {k: (v.frames, v.timestamps_us) for k, v in naive.items()} == {
        k: (v.frames, v.timestamps_us) for k, v in got.items()}


def test_plays_come_out_as_soon_as_their_frames_are_in(long_video):
    clips = [Clip(f"p{i}", 0.5 * i, 0.5 * i + 0.4) for i in range(30)]  # 30 plays, 10 frames each
    stats = video_clips.CutStats()
    results = video_clips.cut_clips(long_video, clips, HOW, stats=stats)
    first_id, first = next(results)
    assert first_id == "p0" and isinstance(first, frames.SampledPlay)
    assert stats.frames_decoded < 2 * FPS  # out long before the end of the video
    rest = list(results)
    assert [clip_id for clip_id, _ in rest] == [f"p{i}" for i in range(1, 30)]
    assert stats.max_held_plays <= 4 and stats.max_held_packets <= FPS  # not all 30
    assert stats.opens == 1


def test_rejections_say_why(long_video, tmp_path):
    clips = [Clip("backwards", 3.0, 2.0), Clip("empty", 2.0, 2.0), Clip("negative", -1.0, 1.0),
             Clip("outside", 15.5, 17.0), Clip("after", 20.0, 21.0), Clip("short", 4.0, 4.2),
             Clip("between_frames", 4.001, 4.039), Clip("ok", 5.0, 6.0)]
    got = dict(video_clips.cut_clips(long_video, clips, HOW))
    kinds = {k: v.kind for k, v in got.items() if isinstance(v, frames.PlayError)}
    assert kinds == {"backwards": "bad_range", "empty": "bad_range", "negative": "bad_range",
                     "outside": "range_outside_video", "after": "range_outside_video",
                     "short": "too_few_frames", "between_frames": "no_frames"}
    assert "ends after the end of the video (16.000 s)" in got["outside"].reason
    assert "play 4.000-4.200 s: too few frames: 5, need 8" in got["short"].reason
    padded = video_clips.read_clip(long_video, 4.0, 4.2,
                                   FrameSampling.of(NUM_FRAMES, SIZE, pad_short="last"))
    jpegs, stamps, _ = _expected(_plain_decode(long_video), Clip("short", 4.0, 4.2), "last")
    assert padded.pad_mode == "last" and padded.frames == jpegs and padded.timestamps_us == stamps

    corrupt = mf.write_corrupt_file(str(tmp_path / "corrupt.mp4"))
    missing = str(tmp_path / "missing.mp4")
    for path, kind in ((corrupt, "undecodable_video"), (missing, "missing_path")):
        stats = video_clips.CutStats()
        got = dict(video_clips.cut_clips(path, clips[-2:], HOW, stats=stats))
        assert {k: v.kind for k, v in got.items()} == {"between_frames": kind, "ok": kind}
        assert path in got["ok"].reason
        assert stats.opens == (1 if path == corrupt else 0)
    with pytest.raises(ValueError, match="unique"):
        list(video_clips.cut_clips(long_video, [Clip("x", 1, 2), Clip("x", 3, 4)], HOW))


def test_sample_plays_reads_whole_plays_and_cuts_each_video_once(long_video, tmp_path):
    """The one sampling function: whole plays by read_play, a video's ranges in one decode."""
    folder = tmp_path / "p"
    mf.write_frame_folder(str(folder), 10)
    plays = [Play(long_video, 5.0, 6.0, "ok", row=2), Play(str(folder), play_id="whole"),
             Play(long_video, 5.0, 6.0, "again", row=3), Play(long_video, 1.0, 2.0, "b", row=4),
             Play(str(tmp_path / "missing"), play_id="missing")]
    stats = video_clips.CutStats()
    got = {play.play_id: result for play, result in sample_plays(plays, HOW, stats)}
    assert got.keys() == {"ok", "whole", "again", "b", "missing"} and stats.opens == 1
    assert got["whole"].frames == frames.read_play(str(folder), HOW).frames
    assert got["ok"].frames == video_clips.read_clip(long_video, 5.0, 6.0, HOW).frames
    assert got["missing"].kind == "missing_path"
    assert got["again"].kind == "duplicate_clip" and "play 'ok' (row 2)" in got["again"].reason
