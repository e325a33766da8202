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

`first` and `stop` stream a part of the video on the same grid: the stream
seeks to the keyframe at or before sampled frame `first`'s bin centre and
decodes forward from there (from the start when the seek lands past it, or the
stream has no timestamps), yields sampled frames `first` .. `stop - 1` only, and
stops decoding after `stop - 1` (None: the video's end). Sampled frame j is the
same frame as in a pass over the whole video, so parts line up exactly.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Callable, Iterator, Optional, Tuple

from media import files
from media.frames import PlayError, encode_jpeg, missing_video, resize_image
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
                 stats: Optional[StreamStats] = None, first: int = 0,
                 stop: Optional[int] = None) -> Iterator[Tuple[int, bytes]]:
    """Yields (j, JPEG bytes) for each wanted sampled frame j, in order; raises PlayError.

    Frames are resized and encoded as `how` says (its size, resize mode and
    JPEG quality; `rate`, not its frame count, decides which frames are taken).

    `stats` (optional) is filled in as frames come; after the generator is
    exhausted it holds the video's duration and the number of sampled frames
    (with `stop`, when the part ended before the video did: `stop` and the time
    reached). `first`, `stop`: a part of the video (module docstring).
    """
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    stats = stats if stats is not None else StreamStats()
    error = missing_video(path)
    if error is not None:
        raise error
    import av  # pylint: disable=g-import-not-at-top
    try:
        with files.open_read(path) as f, av.open(f, mode="r") as container:
            if not container.streams.video:
                raise PlayError(f"no video stream in {path}", kind="undecodable_video")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if first > 0 and _seek(container, stream, (first + 0.5) / rate):
                yield from _resample(container, stream, float(rate), how, wanted, stats,
                                     first, stop, seeked=True)
            else:
                yield from _resample(container, stream, float(rate), how, wanted, stats,
                                     first, stop)
    except (av.FFmpegError, EOFError, OSError, ValueError) as err:
        raise PlayError(f"undecodable video {path}: {err}", kind="undecodable_video") from err
    if not stats.frames_decoded:
        raise PlayError(f"no frames decoded from {path}", kind="no_frames")


class _Overshot(Exception):
    """The seek landed after the wanted time (or frames lack timestamps): decode from the start."""


def _seek(container, stream, seconds: float) -> bool:
    """Seeks to the keyframe at or before `seconds` from the stream's start; False if it cannot."""
    if not stream.time_base:
        return False
    target = (stream.start_time or 0) + int(Fraction(seconds) / Fraction(stream.time_base))
    container.seek(target, stream=stream, backward=True, any_frame=False)
    return True


def _resample(container, stream, rate, how, wanted, stats, first=0, stop=None, seeked=False):
    if seeked:
        try:
            yield from _resample_from(container, stream, rate, how, wanted, stats, first, stop,
                                      seeked=True)
            return
        except _Overshot:
            container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
            stats.frames_decoded = 0
    yield from _resample_from(container, stream, rate, how, wanted, stats, first, stop)


def _resample_from(container, stream, rate, how, wanted, stats, first, stop, seeked=False):
    time_base = Fraction(stream.time_base) if stream.time_base else None
    start_pts = stream.start_time or 0
    video_rate = stream.average_rate or stream.guessed_rate
    stats.video_frame_rate = float(video_rate) if video_rate else None
    held = None  # (seconds, frame, jpeg or None): the frame on screen
    last_step = 1.0 / stats.video_frame_rate if stats.video_frame_rate else 1.0 / rate
    j = first

    def emit(upto: float):
        """Sampled frames whose bin centre is before `upto` show the held frame."""
        nonlocal j, held
        while (j + 0.5) / rate < upto and (stop is None or j < stop):
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
        if seeked and held is None and (frame.pts is None or seconds > (first + 0.5) / rate):
            raise _Overshot()
        if held is not None:
            if seconds <= held[0]:
                continue  # a frame that does not advance time (duplicate pts)
            last_step = seconds - held[0]
            yield from emit(seconds)
            if stop is not None and j >= stop:
                stats.duration = seconds
                return  # the part is done: the rest of the video is not decoded
        held = (seconds, frame, None)
        stats.duration = seconds + last_step
    if held is not None:
        yield from emit(stats.duration)
    if j == first and first > 0:  # the video ended before the part began
        stats.frames_sampled = _count_sampled(stats.duration, rate)


def _count_sampled(duration: float, rate: float) -> int:
    """How many sampled frames a video of `duration` seconds has (bin centres before its end)."""
    n = max(int(duration * rate) - 2, 0)
    while (n + 0.5) / rate < duration:
        n += 1
    return n


__all__ = ["StreamStats", "sample_video"]
