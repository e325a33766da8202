"""The one way a play becomes sampled JPEG frames: `sample_plays(plays, how)`.

The records job, the prediction job and `trainer.predict` all call it, with
the `schemas.sampling.FrameSampling` of the dataset card or of the export
card, so a model is fed a play exactly as its records were made. A whole play
(frame folder, glob, video file, demo play) is read by `media.frames.read_play`;
plays that are time ranges of a video are cut by `media.video_clips.cut_clips`,
one open and one forward decode per video. Every play gets a result, a
`SampledPlay` or a `PlayError` saying why not (an unexpected error too, kind
`unexpected_error`, logged with its traceback), so a caller never loses a play.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, TypeVar, Union

from media import frames, video_clips
from media.frames import PlayError, SampledPlay
from schemas.sampling import FrameSampling

logger = logging.getLogger(__name__)


class PlayMedia(Protocol):
    """Where a play's frames are (`beam_jobs.plays.PlaySpec` is one)."""

    play_id: str
    path: str
    start: Optional[float]  # seconds: the play is [start, end) of the video at `path`
    end: Optional[float]
    frame_rate: Optional[float]  # of a frame folder; None: the sampling's
    row: int  # where the play was listed (named when a duplicate is rejected)


@dataclasses.dataclass(frozen=True)
class Play:
    """A play given by hand (a command line's path, with a time range or not)."""

    path: str
    start: Optional[float] = None
    end: Optional[float] = None
    play_id: str = "play"
    frame_rate: Optional[float] = None
    row: int = 0


P = TypeVar("P", bound=PlayMedia)
Result = Union[SampledPlay, PlayError]


def where(play: PlayMedia) -> str:
    """The play's path, and its time range when it has one."""
    if play.start is not None:
        return f"{play.path} {play.start:.3f}-{play.end:.3f} s"
    return play.path


def unexpected(err: Exception) -> PlayError:
    """A PlayError for an error that no media check foresaw (a bug, or a library's surprise)."""
    return PlayError(f"unexpected error: {type(err).__name__}: {err}", kind="unexpected_error")


def sample_plays(plays: Sequence[P], how: FrameSampling,
                 stats: Optional[video_clips.CutStats] = None) -> Iterator[Tuple[P, Result]]:
    """Yields (play, SampledPlay or PlayError) for every play, each sampled as `how` says.

    Whole plays come first, in the given order; then the plays cut from each
    video, as they are done. Of plays of one video with the same time range
    the one of the lowest `row` is sampled and the others are rejected
    (`duplicate_clip`).
    `stats` (optional) counts the video opens and seeks of the cut plays.
    """
    by_video: Dict[str, List[P]] = {}
    for play in plays:
        if play.start is None:
            yield play, _read_whole(play, how)
        else:
            by_video.setdefault(play.path, []).append(play)
    for path, cut in by_video.items():
        yield from _cut(path, cut, how, stats if stats is not None else video_clips.CutStats())


def _read_whole(play: PlayMedia, how: FrameSampling) -> Result:
    try:
        return frames.read_play(play.path, how, frame_rate=play.frame_rate)
    except PlayError as err:
        return err
    except Exception as err:  # pylint: disable=broad-except
        logger.exception("play %s (%s) failed", play.play_id, play.path)
        return unexpected(err)


def _cut(path: str, plays: Sequence[P], how: FrameSampling,
         stats: video_clips.CutStats) -> Iterator[Tuple[P, Result]]:
    """The plays of one video in one forward decode; a play seen twice is rejected."""
    todo: Dict[str, P] = {}
    ranges: Dict[Tuple[int, int], P] = {}
    for play in sorted(plays, key=lambda p: (p.start, p.end, p.row)):
        key = (video_clips.seconds_to_us(play.start), video_clips.seconds_to_us(play.end))
        if key in ranges:  # the same play under another id
            yield play, PlayError(
                f"same time range as play {ranges[key].play_id!r} (row {ranges[key].row}) "
                f"of {where(play)}", kind="duplicate_clip")
            continue
        ranges[key] = todo[play.play_id] = play
    clips = [video_clips.Clip(p.play_id, p.start, p.end) for p in todo.values()]
    try:
        for play_id, result in video_clips.cut_clips(path, clips, how, stats=stats):
            yield todo.pop(play_id), result
    except Exception as err:  # pylint: disable=broad-except
        logger.exception("video %s failed", path)
        for play in todo.values():
            yield play, unexpected(err)


__all__ = ["Play", "PlayMedia", "sample_plays", "unexpected", "where"]
