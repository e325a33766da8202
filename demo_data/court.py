"""The demo's half court: its geometry and texture, and the scripted motion of players and ball.

Court coordinates are in units of 25 ft: x in [-1, 1] across the court, y from
the baseline (0) to half court (1.88). Each label's script says who moves
where and when the ball is passed, dribbled or shot; `demo_data.plays` renders
a script into frames.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

BASKET = np.array([0.0, 0.21])
HALF_COURT_Y = 1.88
VIEW_HALF = 0.72  # half the side of the square window at zoom 1 (court units)
_TEX_X = (-1.5, 1.5)  # texture extent (court units); outside is the apron colour
_TEX_Y = (-0.7, 3.9)
WOOD = np.array([196.0, 146.0, 92.0])
PAINT = np.array([150.0, 32.0, 42.0])
_LINE = np.array([245.0, 245.0, 240.0])
_APRON = np.array([60.0, 70.0, 90.0])
_RIM = np.array([235.0, 95.0, 20.0])


@functools.lru_cache(maxsize=8)
def court_masks(px_per_unit: float) -> Tuple[np.ndarray, ...]:
    """Boolean masks (paint, lines, apron, rim) and plank shading of the full court texture."""
    xs = np.arange(_TEX_X[0], _TEX_X[1], 1.0 / px_per_unit)
    ys = np.arange(_TEX_Y[0], _TEX_Y[1], 1.0 / px_per_unit)
    x, y = np.meshgrid(xs, ys)
    # Fold the far half onto the near one: the court is symmetric about half court.
    yf = np.where(y > HALF_COURT_Y, 2 * HALF_COURT_Y - y, y)
    w = 1.2 / px_per_unit  # line half width: ~1.2 px
    bx, by = x - BASKET[0], yf - BASKET[1]
    r_basket = np.hypot(bx, by)
    paint = (np.abs(x) <= 0.32) & (yf >= 0) & (yf <= 0.76)
    lines = np.zeros_like(paint)
    lines |= (np.abs(np.abs(x) - 0.32) <= w) & (yf >= 0) & (yf <= 0.76)  # lane lines
    lines |= (np.abs(yf - 0.76) <= w) & (np.abs(x) <= 0.32)  # free-throw line
    lines |= np.abs(np.hypot(x, yf - 0.76) - 0.24) <= w  # free-throw circle
    corner = (np.abs(np.abs(x) - 0.88) <= w) & (yf >= 0) & (yf <= 0.56)
    arc = (np.abs(r_basket - 0.95) <= w) & (yf > 0.56)
    lines |= corner | arc  # three-point line
    lines |= (np.abs(r_basket - 0.16) <= w) & (by > 0)  # restricted area
    lines |= np.abs(yf) <= w  # baseline
    lines |= np.abs(np.abs(x) - 1.0) <= w  # sidelines
    lines |= np.abs(y - HALF_COURT_Y) <= w  # half-court line
    lines |= np.abs(np.hypot(x, y - HALF_COURT_Y) - 0.24) <= w  # center circle
    apron = (np.abs(x) > 1.0 + w) | (y < -w) | (y > 2 * HALF_COURT_Y + w)
    rim = (np.abs(r_basket - 0.035) <= w) | ((np.abs(yf - 0.16) <= w) & (np.abs(x) <= 0.12))
    planks = 1.0 + 0.05 * np.sin(x * px_per_unit * np.pi / 3.0) + 0.03 * np.sin(17.0 * y + 5 * x)
    return paint, lines, apron, rim, planks, xs[0], ys[0]


@functools.lru_cache(maxsize=8)
def _court_layout(px_per_unit: float) -> Tuple[np.ndarray, np.ndarray]:
    """Per-texel material (0 wood, 1 paint, 2 line, 3 apron, 4 rim) and shading, float32."""
    paint, lines, apron, rim, planks, _, _ = court_masks(px_per_unit)
    material = np.select([rim, apron, lines, paint], [4, 3, 2, 1], 0).astype(np.int64)
    shade = np.where(material == 1, 0.5 + 0.5 * planks, np.where(material == 0, planks, 1.0))
    return material, shade.astype(np.float32)[..., None]


def court_texture(px_per_unit: float, wood: np.ndarray, paint_color: np.ndarray) -> np.ndarray:
    material, shade = _court_layout(px_per_unit)
    palette = np.stack([wood, paint_color, _LINE, _APRON, _RIM]).astype(np.float32)
    return np.clip(palette[material] * shade, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ scripts

# Spots on the right side (the strong side is mirrored per play).
TOP, WING, CORNER = (0.0, 1.3), (0.76, 0.95), (0.88, 0.12)
BLOCK, ELBOW, RIM_SPOT = (0.4, 0.32), (0.34, 0.8), (0.0, 0.3)

Track = List[Tuple[float, Tuple[float, float]]]  # [(time, (x, y))], piecewise linear


@dataclasses.dataclass
class Script:
    """One play's motion: player tracks, ball events and defender help (the camera follows the ball)."""

    offense: List[Track]
    ball: List[tuple]  # events: ("hold", i, t0) | ("pass", i, j, t0, t1, h) | ("shot", i, t0, t1, h)
    help_target: Tuple[float, float] = RIM_SPOT
    help: Dict[int, Track] = dataclasses.field(default_factory=dict)  # defender -> [(t, weight)]


