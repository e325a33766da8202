"""Plays cut from one long video by time range: one open and one forward decode for all of them.

A game video (an hour or more of broadcast) holds hundreds of plays, each a
[start, end) range in seconds. `cut_clips` opens the video once and decodes it
forward once: it seeks to the keyframe before a play that starts more than
`seek_gap` seconds after the last packet read, and yields each play's sampled
frames as soon as its last sampled frame is decoded. Only the plays in progress
are held in memory (their sampled JPEGs, and the compressed packets between the
demuxer and the decoder), never the frames of the whole list.

A frame belongs to a play when its pts time (seconds from the stream's start)
is in [start, end); a play's frames are sampled as a whole clip's are
(`media.frames.sample_indices`). The frame count of a play comes from the
demuxed packets' pts, so the demuxer runs ahead of the decoder until the play's
end has been demuxed, and only the sampled frames are converted, resized and
encoded.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from fractions import Fraction
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from media import files
from media.frames import (PlayError, SampledPlay, encode_jpeg, missing_video, resize_image,
                          sample_indices)
from schemas.sampling import FrameSampling

logger = logging.getLogger(__name__)

DEFAULT_SEEK_GAP = 5.0  # seconds: a shorter gap between plays is decoded through, not sought over


@dataclasses.dataclass(frozen=True)
class Clip:
    """One play to cut: `start` and `end` in seconds from the start of the video."""

    clip_id: str
    start: float
    end: float

    @property
    def start_us(self) -> int:
        return seconds_to_us(self.start)

    @property
    def end_us(self) -> int:
        return seconds_to_us(self.end)

    def describe(self) -> str:
        return f"play {self.start:.3f}-{self.end:.3f} s"


@dataclasses.dataclass
class CutStats:
    """What a cut cost (for tests and benchmarks)."""

    opens: int = 0  # videos opened
    seeks: int = 0
    packets: int = 0  # packets demuxed
    frames_decoded: int = 0
    max_held_plays: int = 0  # most plays in progress at once
    max_held_packets: int = 0  # most packets read but not yet decoded


Result = Tuple[str, Union[SampledPlay, PlayError]]


def seconds_to_us(seconds: float) -> int:
    """Seconds -> integer microseconds (the unit of MediaSequence timestamps)."""
    return int(round(float(seconds) * 1e6))


def range_problem(start: float, end: float) -> str:
    """Why [start, end) cannot be a play, or "" when it can."""
    if not (math.isfinite(start) and math.isfinite(end)):
        return f"start and end must be finite numbers, got {start}, {end}"
    if start < 0:
        return f"start must be >= 0, got {start}"
    if seconds_to_us(start) >= seconds_to_us(end):
        return f"start ({start}) must be before end ({end})"
    return ""


@dataclasses.dataclass
class _Play:
    """A play in progress: the pts of its frames, then the sampled ones and their JPEGs."""

    clip: Clip
    lo: int  # first pts inside the play
    hi: int  # first pts after it
    pts: List[int] = dataclasses.field(default_factory=list)
    wanted: List[int] = dataclasses.field(default_factory=list)  # sampled pts (repeats when padded)
    pad_mode: str = ""
    jpegs: Dict[int, bytes] = dataclasses.field(default_factory=dict)


class _Cutter:
    """The forward decode of one opened video for its sorted plays (see the module docstring)."""

    def __init__(self, container, stream, clips: Sequence[Clip], how: FrameSampling,
                 seek_gap: Optional[float],
                 stats: CutStats):
        self._container, self._stream, self._how, self._stats = container, stream, how, stats
        self._seek_gap = seek_gap
        self._codec = stream.codec_context
        self._tb = Fraction(stream.time_base)
        self._t0 = stream.start_time or 0
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate else None
        if stream.duration is not None:
            self._duration_us: Optional[int] = self._us(self._t0 + stream.duration)
        elif container.duration is not None:
            self._duration_us = int(container.duration)  # AV_TIME_BASE: microseconds
        else:
            self._duration_us = None
        plays = [_Play(c, self._pts(c.start_us), self._pts(c.end_us)) for c in clips]
        self._todo = collections.deque(sorted(plays, key=lambda p: (p.lo, p.hi, p.clip.clip_id)))
        self._scanning: List[_Play] = []  # opened, frame count not yet known
        self._collecting: List[_Play] = []  # sampled pts known, waiting for their frames
        self._buffer: collections.deque = collections.deque()  # demuxed, not yet decoded
        self._fed_max: Optional[int] = None  # highest pts sent to the decoder since the last seek
        self._position: Optional[int] = None  # pts of the last packet demuxed
        self._last_seek_lo: Optional[int] = None
        self._check_seek: Optional[Tuple[int, int]] = None  # (target lo, fallback pts)

    def _pts(self, us: int) -> int:
        """The first pts at or after `us` microseconds from the stream's start."""
        return self._t0 + math.ceil(Fraction(us, 1_000_000) / self._tb)

    def _us(self, pts: int) -> int:
        return int(round((pts - self._t0) * self._tb * 1_000_000))

    def run(self) -> Iterator[Result]:
        yield from self._reject_outside()
        demux = self._container.demux(self._stream)
        while self._todo or self._scanning or self._collecting:
            if self._should_seek():
                demux = self._seek(self._todo[0].lo)
            packet = next(demux, None)
            if packet is None:
                yield from self._finish()
                return
            if not packet.size:
                continue  # the demuxer's end-of-stream packet
            if packet.pts is None:
                raise PlayError("undecodable video: packets without timestamps",
                                kind="undecodable_video")
            if self._check_seek is not None:
                resumed = self._checked_seek(packet.pts)
                if resumed is not None:  # the seek overshot: back to where we were
                    demux = resumed
                    continue
            self._stats.packets += 1
            yield from self._scan(packet)
            self._buffer.append(packet)
            self._stats.max_held_packets = max(self._stats.max_held_packets, len(self._buffer))
            yield from self._decode_ready()

    def _reject_outside(self) -> Iterator[Result]:
        if self._duration_us is None:
            return
        inside = collections.deque()
        for play in self._todo:
            if play.clip.end_us > self._duration_us:
                yield play.clip.clip_id, PlayError(
                    f"{play.clip.describe()} ends after the end of the video "
                    f"({self._duration_us / 1e6:.3f} s)", kind="range_outside_video")
            else:
                inside.append(play)
        self._todo = inside

    def _should_seek(self) -> bool:
        if self._seek_gap is None or self._scanning or self._collecting or not self._todo:
            return False
        nxt = self._todo[0]
        if self._last_seek_lo is not None and nxt.lo <= self._last_seek_lo:
            return False  # already sought to this play
        here_us = self._us(self._position) if self._position is not None else 0
        return nxt.clip.start_us - here_us > self._seek_gap * 1e6

    def _seek(self, lo: int):
        """Seeks to the keyframe at or before pts `lo`; returns a new demux iterator."""
        self._check_seek = (lo, self._position if self._position is not None else self._t0)
        self._last_seek_lo = lo
        self._buffer.clear()
        self._codec.flush_buffers()
        self._fed_max = None
        self._container.seek(lo, stream=self._stream, backward=True, any_frame=False)
        self._stats.seeks += 1
        logger.debug("seek to the keyframe before %.3f s", self._us(lo) / 1e6)
        return self._container.demux(self._stream)

    def _checked_seek(self, first_pts: int):
        """After a seek, the first packet must not be past the play; else seek back to where we were."""
        lo, fallback = self._check_seek
        self._check_seek = None
        if first_pts <= lo:
            return None
        self._buffer.clear()
        self._codec.flush_buffers()
        self._container.seek(fallback, stream=self._stream, backward=True, any_frame=False)
        return self._container.demux(self._stream)

    def _scan(self, packet) -> Iterator[Result]:
        """Counts the packet into the plays it falls in; completes the counts its dts closes."""
        pts, dts = packet.pts, packet.dts
        self._position = pts if self._position is None else max(self._position, pts)
        while self._todo and self._todo[0].lo <= pts:
            self._scanning.append(self._todo.popleft())
        for play in self._scanning:
            if play.lo <= pts < play.hi:
                play.pts.append(pts)
        if dts is None:
            return
        # Later packets have pts >= their dts >= this dts: a play ending by it is fully counted.
        done = [play for play in self._scanning if play.hi <= dts]
        for play in done:
            self._scanning.remove(play)
            yield from self._sample(play)

    def _sample(self, play: _Play) -> Iterator[Result]:
        play.pts.sort()
        try:
            indices = sample_indices(len(play.pts), self._how.num_frames, self._how.pad_short)
        except PlayError as err:
            yield play.clip.clip_id, PlayError(f"{play.clip.describe()}: {err.reason}", err.kind)
            return
        play.wanted = [play.pts[i] for i in indices]
        play.pad_mode = self._how.pad_short if len(play.pts) < self._how.num_frames else ""
        self._collecting.append(play)
        held = len(self._scanning) + len(self._collecting)
        self._stats.max_held_plays = max(self._stats.max_held_plays, held)

    def _gate(self) -> float:
        """Frames before this pts belong to no play whose frame count is still unknown."""
        los = [play.lo for play in self._scanning]
        if self._todo:
            los.append(self._todo[0].lo)
        return min(los) if los else math.inf

    def _decode_ready(self) -> Iterator[Result]:
        gate = self._gate()
        while self._buffer:
            pts = self._buffer[0].pts
            top = pts if self._fed_max is None else max(self._fed_max, pts)
            if top >= gate:
                return
            self._fed_max = top
            yield from self._decode(self._buffer.popleft())

    def _decode(self, packet) -> Iterator[Result]:
        for frame in self._codec.decode(packet):
            self._stats.frames_decoded += 1
            if frame.pts is not None:
                yield from self._take(frame)

    def _take(self, frame) -> Iterator[Result]:
        """Keeps the frame for the plays that sampled it; yields the plays it completes."""
        jpeg = None
        for play in list(self._collecting):
            if frame.pts in play.wanted and frame.pts not in play.jpegs:
                if jpeg is None:
                    image = resize_image(frame.to_image(), self._how.size,
                                         self._how.resize_mode)
                    jpeg = encode_jpeg(image, self._how.jpeg_quality)
                play.jpegs[frame.pts] = jpeg
            if len(play.jpegs) == len(set(play.wanted)):
                self._collecting.remove(play)
                yield play.clip.clip_id, self._sampled(play)
            elif frame.pts >= play.hi:  # frames come in pts order: the missing ones never will
                self._collecting.remove(play)
                yield play.clip.clip_id, self._missing(play)

    def _sampled(self, play: _Play) -> SampledPlay:
        return SampledPlay(
            frames=[play.jpegs[q] for q in play.wanted],
            timestamps_us=[self._us(q) for q in play.wanted],
            source_num_frames=len(play.pts), frame_rate=self._fps, pad_mode=play.pad_mode)

    @staticmethod
    def _missing(play: _Play) -> PlayError:
        return PlayError(f"{play.clip.describe()}: undecodable video: decoded "
                         f"{len(play.jpegs)} of {len(set(play.wanted))} sampled frames",
                         kind="undecodable_video")

    def _finish(self) -> Iterator[Result]:
        """End of the file: count the plays still open, decode the rest, flush the decoder."""
        for play in self._scanning + list(self._todo):
            yield from self._sample(play)
        self._scanning, self._todo = [], collections.deque()
        while self._buffer:
            yield from self._decode(self._buffer.popleft())
        yield from self._decode(None)
        for play in self._collecting:
            yield play.clip.clip_id, self._missing(play)
        self._collecting = []


