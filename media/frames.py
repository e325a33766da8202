"""Media I/O for one play: sample exactly `num_frames` frames, resize, JPEG-encode.

Pure Python (Pillow for images, PyAV for video), no pipeline code. The
settings are one `schemas.sampling.FrameSampling`; `media.sample_plays` is
what the jobs and `trainer.predict` call, whole plays through `read_play`.

A play's `path` is one of:
  * a folder of frame images (any format Pillow reads), in natural order
    (frame_2 before frame_10);
  * a glob of frame images (`plays/p1/*.png`);
  * a video file (mp4, avi, mov, webm, mkv, m4v), decoded with PyAV;
  * `demo://<seed>/<index>[?profile=P&label=L]`: a synthetic play from `demo_data.plays`.
A play that is a time range of a longer video is read by `media.video_clips`.
Local paths are read directly; other file systems (gs://, s3://...) through
Beam's FileSystems (`media.files`).
"""

from __future__ import annotations

import dataclasses
import io
import math
import posixpath
import re
from typing import Dict, Iterable, List, Optional, Tuple

from PIL import Image

from media import files
from schemas import sampling
from schemas.sampling import FrameSampling, FrameSize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v")
DEMO_SCHEME = "demo://"


class PlayError(Exception):
    """A play that cannot be turned into a record; `reason` says why in plain words.

    `kind` is a short stable category (for counters and the dataset card).
    """

    def __init__(self, reason: str, kind: str = "unreadable_media"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def missing_video(path: str) -> Optional[PlayError]:
    """The error for a video path that is missing or that the file system cannot check (None
    when the file is there)."""
    try:
        found = files.exists(path)
    except OSError as err:  # the file system could not tell
        return PlayError(f"cannot check video file {path}: {err}", kind="missing_path")
    return None if found else PlayError(f"missing video file {path}", kind="missing_path")


@dataclasses.dataclass
class SampledPlay:
    """The sampled frames of one play, ready for `schemas.play_record.PlayRecord`."""

    frames: List[bytes]  # JPEG, one per sampled frame
    timestamps_us: List[int]
    source_num_frames: int
    frame_rate: Optional[float]
    pad_mode: str  # "" when the source had enough frames


def natural_key(name: str) -> Tuple:
    """Sort key that orders digit runs by value: frame_2 < frame_10."""
    return tuple(int(part) if part.isdigit() else part.lower()
                 for part in re.split(r"(\d+)", name))


def frame_size_hw(frame_size: FrameSize) -> Tuple[int, int]:
    """`224` or `(height, width)` -> (height, width)."""
    if isinstance(frame_size, int):
        height = width = frame_size
    else:
        height, width = (int(v) for v in frame_size)
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {frame_size!r}")
    return height, width


def sample_indices(num_source: int, num_frames: int, pad_short: str = "") -> List[int]:
    """Source frame indices of the `num_frames` output frames.

    With at least `num_frames` source frames, samples uniformly over the whole
    length: index i -> floor((i + 0.5) * num_source / num_frames). A shorter
    source raises PlayError unless `pad_short` is "loop" (repeat from the start)
    or "last" (repeat the last frame).
    """
    if pad_short not in sampling.PAD_SHORT_MODES:
        raise ValueError(f"pad_short must be one of {sampling.PAD_SHORT_MODES}, got {pad_short!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_source < 1:
        raise PlayError("no frames found", kind="no_frames")
    if num_source >= num_frames:
        return [int(math.floor((i + 0.5) * num_source / num_frames)) for i in range(num_frames)]
    if not pad_short:
        raise PlayError(f"too few frames: {num_source}, need {num_frames} "
                        f"(or run with --pad_short=loop|last)", kind="too_few_frames")
    if pad_short == "loop":
        return [i % num_source for i in range(num_frames)]
    return [min(i, num_source - 1) for i in range(num_frames)]


def _target_scale(src_w: int, src_h: int, height: int, width: int, resize_mode: str) -> float:
    sx, sy = width / src_w, height / src_h
    return max(sx, sy) if resize_mode == "crop" else min(sx, sy)


def resize_image(image: Image.Image, frame_size: FrameSize,
                 resize_mode: str = sampling.DEFAULT_RESIZE_MODE) -> Image.Image:
    """RGB image of exactly `frame_size`.

    crop: scale so the shorter side fits, then center-crop the longer side.
    pad:  scale so the longer side fits, then letterbox on black.
    """
    if resize_mode not in sampling.RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {sampling.RESIZE_MODES}, got {resize_mode!r}")
    height, width = frame_size_hw(frame_size)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size == (width, height):
        return image
    scale = _target_scale(image.width, image.height, height, width, resize_mode)
    new_w = max(1, round(image.width * scale))
    new_h = max(1, round(image.height * scale))
    if resize_mode == "crop":
        new_w, new_h = max(new_w, width), max(new_h, height)
        resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return resized.crop((left, top, left + width, top + height))
    new_w, new_h = min(new_w, width), min(new_h, height)
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def encode_jpeg(image: Image.Image, quality: int = sampling.DEFAULT_JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _image_to_jpeg(data: bytes, name: str, frame_size: FrameSize, resize_mode: str,
                   quality: int) -> bytes:
    """JPEG bytes of one frame file; an RGB JPEG already at the target size is kept as is."""
    height, width = frame_size_hw(frame_size)
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        if image.format == "JPEG" and image.mode == "RGB" and image.size == (width, height):
            return data
        if image.format == "JPEG":
            # Let libjpeg decode at a reduced scale when that still covers the target.
            scale = _target_scale(image.width, image.height, height, width, resize_mode)
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        # Pillow's errors for truncated, corrupt or oversized files
        raise PlayError(f"unreadable or corrupt image {name}: {err}", kind="corrupt_image") from err
    return encode_jpeg(resize_image(image, frame_size, resize_mode), quality)


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _extension(path: str) -> str:
    return posixpath.splitext(path.rstrip("/"))[1].lower()


def is_video(path: str) -> bool:
    return _extension(path) in VIDEO_EXTENSIONS


def list_frame_files(path: str) -> List[str]:
    """Image files of a frame folder or glob, in natural order (PlayError if none)."""
    pattern = path if _is_glob(path) else files.join(path.rstrip("/"), "*")
    try:
        matched = files.match(pattern)
        missing = not matched and not _is_glob(path) and not files.exists(path)
    except OSError as err:  # BeamIOError: the file system could not list or check the path
        raise PlayError(f"cannot list {path}: {err}", kind="missing_path") from err
    if missing:
        raise PlayError(f"missing folder {path}", kind="missing_path")
    frame_files = [m for m in matched if _extension(m) in IMAGE_EXTENSIONS]
    if not frame_files:
        what = "glob" if _is_glob(path) else "folder"
        raise PlayError(f"no image frames in {what} {path}", kind="no_frames")
    return sorted(frame_files, key=lambda p: natural_key(posixpath.basename(p)))


def _timestamps(indices: Iterable[int], frame_rate: float) -> List[int]:
    return [int(round(i * 1e6 / frame_rate)) for i in indices]


def _read_folder(path: str, how: FrameSampling, frame_rate: Optional[float]) -> SampledPlay:
    num_frames, pad_short = how.num_frames, how.pad_short
    frame_files = list_frame_files(path)
    indices = sample_indices(len(frame_files), num_frames, pad_short)
    encoded = {}
    for index in sorted(set(indices)):
        name = frame_files[index]
        try:
            with files.open_read(name) as f:
                data = f.read()
        except OSError as err:
            raise PlayError(f"unreadable image {name}: {err}", kind="corrupt_image") from err
        encoded[index] = _image_to_jpeg(data, name, how.size, how.resize_mode, how.jpeg_quality)
    rate = float(frame_rate or how.folder_frame_rate)
    return SampledPlay(
        frames=[encoded[i] for i in indices], timestamps_us=_timestamps(indices, rate),
        source_num_frames=len(frame_files), frame_rate=rate,
        pad_mode=pad_short if len(frame_files) < num_frames else "")


def _count_video_frames(container, stream) -> int:
    if stream.frames:
        return int(stream.frames)
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _decode_video(fileobj, path, num_frames, pad_short, known_count=None):
    """(decoded sampled PIL frames by index, pts timestamps by index, source count, fps)."""
    import av  # pylint: disable=g-import-not-at-top
    with av.open(fileobj, mode="r") as container:
        if not container.streams.video:
            raise PlayError(f"no video stream in {path}", kind="undecodable_video")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = known_count if known_count is not None else _count_video_frames(container, stream)
        indices = sample_indices(count, num_frames, pad_short)
        wanted = set(indices)
        last_wanted = max(wanted)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        start = stream.start_time if stream.start_time is not None else None
        images, stamps = {}, {}
        decoded = 0
        for frame in container.decode(stream):
            if decoded in wanted:
                images[decoded] = frame.to_image()
                if frame.pts is not None and stream.time_base is not None:
                    base = start if start is not None else 0
                    stamps[decoded] = int(round(float((frame.pts - base) * stream.time_base) * 1e6))
                else:
                    stamps[decoded] = int(round(decoded * 1e6 / (fps or sampling.DEFAULT_FRAME_RATE)))
            decoded += 1
            if decoded > last_wanted:
                break
    return images, stamps, indices, count, decoded, fps


def _read_video(path: str, how: FrameSampling) -> SampledPlay:
    num_frames, pad_short = how.num_frames, how.pad_short
    import av  # pylint: disable=g-import-not-at-top
    try:
        found = files.exists(path)
    except OSError as err:  # the file system could not tell
        raise PlayError(f"cannot check video file {path}: {err}", kind="missing_path") from err
    if not found:
        raise PlayError(f"missing video file {path}", kind="missing_path")
    known = None
    for _ in range(2):
        try:
            with files.open_read(path) as f:
                images, stamps, indices, count, decoded, fps = _decode_video(
                    f, path, num_frames, pad_short, known)
        except PlayError:
            raise
        except (av.FFmpegError, EOFError, OSError, ValueError) as err:
            raise PlayError(f"undecodable video {path}: {err}", kind="undecodable_video") from err
        if decoded > max(indices) or known is not None:
            break
        known = decoded  # the container's frame count was wrong: sample the real count
    missing = [i for i in indices if i not in images]
    if missing:
        raise PlayError(f"undecodable video {path}: decoded {decoded} of {count} frames",
                        kind="undecodable_video")
    encoded = {i: encode_jpeg(resize_image(img, how.size, how.resize_mode), how.jpeg_quality)
               for i, img in images.items()}
    return SampledPlay(
        frames=[encoded[i] for i in indices], timestamps_us=[stamps[i] for i in indices],
        source_num_frames=count, frame_rate=fps,
        pad_mode=pad_short if count < num_frames else "")


def parse_demo_path(path: str) -> Tuple[int, int, Dict[str, str]]:
    """`demo://<seed>/<index>[?profile=P&label=L]` -> (seed, index, {profile, label} given)."""
    match = re.fullmatch(r"demo://(-?\d+)/(\d+)(?:\?((?:(?:profile|label)=\w+&?)+))?", path)
    if not match:
        raise PlayError(f"bad demo play path {path} (expected demo://<seed>/<index>"
                        f"[?profile=P&label=L])", kind="missing_path")
    options = dict(part.split("=") for part in (match.group(3) or "").split("&") if part)
    return int(match.group(1)), int(match.group(2)), options


def demo_source_frames(num_frames: int) -> int:
    """Frames rendered per demo play: 40, or more when the records hold more."""
    return max(40, num_frames)


def _read_demo(path: str, how: FrameSampling) -> SampledPlay:
    num_frames, pad_short = how.num_frames, how.pad_short
    from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
    seed, index, options = parse_demo_path(path)
    play = demo_plays.render_play(seed, index, num_frames=demo_source_frames(num_frames),
                                  profile=options.get("profile", "default"),
                                  label=options.get("label"))
    count = int(play.frames.shape[0])
    indices = sample_indices(count, num_frames, pad_short)
    encoded = {i: encode_jpeg(resize_image(Image.fromarray(play.frames[i]), how.size,
                                           how.resize_mode), how.jpeg_quality)
               for i in set(indices)}
    rate = float(play.frame_rate)
    return SampledPlay(
        frames=[encoded[i] for i in indices], timestamps_us=_timestamps(indices, rate),
        source_num_frames=count, frame_rate=rate,
        pad_mode=pad_short if count < num_frames else "")


def read_play(path: str, how: FrameSampling, *, frame_rate: Optional[float] = None) -> SampledPlay:
    """Samples the whole play at `path` as `how` says: `how.num_frames` JPEGs of `how.size`.

    Only the sampled frames are decoded (folders: only those files are read;
    video: one decoding pass that keeps the sampled frames). Timestamps come
    from the video's pts, else from `frame_rate` (default: `how`'s) for frame
    folders. Raises PlayError(reason) for media that cannot make a play.
    """
    if not path:
        raise PlayError("empty path", kind="missing_value")
    if path.startswith(DEMO_SCHEME):
        return _read_demo(path, how)
    if is_video(path) and not _is_glob(path):
        return _read_video(path, how)
    return _read_folder(path, how, frame_rate)


__all__ = ["PlayError", "SampledPlay", "read_play", "sample_indices", "natural_key",
           "resize_image", "list_frame_files", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS"]