def formation(rng: np.random.Generator) -> List[Tuple[float, float]]:
    """Start spots of the 5 offensive players: top, strong wing, weak wing, strong corner, big."""
    spots = [TOP, WING, (-WING[0], WING[1]), CORNER, BLOCK]
    return [(x + rng.normal(0, 0.04), y + rng.normal(0, 0.04)) for x, y in spots]


def _still(p: Tuple[float, float]) -> Track:
    return [(0.0, p)]


def _script_cut(rng, f):
    cutter = [(0.0, f[1]), (0.3, f[1]), (0.58, (0.08, 0.36))]
    big = [(0.0, f[4]), (0.1, f[4]), (0.32, (-0.55, 0.25))]  # clears the lane
    return Script([_still(f[0]), cutter, _still(f[2]), _still(f[3]), big],
                   [("hold", 0, 0.0), ("pass", 0, 1, 0.55, 0.66, 0.12), ("shot", 1, 0.74, 0.88, 0.3)])


def _script_handoff(rng, f):
    meet = (0.45, 1.02)
    giver = [(0.0, f[0]), (0.12, f[0]), (0.42, (meet[0] - 0.06, meet[1] + 0.03)), (0.5, (meet[0] - 0.06, meet[1] + 0.03)),
             (0.8, (-0.05, 1.3))]
    taker = [(0.0, f[1]), (0.2, f[1]), (0.42, (meet[0] + 0.07, meet[1] - 0.02)), (0.5, (meet[0] + 0.06, meet[1] - 0.02)),
             (0.8, ELBOW), (1.0, (ELBOW[0] - 0.05, ELBOW[1] - 0.05))]
    return Script([giver, taker, _still(f[2]), _still(f[3]), _still(f[4])],
                   [("hold", 0, 0.0), ("pass", 0, 1, 0.47, 0.5, 0.0), ("hold", 1, 0.5)])


def _script_isolation(rng, f):
    handler = [(0.0, f[0]), (0.62, (f[0][0] + 0.05, f[0][1] - 0.05)), (0.84, RIM_SPOT)]
    big = [(0.0, f[4]), (0.08, f[4]), (0.35, (0.9, 0.35))]
    wing = [(0.0, f[1]), (0.1, f[1]), (0.35, (0.9, 0.7))]
    weak = [(0.0, f[2]), (0.1, f[2]), (0.35, (-0.88, 0.4))]
    return Script([handler, wing, weak, _still(f[3]), big],
                   [("hold", 0, 0.0), ("shot", 0, 0.84, 0.96, 0.3)])


def _script_off_screen(rng, f):
    shooter = [(0.0, (-0.25, 0.22)), (0.15, (-0.25, 0.22)), (0.35, (0.3, 0.15)), (0.45, (0.7, 0.45)),
               (0.6, WING)]
    screener1 = [(0.0, f[4]), (0.2, (0.52, 0.38))]
    screener2 = [(0.0, f[3]), (0.2, (0.62, 0.6))]
    return Script([_still(f[0]), _still((-WING[0], WING[1])), shooter, screener2, screener1],
                   [("hold", 0, 0.0), ("pass", 0, 2, 0.58, 0.68, 0.1), ("shot", 2, 0.72, 0.9, 0.7)])


