"""beam_jobs.frames: sampling, frame folders, globs, real video files, passthrough."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from media import frames
from schemas import sampling
from schemas.sampling import FrameSampling
from tests import media_fixtures as mf


def _size(jpeg: bytes):
    return Image.open(io.BytesIO(jpeg)).size


@pytest.mark.parametrize("num_source", [40, 41, 57, 100, 1000])
def test_sample_indices_uniform_over_whole_length(num_source):
    idx = frames.sample_indices(num_source, 40)
    assert len(idx) == 40
    assert idx == sorted(idx) and len(set(idx)) == 40
    assert idx == [int((i + 0.5) * num_source / 40) for i in range(40)]
    # Covers the whole play: first and last samples are within one stride of the ends.
    stride = num_source / 40
    assert idx[0] <= stride and idx[-1] >= num_source - 1 - stride


def test_sample_indices_short_plays():
    with pytest.raises(frames.PlayError, match="too few frames: 5, need 8") as err:
        frames.sample_indices(5, 8)
    assert err.value.kind == "too_few_frames"
    assert frames.sample_indices(3, 8, "loop") == [0, 1, 2, 0, 1, 2, 0, 1]
    assert frames.sample_indices(3, 8, "last") == [0, 1, 2, 2, 2, 2, 2, 2]
    with pytest.raises(frames.PlayError):
        frames.sample_indices(0, 8, "loop")
    with pytest.raises(ValueError):
        frames.sample_indices(10, 8, "mirror")


def test_natural_sort():
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png"]
    assert sorted(names, key=frames.natural_key) == [
        "frame_1.png", "frame_2.png", "Frame_3.png", "frame_10.png"]


def test_frame_folder_samples_natural_order(tmp_path):
    mf.write_frame_folder(str(tmp_path / "p"), 20)  # frame_0 .. frame_19, unpadded
    play = frames.read_play(str(tmp_path / "p"), FrameSampling.of(8, 32), frame_rate=10.0)
    expected = frames.sample_indices(20, 8)
    assert [mf.source_index(f, 20) for f in play.frames] == expected
    assert play.timestamps_us == [i * 100_000 for i in expected]
    assert play.source_num_frames == 20 and play.pad_mode == "" and play.frame_rate == 10.0
    assert all(_size(f) == (32, 32) for f in play.frames)


def test_frame_folder_default_frame_rate_and_padding(tmp_path):
    mf.write_frame_folder(str(tmp_path / "p"), 5)
    with pytest.raises(frames.PlayError, match="too few frames"):
        frames.read_play(str(tmp_path / "p"), FrameSampling.of(8, 32))
    play = frames.read_play(str(tmp_path / "p"), FrameSampling.of(8, 32, pad_short="loop"))
    assert [mf.source_index(f, 5) for f in play.frames] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert play.pad_mode == "loop" and play.source_num_frames == 5
    assert play.timestamps_us[:2] == [0, int(round(1e6 / sampling.DEFAULT_FRAME_RATE))]


def test_glob_of_frames(tmp_path):
    mf.write_frame_folder(str(tmp_path / "p"), 12, ext="jpg")
    mf.write_frame_folder(str(tmp_path / "p"), 3, ext="png", prefix="other_")
    play = frames.read_play(str(tmp_path / "p" / "frame_*.jpg"), FrameSampling.of(4, (24, 40)))
    assert play.source_num_frames == 12
    assert [mf.source_index(f, 12) for f in play.frames] == frames.sample_indices(12, 4)
    assert all(_size(f) == (40, 24) for f in play.frames)


def test_resize_modes():
    image = Image.new("RGB", (64, 32), (255, 255, 255))
    crop = np.asarray(frames.resize_image(image, 32, "crop"))
    pad = np.asarray(frames.resize_image(image, 32, "pad"))
    assert crop.shape == pad.shape == (32, 32, 3)
    assert crop.min() == 255  # crop fills the frame
    assert pad[0].max() == 0 and pad[16].min() == 255  # letterbox: black bars top and bottom
    assert pad[:8].max() == 0 and pad[-8:].max() == 0


def test_jpeg_passthrough_bytes_identical(tmp_path):
    paths = mf.write_frame_folder(str(tmp_path / "p"), 6, height=32, width=32, ext="jpg")
    play = frames.read_play(str(tmp_path / "p"), FrameSampling.of(3, 32, jpeg_quality=50))
    originals = [open(p, "rb").read() for p in paths]
    assert play.frames == [originals[i] for i in frames.sample_indices(6, 3)]
    # Other size or grayscale: re-encoded.
    other = frames.read_play(str(tmp_path / "p"), FrameSampling.of(3, 24))
    assert all(f not in originals for f in other.frames)
    gray_dir = tmp_path / "g"
    gray_dir.mkdir()
    Image.new("L", (32, 32), 100).save(gray_dir / "0.jpg")
    gray = frames.read_play(str(gray_dir), FrameSampling.of(1, 32))
    assert gray.frames[0] != (gray_dir / "0.jpg").read_bytes()
    assert Image.open(io.BytesIO(gray.frames[0])).mode == "RGB"


@pytest.mark.parametrize("name,codec", [
    ("clip.mp4", "mpeg4"), ("clip_h264.mp4", "libx264"), ("clip.webm", "libvpx"),
    ("clip_vp9.webm", "libvpx-vp9"), ("clip.avi", "mpeg4"), ("clip.mov", "mpeg4"),
    ("clip.mkv", "libx264")])
def test_video_files(tmp_path, name, codec):
    path = mf.write_video(str(tmp_path / name), 30, height=48, width=64, codec=codec, fps=25)
    play = frames.read_play(path, FrameSampling.of(8, 32))
    expected = frames.sample_indices(30, 8)
    assert play.source_num_frames == 30
    assert [mf.source_index(f, 30) for f in play.frames] == expected
    assert play.timestamps_us == [i * 40_000 for i in expected]  # pts at 25 fps
    assert play.frame_rate == pytest.approx(25.0)
    assert all(_size(f) == (32, 32) for f in play.frames)


def test_short_video_padding(tmp_path):
    path = mf.write_video(str(tmp_path / "short.mp4"), 4)
    with pytest.raises(frames.PlayError, match="too few frames: 4"):
        frames.read_play(path, FrameSampling.of(8, 32))
    play = frames.read_play(path, FrameSampling.of(8, 32, pad_short="last"))
    assert [mf.source_index(f, 4) for f in play.frames] == [0, 1, 2, 3, 3, 3, 3, 3]
    assert play.pad_mode == "last"


def test_bad_media_raises_play_error(tmp_path):
    cases = {
        str(tmp_path / "missing"): "missing_path",
        str(tmp_path / "missing.mp4"): "missing_path",
        mf.write_corrupt_file(str(tmp_path / "corrupt.mp4")): "undecodable_video",
        mf.write_corrupt_file(str(tmp_path / "corrupt.webm")): "undecodable_video",
    }
    (tmp_path / "empty").mkdir()
    cases[str(tmp_path / "empty")] = "no_frames"
    bad = tmp_path / "badimg"
    mf.write_frame_folder(str(bad), 4)
    mf.write_corrupt_file(str(bad / "frame_2.png"))
    cases[str(bad)] = "corrupt_image"
    for path, kind in cases.items():
        with pytest.raises(frames.PlayError) as err:
            frames.read_play(path, FrameSampling.of(4, 32))
        assert err.value.kind == kind, (path, err.value.reason)
        assert path in err.value.reason or os.path.basename(path) in err.value.reason


def test_demo_play_path():
    play = frames.read_play("demo://3/7", FrameSampling.of(8, 32))
    assert len(play.frames) == 8 and play.source_num_frames == 40
    again = frames.read_play("demo://3/7", FrameSampling.of(8, 32))
    assert play.frames == again.frames  # deterministic
    with pytest.raises(frames.PlayError, match="bad demo play path"):
        frames.read_play("demo://x", FrameSampling.of(8, 32))