def cut_clips(path: str, clips: Sequence[Clip], how: FrameSampling, *,
              seek_gap: Optional[float] = DEFAULT_SEEK_GAP,
              stats: Optional[CutStats] = None) -> Iterator[Result]:
    """Yields (clip_id, SampledPlay or PlayError) for every clip, each as soon as it is done.

    The video at `path` is opened once and decoded forward once for all
    `clips` (ids unique, any order), each sampled as `how` says. `seek_gap=None`
    never seeks (decodes from the start). A video that cannot be read rejects
    every clip with the reason.
    """
    ids = [clip.clip_id for clip in clips]
    if len(set(ids)) != len(ids):
        raise ValueError("clip ids must be unique")
    stats = stats if stats is not None else CutStats()
    left: Dict[str, Clip] = {}
    for clip in clips:
        problem = range_problem(clip.start, clip.end)
        if problem:
            yield clip.clip_id, PlayError(problem, kind="bad_range")
        else:
            left[clip.clip_id] = clip
    if not left:
        return
    error = missing_video(path)
    if error is None:
        import av  # pylint: disable=g-import-not-at-top
        try:
            with files.open_read(path) as f:
                stats.opens += 1
                with av.open(f, mode="r") as container:
                    if not container.streams.video:
                        raise PlayError(f"no video stream in {path}", kind="undecodable_video")
                    stream = container.streams.video[0]
                    stream.thread_type = "AUTO"
                    cutter = _Cutter(container, stream, list(left.values()), how, seek_gap,
                                     stats)
                    for clip_id, result in cutter.run():
                        del left[clip_id]
                        yield clip_id, result
        except PlayError as err:
            error = err
        except (av.FFmpegError, EOFError, OSError, ValueError) as err:
            error = PlayError(f"undecodable video {path}: {err}", kind="undecodable_video")
    for clip_id in left:
        yield clip_id, error