def _pick(f, t_screen=0.3, t_go=0.45) -> Tuple[Track, Track]:
    screen = (f[0][0] + 0.13, f[0][1] - 0.05)
    handler = [(0.0, f[0]), (t_go, f[0])]
    big = [(0.0, f[4]), (0.08, f[4]), (t_screen, screen), (t_go, screen)]
    return handler, big


def _script_pnr_ball_handler(rng, f):
    handler, big = _pick(f)
    handler += [(0.55, (-0.15, 1.05)), (0.74, RIM_SPOT)]
    big += [(0.7, (0.6, 1.15))]  # pops out
    return Script([handler, _still(f[1]), _still(f[2]), _still(f[3]), big],
                   [("hold", 0, 0.0), ("shot", 0, 0.76, 0.9, 0.35)],
                   help={4: [(0.0, 0.0), (0.5, 0.0), (0.65, 0.6)]})


def _script_pnr_roll_man(rng, f):
    handler, big = _pick(f)
    handler += [(0.6, (-0.35, 1.15))]
    big += [(0.68, RIM_SPOT)]
    return Script([handler, _still(f[1]), _still(f[2]), _still(f[3]), big],
                   [("hold", 0, 0.0), ("pass", 0, 4, 0.6, 0.72, 0.55), ("shot", 4, 0.74, 0.82, 0.12)],
                   help={0: [(0.0, 0.0), (0.5, 0.0), (0.65, 0.5)]})


def _script_post_up(rng, f):
    post = [(0.0, (0.44, 0.42)), (0.28, (0.44, 0.42)), (0.76, (0.14, 0.28))]
    return Script([_still(f[0]), _still(f[1]), _still(f[2]), _still(f[3]), post],
                   [("hold", 1, 0.0), ("pass", 1, 4, 0.14, 0.26, 0.15), ("shot", 4, 0.78, 0.92, 0.35)],
                   help={4: [(0.0, 0.3), (0.3, 0.6)]}, help_target=(0.1, 0.26))


def _script_putback(rng, f):
    crash = (rng.uniform(-0.15, 0.15), 0.3)
    big = [(0.0, f[4]), (0.25, f[4]), (0.45, crash)]
    wing = [(0.0, f[1]), (0.25, f[1]), (0.48, (0.25, 0.45))]
    return Script([_still(f[0]), wing, _still(f[2]), _still(f[3]), big],
                   [("hold", 0, 0.0), ("shot", 0, 0.08, 0.3, 0.7), ("pass", -1, 4, 0.3, 0.45, 0.35),
                    ("shot", 4, 0.55, 0.7, 0.3)],
                   help={i: [(0.0, 0.0), (0.25, 0.0), (0.45, 0.7)] for i in (0, 1, 3, 4)})


def _script_spot_up(rng, f):
    driver = [(0.0, f[0]), (0.06, f[0]), (0.34, (0.05, 0.45)), (0.6, (0.0, 0.5))]
    return Script([driver, _still(f[1]), _still(f[2]), _still(f[3]), _still(f[4])],
                   [("hold", 0, 0.0), ("pass", 0, 3, 0.42, 0.53, 0.1), ("shot", 3, 0.6, 0.82, 0.65)],
                   help={1: [(0.0, 0.0), (0.2, 0.0), (0.4, 0.7), (0.55, 0.7), (0.7, 0.2)],
                         2: [(0.0, 0.0), (0.2, 0.0), (0.4, 0.7)],
                         3: [(0.0, 0.0), (0.2, 0.0), (0.4, 0.6), (0.5, 0.6), (0.65, 0.0)],
                         4: [(0.0, 0.0), (0.2, 0.0), (0.4, 0.5)]})


def _script_transition(rng, f):
    offense = []
    for i, (x, y) in enumerate(f):
        start = (x * 0.7 + rng.normal(0, 0.08), y + 2.0 + rng.uniform(0.0, 0.5) + (0.0 if i else -0.3))
        offense.append([(0.0, start), (0.8 + rng.uniform(-0.05, 0.05), (x, y))])
    offense[0] = [(0.0, offense[0][0][1]), (0.8, (0.05, 0.5)), (0.86, RIM_SPOT)]
    return Script(offense, [("hold", 0, 0.0), ("shot", 0, 0.86, 0.97, 0.3)])


