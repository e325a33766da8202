"""The no-play class: background clips cut from the time of each game video that no play covers.

A model that can only name plays labels every second of a game as some play; to
find plays it must also learn what is not one. For each game video with plays
given by start and end, this cuts clips of the reserved label (`no_play` by
default, `--no_play_label`): lengths drawn from that game's play lengths, placed
uniformly in the spans no play covers (rows that overlap each other are merged
first), and a share of hard negatives that overlap a play with temporal IoU
below 0.3 (the start or end of a play: what a detector must not call a play).
They take the split of their game's plays, so a game stays in one split, and
they are sampled like every play.

Shifted plays (`--shifted_plays=N`) teach the other side of the same boundary:
N more copies of each training play, cut from its range moved by up to
`max_shift` of its length (tIoU with the play at least (1 - s) / (1 + s): 0.54
at 0.3), under the play's own label. The timeline labels overlapping windows,
and a window that holds most of a play should name that play, not only the
window that happens to line up with it; between the shifted plays (tIoU >= 0.54)
and the hard negatives (< 0.3) the model draws the line, and the timeline's
detected plays then reach from about the first to about the last window whose
centre lies in the play (`trainer.serving.segments.detected_plays`). Only the
training split gets them: evaluation scores the plays as they are. A game with no span long enough gives no
clip and is counted (`no_play_no_free_span`); that is not an error.

Rows of the input labelled with the reserved label are background the user
marked (a detector's false plays mined with `trainer.timeline --plays`, or
detected plays corrected by hand): they are kept as clips of that label, and
neither shifted nor kept clear of.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

from beam_jobs.outputs import METRICS_NAMESPACE
from beam_jobs.plays import PlaySpec
from schemas.errors import UsageError
from trainer.evaluation.detection import BACKGROUND_TIOU, tiou

DEFAULT_LABEL = "no_play"
HARD_TIOU = BACKGROUND_TIOU  # a hard negative overlaps a play, with tIoU below this
GENERATED = "generated"  # the tagged output of the clips made here
Span = Tuple[float, float]


@dataclasses.dataclass(frozen=True)
class NoPlayConfig:
    """How many background clips per game video, and their label."""

    label: str = DEFAULT_LABEL
    per_game: int = 0  # clips per game video
    ratio: float = 0.0  # ... or this many per play of the video
    hard_share: float = 0.25  # the share of them that are hard negatives
    seed: int = 0
    shifted_per_play: int = 0  # shifted copies of each training play (its own label)
    max_shift: float = 0.3  # ... moved by up to this share of the play's length

    @property
    def enabled(self) -> bool:
        """Whether background clips of the reserved label are cut."""
        return self.per_game > 0 or self.ratio > 0

    @property
    def adds_clips(self) -> bool:
        """Whether the job adds any clip (background clips or shifted plays)."""
        return self.enabled or self.shifted_per_play > 0

    def clips_for(self, num_plays: int) -> int:
        return self.per_game if self.per_game else int(round(self.ratio * num_plays))


def parse_amount(text: str) -> Tuple[int, float]:
    """--no_play_clips: '0' (none), 'N' clips per game video, or 'Rx' (R per play) -> (N, R)."""
    text = (text or "0").strip().lower()
    match = re.fullmatch(r"(\d+)|(\d+(?:\.\d+)?)x", text)
    if not match:
        raise UsageError(f"--no_play_clips must be a whole number of clips per game video or a "
                         f"ratio to its plays such as 1x or 0.5x, got {text!r}")
    return (int(match.group(1)), 0.0) if match.group(1) else (0, float(match.group(2)))


def free_spans(duration: float, plays: Sequence[Span]) -> List[Span]:
    """The spans of [0, duration) that no play covers (overlapping plays merged)."""
    spans, position = [], 0.0
    for start, end in sorted(plays):
        if start > position:
            spans.append((position, min(start, duration)))
        position = max(position, end)
    if position < duration:
        spans.append((position, duration))
    return [(s, e) for s, e in spans if e > s]


def draw_clips(plays: Sequence[Span], duration: float, count: int, hard_share: float,
               rng: np.random.Generator) -> List[Tuple[float, float, bool]]:
    """Up to `count` background clips (start, end, is_hard): lengths like the plays', none
    overlapping any play with tIoU >= HARD_TIOU (free ones overlap none)."""
    if not plays or count <= 0:
        return []
    lengths = [e - s for s, e in plays]
    spans = free_spans(duration, plays)
    num_hard = int(round(count * hard_share))
    clips: List[Tuple[float, float, bool]] = []
    for k in range(count):
        hard = k < num_hard
        for _ in range(20):  # a few tries; a game with no room gives fewer clips
            length = float(rng.choice(lengths))
            clip = _hard_clip(plays, length, duration, rng) if hard else _free_clip(
                spans, length, rng)
            if clip is not None and tiou(clip, plays).max() < HARD_TIOU:
                clips.append((clip[0], clip[1], hard))
                break
    return sorted(clips)


def shifted_ranges(play: Span, duration: float, count: int, max_shift: float,
                   rng: np.random.Generator) -> List[Span]:
    """`count` copies of `play` moved by up to `max_shift` of its length, inside [0, duration)."""
    length = play[1] - play[0]
    ranges: List[Span] = []
    for _ in range(count):
        for _ in range(20):  # a play at the video's edge has room on one side only
            shift = float(rng.uniform(-max_shift, max_shift)) * length
            start, end = play[0] + shift, play[1] + shift
            if start >= 0 and end <= duration:
                ranges.append((start, end))
                break
    return ranges


def _free_clip(spans: Sequence[Span], length: float, rng) -> Optional[Span]:
    room = [(s, e) for s, e in spans if e - s >= length]
    if not room:
        return None
    weights = np.array([e - s - length + 1e-6 for s, e in room])
    s, e = room[int(rng.choice(len(room), p=weights / weights.sum()))]
    start = float(rng.uniform(s, e - length))
    return start, start + length


def _hard_clip(plays: Sequence[Span], length: float, duration: float, rng) -> Optional[Span]:
    play = plays[int(rng.integers(0, len(plays)))]
    play_length = play[1] - play[0]
    # tIoU = overlap / (length + play_length - overlap) < HARD_TIOU
    most = min(length, play_length, HARD_TIOU * (length + play_length) / (1 + HARD_TIOU))
    overlap = float(rng.uniform(0.2, 0.9)) * most
    start = play[1] - overlap if rng.random() < 0.5 else play[0] - length + overlap
    if start < 0 or start + length > duration:
        return None
    return start, start + length


class _AddClipsFn(beam.DoFn):
    """The plays of one game video -> themselves, and its background clips to GENERATED."""

    def __init__(self, config: NoPlayConfig):
        self._config = config
        self._no_room = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "no_play_no_free_span")
        self._shifted = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "shifted_plays")

    def process(self, keyed: Tuple[str, Iterable[PlaySpec]]):
        path, specs = keyed
        specs = sorted(specs, key=lambda s: (s.start, s.play_id))
        yield from specs
        from media import video_clips  # pylint: disable=g-import-not-at-top
        duration = video_clips.video_duration(path)
        if duration is None:  # unreadable: its plays are dead-lettered when they are cut
            return
        # Rows of the label itself (background the user marked, e.g. mined false plays) are
        # neither plays to keep clear of nor plays to shift.
        plays = [s for s in specs if s.label != self._config.label]
        ranges = [(s.start, s.end) for s in plays if s.end > s.start]
        rng = np.random.default_rng([self._config.seed, zlib.crc32(path.encode("utf-8"))])
        yield from self._shifted_plays(plays, duration, rng)
        if not self._config.enabled:
            return
        clips = draw_clips(ranges, duration, self._config.clips_for(len(plays)),
                           self._config.hard_share, rng)
        if not clips:
            self._no_room.inc()
        first = specs[0]
        base = first.game_id or re.sub(r"\W+", "_", path.rsplit("/", 1)[-1])
        for k, (start, end, hard) in enumerate(clips):
            yield beam.pvalue.TaggedOutput(GENERATED, PlaySpec(
                play_id=f"{base}-{self._config.label}-{'hard-' if hard else ''}{k:03d}",
                label=self._config.label, path=path, game_id=first.game_id, split=first.split,
                frame_rate=first.frame_rate, row=0, start=start, end=end))


    def _shifted_plays(self, specs: Sequence[PlaySpec], duration: float, rng):
        for spec in specs:
            if spec.split != "train" or not spec.end > spec.start:
                continue
            moved = shifted_ranges((spec.start, spec.end), duration,
                                   self._config.shifted_per_play, self._config.max_shift, rng)
            for k, (start, end) in enumerate(moved):
                self._shifted.inc()
                yield beam.pvalue.TaggedOutput(GENERATED, dataclasses.replace(
                    spec, play_id=f"{spec.play_id}-shifted-{k}", start=start, end=end, row=0))


class AddNoPlayClips(beam.PTransform):
    """Play specs -> (the same specs, the background clips and shifted plays of their game
    videos [GENERATED])."""

    def __init__(self, config: NoPlayConfig):
        super().__init__()
        self._config = config

    def expand(self, plays):
        ranged = plays | "Ranged" >> beam.Filter(lambda spec: spec.has_range)
        whole = plays | "Whole" >> beam.Filter(lambda spec: not spec.has_range)
        added = (ranged
                 | "KeyByVideo" >> beam.Map(lambda spec: (spec.path, spec))
                 | "GroupByVideo" >> beam.GroupByKey()
                 | "AddClips" >> beam.ParDo(_AddClipsFn(self._config)).with_outputs(
                     GENERATED, main="plays"))
        merged = (whole, added["plays"]) | "AllPlays" >> beam.Flatten()
        return merged, added[GENERATED]
