"""Dead-ball time between the plays of a demo game: what a broadcast shows when no play is on.

Not dark frames: the court with players drifting and standing, free-throw and
inbound set-ups, pans and close-ups, and replays of the play just run (slower
and zoomed: the hardest negative, it looks like a play but is not a new one).
Each kind is drawn with the plays' own renderer and profile, so that a model
cannot tell dead ball from play by the picture's look, only by what happens.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from demo_data import plays as demo_plays
from demo_data.court import ELBOW, TOP, WING, Script, Track, formation

KINDS: Tuple[str, ...] = ("drift", "free_throw", "inbound", "close_up", "replay")
# How often each kind fills a gap (a replay needs a previous play; without one, drift).
KIND_WEIGHTS: Dict[str, float] = {"drift": 0.35, "free_throw": 0.15, "inbound": 0.15,
                                  "close_up": 0.15, "replay": 0.2}
# Zoom courses (view half-size multipliers over the gap): wide pans and tight close-ups.
_ZOOMS: Dict[str, Tuple[float, ...]] = {
    "drift": (1.5, 1.3, 1.5, 1.3), "free_throw": (1.1, 1.1, 1.1, 1.1),
    "inbound": (1.3, 1.1, 1.1, 1.3), "close_up": (0.55, 0.5, 0.5, 0.55)}
FT_LINE = (0.0, 0.76)
LANE = [(-0.32, 0.3), (0.32, 0.3), (-0.32, 0.5), (0.32, 0.5)]


def _amble(rng: np.random.Generator, start: Tuple[float, float], reach: float) -> Track:
    """A player walking slowly from `start` to a nearby spot, or standing (reach 0)."""
    end = (start[0] + rng.normal(0, reach), start[1] + rng.normal(0, reach))
    return [(0.0, start), (rng.uniform(0.2, 0.5), start), (1.0, end)]


def _script(kind: str, rng: np.random.Generator) -> Script:
    if kind == "free_throw":
        spots = [FT_LINE] + [(x + rng.normal(0, 0.02), y + rng.normal(0, 0.02)) for x, y in LANE]
        return Script([_amble(rng, spots[0], 0.01)] + [_amble(rng, s, 0.02) for s in spots[1:]],
                      [("hold", 0, 0.0)])
    if kind == "inbound":
        passer = (rng.uniform(-0.6, 0.6), -0.08)  # out of bounds under the basket
        others = [TOP, WING, ELBOW, (-WING[0], WING[1])]
        return Script([_amble(rng, passer, 0.01)] + [_amble(rng, s, 0.12) for s in others],
                      [("hold", 0, 0.0)])
    spots = formation(rng)  # drift and close-up: the players walk about, the ball held
    return Script([_amble(rng, s, 0.15 if kind == "drift" else 0.05) for s in spots],
                  [("hold", int(rng.integers(0, 5)), 0.0)])


def _replay(previous: np.ndarray, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """The end of the previous play again, at half speed and zoomed on its centre."""
    slow = np.repeat(previous, 2, axis=0)
    start = max(0, len(slow) - num_frames)
    clip = slow[start:start + num_frames]
    if len(clip) < num_frames:  # longer than the slowed play: hold its last frame
        clip = np.concatenate([clip, np.repeat(clip[-1:], num_frames - len(clip), axis=0)])
    size = clip.shape[1]
    zoom = rng.uniform(0.6, 0.75)  # the part of the frame kept
    keep = max(8, int(round(size * zoom)))
    top = (size - keep) // 2 + int(rng.integers(-2, 3))
    top = int(np.clip(top, 0, size - keep))
    rows = top + (np.arange(size) * keep) // size
    return clip[:, rows][:, :, rows]


def render_gap(kind: str, rng: np.random.Generator, num_frames: int, size: int, *,
               profile: str = "default", previous: Optional[np.ndarray] = None) -> np.ndarray:
    """`num_frames` frames uint8 [T, size, size, 3] of dead-ball time of `kind`."""
    if kind not in KINDS:
        raise ValueError(f"unknown dead-ball kind {kind!r}: use one of {', '.join(KINDS)}")
    if num_frames < 1:
        return np.zeros((0, size, size, 3), np.uint8)
    if kind == "replay":
        if previous is None or not len(previous):
            kind = "drift"
        else:
            return _replay(previous, num_frames, rng)
    side = 1.0 if rng.random() < 0.5 else -1.0
    return demo_plays.render_script(_script(kind, rng), rng, num_frames, size, side,
                                    _ZOOMS[kind], profile)


def draw_kinds(rng: np.random.Generator, num_frames: int, has_previous: bool,
               fps: float) -> List[Tuple[str, int]]:
    """A gap of `num_frames` as pieces (kind, frames): one kind per piece of at most ~4 s."""
    names = [k for k in KINDS if has_previous or k != "replay"]
    weights = np.array([KIND_WEIGHTS[k] for k in names])
    pieces, left = [], num_frames
    while left > 0:
        take = min(left, int(rng.uniform(1.5, 4.0) * fps))
        if left - take < fps // 2:  # no sliver at the end
            take = left
        kind = str(rng.choice(names, p=weights / weights.sum()))
        pieces.append((kind, take))
        left -= take
    return pieces


def render_gap_pieces(pieces: Sequence[Tuple[str, int]], rng: np.random.Generator, size: int, *,
                      profile: str = "default",
                      previous: Optional[np.ndarray] = None) -> List[np.ndarray]:
    """The frames of each piece of a gap (see `draw_kinds`)."""
    return [render_gap(kind, rng, frames, size, profile=profile, previous=previous)
            for kind, frames in pieces]