SCRIPTS: Dict[str, Callable[[np.random.Generator, list], Script]] = {
    "cut": _script_cut, "handoff": _script_handoff, "isolation": _script_isolation,
    "off_screen": _script_off_screen, "pick_and_roll_ball_handler": _script_pnr_ball_handler,
    "pick_and_roll_roll_man": _script_pnr_roll_man, "post_up": _script_post_up,
    "putback": _script_putback, "spot_up": _script_spot_up, "transition": _script_transition,
}
# Labels rendered as another label's play in reverse time order.
REVERSED_OF: Dict[str, str] = {"misc": "transition"}


def interp(track: Sequence[Tuple[float, Sequence[float]]], u: np.ndarray) -> np.ndarray:
    """Piecewise-linear (smoothstepped per segment) track at times u: [T, D]."""
    times = np.array([t for t, _ in track], float)
    values = np.array([v for _, v in track], float).reshape(len(track), -1)
    if len(track) == 1:
        return np.repeat(values, len(u), axis=0)
    seg = np.clip(np.searchsorted(times, u, side="right") - 1, 0, len(times) - 2)
    w = np.clip((u - times[seg]) / np.maximum(times[seg + 1] - times[seg], 1e-6), 0.0, 1.0)
    w = w * w * (3 - 2 * w)
    return values[seg] * (1 - w)[:, None] + values[seg + 1] * w[:, None]


def ball_track(events: list, offense: np.ndarray, u: np.ndarray, rng) -> np.ndarray:
    """Ball [T, 3] (x, y, height) from hold/pass/shot events over the player tracks [T, 5, 2]."""
    num = len(u)
    ball = np.zeros((num, 3))
    rim = np.array([BASKET[0], BASKET[1], 0.35])
    dribble = 0.04 * np.abs(np.sin(u * np.pi * rng.uniform(14, 20) + rng.uniform(0, np.pi)))
    carry = np.array([0.05, 0.02])
    for k, event in enumerate(events):
        end = next((e[2] if e[0] == "hold" else e[3] for e in events[k + 1:]), 2.0)
        if event[0] == "hold":
            _, who, t0 = event
            mask = (u >= t0) & (u < end)
            ball[mask, :2] = offense[mask, who] + carry
            ball[mask, 2] = dribble[mask]
            continue
        if event[0] == "pass":
            _, src, dst, t0, t1, peak = event
        else:  # shot at the rim, then the ball drops under it
            _, src, t0, t1, peak = event
            dst = None
        i0 = min(int(np.searchsorted(u, t0)), num - 1)
        start = rim.copy() if src < 0 else np.append(offense[i0, src] + carry, 0.05)
        mask = (u >= t0) & (u < end)
        w = np.clip((u[mask] - t0) / max(t1 - t0, 1e-6), 0, 1)
        target = (np.concatenate([offense[mask, dst] + carry, np.full((mask.sum(), 1), 0.05)], 1)
                  if dst is not None else np.broadcast_to(rim, (mask.sum(), 3)))
        ball[mask] = start * (1 - w)[:, None] + target * w[:, None]
        ball[mask, 2] += peak * 4 * w * (1 - w)
        if dst is None:  # after the shot: through the net and bouncing
            after = mask & (u >= t1)
            fall = np.clip((u[after] - t1) / 0.08, 0, 1)
            ball[after, :2] = BASKET + np.array([0.0, 0.06]) * fall[:, None]
            ball[after, 2] = 0.35 * (1 - fall) + 0.05 * np.abs(np.sin(fall * 9))
        ball[u >= end] = ball[mask][-1] if mask.any() else ball[u >= end]
    return ball


def defense_tracks(offense: np.ndarray, script: Script, u: np.ndarray, rng,
             marking: float = 0.13) -> np.ndarray:
    """Defenders [T, 5, 2]: between their man and the basket, sagging to help where scripted."""
    to_basket = BASKET - offense
    dist = np.linalg.norm(to_basket, axis=-1, keepdims=True)
    defense = offense + marking * to_basket / np.maximum(dist, 1e-6) * np.minimum(dist / 0.3, 1.0)
    defense = defense + rng.normal(0, 0.015, (1, 5, 2))
    for i, weights in script.help.items():
        w = interp([(t, (v,)) for t, v in weights], u)  # [T, 1]
        defense[:, i] = defense[:, i] * (1 - w) + np.asarray(script.help_target) * w
    return defense