def probe_duration(path: str) -> Optional[float]:
    """The video's duration in seconds from its container (None: unknown); PlayError when the
    file is missing or cannot be read as a video."""
    error = missing_video(path)
    if error is not None:
        raise error
    import av  # pylint: disable=g-import-not-at-top
    try:
        with files.open_read(path) as f, av.open(f, mode="r") as container:
            if not container.streams.video:
                raise PlayError(f"no video stream in {path}", kind="undecodable_video")
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * Fraction(stream.time_base))
            return container.duration / 1e6 if container.duration is not None else None
    except (av.FFmpegError, EOFError, OSError, ValueError) as err:
        raise PlayError(f"undecodable video {path}: {err}", kind="undecodable_video") from err


def video_duration(path: str) -> Optional[float]:
    """The video's duration in seconds from its container (None when unreadable or unknown)."""
    try:
        return probe_duration(path)
    except PlayError:
        return None


def read_clip(path: str, start: float, end: float, how: FrameSampling, **kwargs) -> SampledPlay:
    """The sampled frames of one play [start, end) of a video; raises PlayError."""
    ((_, result),) = list(cut_clips(path, [Clip("clip", start, end)], how, **kwargs))
    if isinstance(result, PlayError):
        raise result
    return result


__all__ = ["Clip", "CutStats", "DEFAULT_SEEK_GAP", "cut_clips", "probe_duration", "range_problem",
           "read_clip",
           "seconds_to_us", "video_duration"]
