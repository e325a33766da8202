"""A whole video resampled at a fixed frame rate, streamed: one forward decode, frames as JPEGs.

`sample_video(path, rate, ...)` decodes the video once, forward, and yields
sampled frame j for the time bin [j / rate, (j + 1) / rate) from the stream's
start: the decoded frame on screen at the bin's centre, (j + 0.5) / rate. With
rate equal to the video's own frame rate that is every frame; with a lower rate
frames are skipped, with a higher one repeated. This is how the records job
picks a play's frames (`media.frames.sample_indices`: the frame at the centre of
each of `num_frames` equal bins), applied to a whole game at a fixed rate.

Each kept frame is resized (`media.frames.resize_image`, crop or pad) and
JPEG-encoded exactly as the records job stores it, so a model sees the same
pixels as in training. `wanted(j)` lets the caller skip frames it will not use:
they are counted but never converted. Only the frame on screen is held, so
memory does not grow with the video's length.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Callable, Iterator, Optional, Tuple

from media import files
from media.frames import PlayError, encode_jpeg, resize_image
from schemas.sampling import FrameSampling


@dataclasses.dataclass
class StreamStats:
    """What one pass over the video did (filled in while it runs)."""

    frames_decoded: int = 0
    frames_sampled: int = 0  # sampled frames j = 0 .. frames_sampled - 1
    frames_converted: int = 0  # resized and JPEG-encoded (wanted ones)
    duration: float = 0.0  # seconds: the last frame's end, from the stream's start
    video_frame_rate: Optional[float] = None
    video_size: Optional[Tuple[int, int]] = None  # (height, width) of the decoded frames


def sample_video(path: str, rate: float, how: FrameSampling, *,
                 wanted: Optional[Callable[[int], bool]] = None,
                 stats: Optional[StreamStats] = None) -> Iterator[Tuple[int, bytes]]:
    """Yields (j, JPEG bytes) for each wanted sampled frame j, in order; raises PlayError.

    Frames are resized and encoded as `how` says (its size, resize mode and
    JPEG quality; `rate`, not its frame count, decides which frames are taken).

    `stats` (optional) is filled in as frames come; after the generator is
    exhausted it holds the video's duration and the number of sampled frames.
    """
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    stats = stats if stats is not None else StreamStats()
    try:
        found = files.exists(path)
    except OSError as err:
        raise PlayError(f"cannot check video file {path}: {err}", kind="missing_path") from err
    if not found:
        raise PlayError(f"missing video file {path}", kind="missing_path")
    import av  # pylint: disable=g-import-not-at-top
    try:
        with files.open_read(path) as f, av.open(f, mode="r") as container:
            if not container.streams.video:
                raise PlayError(f"no video stream in {path}", kind="undecodable_video")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from _resample(container, stream, float(rate), how, wanted, stats)
    except (av.FFmpegError, EOFError, OSError, ValueError) as err:
        raise PlayError(f"undecodable video {path}: {err}", kind="undecodable_video") from err
    if not stats.frames_decoded:
        raise PlayError(f"no frames decoded from {path}", kind="no_frames")


def _resample(container, stream, rate, how, wanted, stats):
    time_base = Fraction(stream.time_base) if stream.time_base else None
    start_pts = stream.start_time or 0
    video_rate = stream.average_rate or stream.guessed_rate
    stats.video_frame_rate = float(video_rate) if video_rate else None
    held = None  # (seconds, frame, jpeg or None): the frame on screen
    last_step = 1.0 / stats.video_frame_rate if stats.video_frame_rate else 1.0 / rate
    j = 0

    def emit(upto: float):
        """Sampled frames whose bin centre is before `upto` show the held frame."""
        nonlocal j, held
        while (j + 0.5) / rate < upto:
            if wanted is None or wanted(j):
                if held[2] is None:
                    image = resize_image(held[1].to_image(), how.size, how.resize_mode)
                    held = (held[0], held[1], encode_jpeg(image, how.jpeg_quality))
                    stats.frames_converted += 1
                yield j, held[2]
            j += 1
            stats.frames_sampled = j

    for frame in container.decode(stream):
        stats.frames_decoded += 1
        if stats.video_size is None:
            stats.video_size = (frame.height, frame.width)
        if frame.pts is not None and time_base is not None:
            seconds = float((frame.pts - start_pts) * time_base)
        else:
            seconds = (stats.frames_decoded - 1) * last_step
        if held is not None:
            if seconds <= held[0]:
                continue  # a frame that does not advance time (duplicate pts)
            last_step = seconds - held[0]
            yield from emit(seconds)
        held = (seconds, frame, None)
        stats.duration = seconds + last_step
    if held is not None:
        yield from emit(stats.duration)


__all__ = ["StreamStats", "sample_video"]
