"""Synthetic demo plays: a half court, 10 players and a ball moving by play type.

Each label has its own motion script (who moves where, when the ball is passed,
dribbled or shot), varied per play by a generator seeded with (seed, index):
formation jitter, strong side (mirrored left/right), event timing and speed,
small camera pan/zoom/shake, colours and sensor noise. Rendering is numpy only.

Telling labels apart needs the sequence: `misc` (a turnover, everyone runs back
the other way) is exactly `transition` played backwards, so both hold the same
frames in opposite order; the two pick-and-roll labels share their first half
(the screen) and differ only in what happens after it.

Court coordinates are in units of 25 ft: x in [-1, 1] across the court, y from
the baseline (0) to half court (1.88); the basket is at the top of the image and
the broadcast-style camera follows the ball, zoomed in on the action.

Two knobs make harder sets: a rendering `Profile` (`PROFILES["hard"]`: stronger
camera motion, grain and blur, players that occlude each other, and scripts that
start later and move less, so labels differ later and less) and label weights
(`LABEL_WEIGHTS["imbalanced"]` or `label=weight,...`), which set how often each
label comes up. The default profile with equal weights is the original demo.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from demo_data.court import (PAINT, REVERSED_OF, SCRIPTS, VIEW_HALF, WOOD, Script, ball_track,
                             court_masks, court_texture, defense_tracks, formation, interp)
from schemas.errors import UsageError

DEMO_LABELS: List[str] = [
    "cut", "handoff", "isolation", "off_screen", "pick_and_roll_ball_handler",
    "pick_and_roll_roll_man", "post_up", "putback", "spot_up", "transition", "misc",
]
DEMO_FRAME_RATE = 25.0
DEMO_SOURCE_SIZE = 128  # rendered size before the job resizes
PLAYS_PER_GAME = 10


@dataclasses.dataclass
class DemoPlay:
    play_id: str
    game_id: str
    label: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    frame_rate: float


@dataclasses.dataclass(frozen=True)
class Profile:
    """How hard a demo set is to read: camera, image quality, occlusion and how much scripts differ."""

    shake: float = 0.006  # per-frame camera jitter (court units)
    offset: float = 0.05  # per-play camera offset range (court units)
    follow: float = 0.7  # how far the camera follows the ball (its path is a strong label cue)
    drift: float = 0.0  # per-frame step of a random walk of the camera (court units)
    zoom_course: float = 1.0  # fraction of the play type's zoom swing kept (its course is a cue)
    zoom_jitter: float = 0.0  # per-frame relative zoom jitter
    noise: Tuple[float, float] = (2.0, 6.0)  # sensor noise sigma range (fixed pattern, shifted)
    grain: Tuple[float, float] = (0.0, 0.0)  # per-frame coarse noise sigma range (4x4 px blocks)
    blur: int = 0  # box blur width in source pixels (0: none)
    motion_blur: float = 0.0  # weight of the previous frame blended into each frame
    player_scale: float = 1.0  # player radius multiplier (bigger players occlude each other)
    marking: float = 0.13  # defender's distance from his man toward the basket
    onset: float = 0.0  # fraction of the play before the script starts (everyone waits)
    movement: float = 1.0  # fraction of each player's scripted movement kept


PROFILES: Dict[str, Profile] = {
    "default": Profile(),
    "hard": Profile(shake=0.04, offset=0.2, follow=0.15, drift=0.012, zoom_course=0.0,
                    zoom_jitter=0.06, noise=(6.0, 12.0), grain=(14.0, 28.0), blur=5, motion_blur=0.35,
                    player_scale=1.5, marking=0.05, onset=0.4, movement=0.3),
}
# Named label weights (relative frequencies; labels left out weigh 1). imbalanced: 20:1 from
# spot_up down to cut and putback, the two least common labels.
LABEL_WEIGHTS: Dict[str, Dict[str, int]] = {
    "balanced": {},
    "imbalanced": {"spot_up": 20, "pick_and_roll_ball_handler": 15, "isolation": 11,
                   "transition": 8, "misc": 8, "pick_and_roll_roll_man": 6, "post_up": 5,
                   "off_screen": 3, "handoff": 2, "cut": 1, "putback": 1},
}


def profile_of(name: str) -> Profile:
    """The named rendering profile; UsageError naming the choices for an unknown one."""
    if name not in PROFILES:
        raise UsageError(f"unknown --demo_profile={name!r}: use one of {', '.join(PROFILES)}")
    return PROFILES[name]


def parse_label_weights(text: str) -> Dict[str, int]:
    """'imbalanced' | 'balanced' | '' | 'label=weight,...' -> {label: integer weight >= 1}.

    Every demo label gets a weight (1 unless named); UsageError for an unknown
    label or a weight that is not a whole number >= 1.
    """
    text = (text or "").strip()
    if text in LABEL_WEIGHTS or not text:
        named = LABEL_WEIGHTS.get(text, {})
        return {label: named.get(label, 1) for label in DEMO_LABELS}
    weights = {label: 1 for label in DEMO_LABELS}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        label, sep, value = part.partition("=")
        if not sep or label.strip() not in weights:
            raise UsageError(f"--demo_label_weights: expected label=weight with a demo label "
                             f"({', '.join(DEMO_LABELS)}) or one of {', '.join(LABEL_WEIGHTS)}, "
                             f"got {part!r}")
        if not value.strip().isdigit() or int(value) < 1:
            raise UsageError(f"--demo_label_weights: the weight of {label.strip()!r} must be a "
                             f"whole number >= 1, got {value.strip()!r}")
        weights[label.strip()] = int(value)
    return weights


# ------------------------------------------------------------------ drawing


def _disk_pixels(centers: np.ndarray, radii: np.ndarray, size: int, patch: int,
                 outline: float) -> Tuple[np.ndarray, ...]:
    """Pixels covered by disks: centers [T, K, 2] (x, y px), radii [T, K] -> flat indices.

    Returns (t, y, x, k, is_outline) for all covered in-image pixels, in
    (t, k) order so that later disks are painted over earlier ones.
    """
    num_t, num_k = radii.shape
    off = np.arange(patch) - patch // 2
    base = np.floor(centers).astype(np.int64)  # [T, K, 2]
    ys = base[..., 1, None, None] + off[None, None, :, None]  # [T, K, P, 1]
    xs = base[..., 0, None, None] + off[None, None, None, :]  # [T, K, 1, P]
    dist = np.hypot(ys + 0.5 - centers[..., 1, None, None], xs + 0.5 - centers[..., 0, None, None])
    inside = dist <= radii[..., None, None]
    inside &= (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
    ring = dist > (radii[..., None, None] - outline)
    t_idx, k_idx, py, px = np.nonzero(inside)
    return (t_idx, ys[t_idx, k_idx, py, 0], xs[t_idx, k_idx, 0, px], k_idx,
            ring[t_idx, k_idx, py, px])


def _jitter_color(rng, rgb, amount=14.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, float) + rng.uniform(-amount, amount, 3), 0, 255)


def _render(script: Script, rng: np.random.Generator, num_frames: int, size: int,
            side: float, zoom_profile: Sequence[float], profile: Profile = Profile()) -> np.ndarray:
    """The frames of one play, uint8 [T, size, size, 3].

    One straight pass (time warp, player and ball tracks, camera, then drawing
    each frame), longer than most functions here: its steps share a dozen
    per-frame arrays that helpers would only hand back and forth.
    """
    # Time warp: events shift and stretch a little per play.
    t = np.linspace(0.0, 1.0, num_frames)
    u = np.clip(rng.uniform(-0.05, 0.05) + rng.uniform(0.9, 1.1) * t, 0.0, 1.0)
    if profile.onset:  # everyone waits, then the script runs in the time left
        u = np.clip((u - profile.onset) / (1.0 - profile.onset), 0.0, 1.0)

    offense = np.stack([interp(track, u) for track in script.offense], axis=1)  # [T, 5, 2]
    if profile.movement != 1.0:  # shorter runs: plays differ less
        offense = offense[:1] + profile.movement * (offense - offense[:1])
    offense += np.cumsum(rng.normal(0, 0.006, offense.shape), axis=0)  # small wander
    offense[..., 0] *= side
    defense = defense_tracks(offense, script, u, rng, profile.marking)
    ball = ball_track(script.ball, offense, u, rng)

    # Camera: a broadcast view that follows the ball (smoothed), zoomed in on the action,
    # with per-play zoom and offset and a little shake.
    # Zoom follows the play type's profile (levels shared by all types, order not), so
    # the zoom of one frame says nothing about the label; its course over the play does.
    zoom = np.interp(u, np.linspace(0.0, 1.0, len(zoom_profile)), zoom_profile)
    if profile.zoom_course != 1.0:
        zoom = 1.0 + profile.zoom_course * (zoom - 1.0)
    half = VIEW_HALF * rng.uniform(0.95, 1.05) * zoom
    if profile.zoom_jitter:
        half = half * (1.0 + rng.normal(0, profile.zoom_jitter, num_frames))
    kernel = np.hanning(9)[1:-1]
    kernel /= kernel.sum()
    pad = len(kernel) // 2

    def smooth(v):
        return np.convolve(np.pad(v, pad, mode="edge"), kernel, mode="valid")

    shake, offset, follow = profile.shake, profile.offset, profile.follow
    cam_x = smooth(follow * ball[:, 0]) + rng.uniform(-offset, offset) + rng.normal(0, shake, num_frames)
    cam_y = smooth(follow * ball[:, 1] + 0.3 * 0.7) + rng.uniform(-offset, offset)
    cam_y = cam_y + rng.normal(0, shake, num_frames)
    if profile.drift:
        cam_x = cam_x + np.cumsum(rng.normal(0, profile.drift, num_frames))
        cam_y = cam_y + np.cumsum(rng.normal(0, profile.drift, num_frames))
    cam_x = np.clip(cam_x, -(1.05 - 0.8 * half), 1.05 - 0.8 * half)

    # Court: nearest-neighbour window of a texture at ~1 texel per output pixel.
    scale = size / (2 * VIEW_HALF)  # px per court unit at zoom 1
    px_per_unit = float(np.round(scale * 2.0) / 2.0)
    wood = WOOD * rng.uniform(0.9, 1.08) + rng.uniform(-8, 8, 3)
    tex = court_texture(px_per_unit, wood, _jitter_color(rng, PAINT, 10))
    x0, y0 = court_masks(px_per_unit)[5:7]
    grid = (np.arange(size) + 0.5) / size * 2 - 1  # [-1, 1]
    cols = np.clip(((cam_x[:, None] + grid * half[:, None]) - x0) * px_per_unit, 0,
                   tex.shape[1] - 1).astype(np.int64)
    rows = np.clip(((cam_y[:, None] + grid * half[:, None]) - y0) * px_per_unit, 0,
                   tex.shape[0] - 1).astype(np.int64)
    frames = tex[rows[:, :, None], cols[:, None, :]]  # [T, H, W, 3]

    def to_px(xy):  # court [T, K, 2] -> pixels [T, K, 2]
        left = (cam_x - half)[:, None]
        top = (cam_y - half)[:, None]
        ppu = (size / (2 * half))[:, None]
        return np.stack([(xy[..., 0] - left) * ppu, (xy[..., 1] - top) * ppu], axis=-1)

    ppu = size / (2 * half)
    lift = 0.35  # ball height -> upward shift on screen (court units per unit height)
    ball_xy = ball[:, None, :2] - np.stack([np.zeros(num_frames), lift * ball[:, 2]], -1)[:, None]
    # Layers in paint order: ball shadow, defense, offense, ball.
    shadow_px = to_px(ball[:, None, :2])
    shadow_r = np.where(ball[:, 2] > 0.06, 0.045 * ppu, 0.0)[:, None]
    players_px = to_px(np.concatenate([defense, offense], axis=1))
    body = 0.075 * profile.player_scale
    player_r = np.repeat((body * ppu)[:, None], 10, axis=1) * rng.uniform(0.92, 1.08, (1, 10))
    ball_px = to_px(ball_xy)
    ball_r = (0.042 * ppu * (1 + 1.3 * ball[:, 2]))[:, None]
    outline = max(1.0, size / 100.0)
    patch = int(np.ceil(2 * body * 1.1 * ppu.max())) + 3
    patch = max(patch, int(np.ceil(2 * ball_r.max())) + 3)

    t_i, y_i, x_i, _, _ = _disk_pixels(shadow_px, shadow_r, size, patch, 0.0)
    frames[t_i, y_i, x_i] = (frames[t_i, y_i, x_i] * 0.55).astype(np.uint8)
    fills = np.stack([_jitter_color(rng, (30, 55, 150))] * 5 + [_jitter_color(rng, (240, 240, 235))] * 5)
    fills = np.concatenate([fills, [_jitter_color(rng, (240, 120, 20), 10)]])
    edges = fills * 0.4
    edges[-1] = (90, 35, 10)
    centers = np.concatenate([players_px, ball_px], axis=1)
    radii = np.concatenate([player_r, ball_r], axis=1)
    t_i, y_i, x_i, k_i, ring = _disk_pixels(centers, radii, size, patch, outline)
    colors = np.where(ring[:, None], edges[k_i], fills[k_i]).astype(np.uint8)
    frames[t_i, y_i, x_i] = colors

    frames = _degrade(frames, rng, profile)
    # Sensor noise: one noise image, shifted per frame.
    noise = rng.normal(0, rng.uniform(*profile.noise), (size, size, 3)).astype(np.int16)
    shifts = rng.integers(0, size, num_frames)
    out = np.empty_like(frames)
    for k in range(num_frames):
        noisy = frames[k].astype(np.int16) + np.roll(noise, int(shifts[k]), axis=0)
        np.clip(noisy, 0, 255, out=noisy)
        out[k] = noisy
    return out


def render_script(script: Script, rng: np.random.Generator, num_frames: int, size: int,
                  side: float, zoom_profile: Sequence[float],
                  profile: str = "default") -> np.ndarray:
    """Frames uint8 [num_frames, size, size, 3] of any script (dead-ball time too), drawn as
    the plays are, with the named rendering profile."""
    return _render(script, rng, num_frames, size, side, zoom_profile, profile_of(profile))


def _degrade(frames: np.ndarray, rng: np.random.Generator, profile: Profile) -> np.ndarray:
    """Blur (box, then the previous frame blended in) and coarse grain; frames unchanged by default."""
    if not (profile.blur or profile.motion_blur or profile.grain[1]):
        return frames
    if profile.blur > 1:
        from PIL import Image, ImageFilter  # pylint: disable=g-import-not-at-top
        box = ImageFilter.BoxBlur(profile.blur / 2.0)  # radius r: a (2r + 1)-pixel box
        frames = np.stack([np.asarray(Image.fromarray(f).filter(box)) for f in frames])
    x = frames.astype(np.float32)
    if profile.motion_blur:
        x[1:] = (1 - profile.motion_blur) * x[1:] + profile.motion_blur * x[:-1]
    if profile.grain[1]:
        num, size = x.shape[0], x.shape[1]
        coarse = rng.normal(0, rng.uniform(*profile.grain), (num, -(-size // 4), -(-size // 4), 3))
        x += np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :size, :size]
    return np.clip(x, 0, 255).astype(np.uint8)


_ZOOM_LEVELS = (0.55, 0.8, 1.1, 1.5)  # view half-size multipliers: close-up .. wide


def _zoom_profiles() -> Dict[str, Tuple[float, ...]]:
    # One permutation of the same zoom levels per scripted play type, no two alike and none
    # the reverse of another (reversed plays, such as misc, must keep a profile of their own).
    free = list(itertools.permutations(_ZOOM_LEVELS))
    profiles = {}
    for i, name in enumerate(sorted(SCRIPTS)):
        order = free[(i * len(free)) // (len(SCRIPTS) - i) % len(free)]
        profiles[name] = order
        free = [o for o in free if o not in (order, order[::-1])]
    return profiles


_ZOOM_PROFILES = _zoom_profiles()


def label_of(index: int, weights: Optional[Mapping[str, int]] = None) -> str:
    """The label of demo play `index`: labels cycle so that every N plays are balanced.

    With `weights` ({label: whole number}, see `parse_label_weights`), each cycle of
    sum(weights) plays holds every label `weight` times, spread evenly over the cycle.
    """
    if not weights or len(set(weights.values())) == 1:
        return DEMO_LABELS[index % len(DEMO_LABELS)]
    cycle = _label_cycle(tuple(int(weights.get(label, 1)) for label in DEMO_LABELS))
    return cycle[index % len(cycle)]


@functools.lru_cache(maxsize=16)
def _label_cycle(weights: Tuple[int, ...]) -> Tuple[str, ...]:
    """Smooth weighted round robin: label k comes up weights[k] times, spread over the cycle."""
    credit = np.zeros(len(weights))
    cycle = []
    for _ in range(sum(weights)):
        credit += weights
        k = int(np.argmax(credit))
        credit[k] -= sum(weights)
        cycle.append(DEMO_LABELS[k])
    return tuple(cycle)


def render_label(label: str, rng: np.random.Generator, num_frames: int = 40,
                 size: int = DEMO_SOURCE_SIZE, profile: str = "default") -> np.ndarray:
    """Frames uint8 [num_frames, size, size, 3] of one play of `label`, drawn from `rng`."""
    if label not in DEMO_LABELS:
        raise ValueError(f"unknown demo label {label!r}: use one of {', '.join(DEMO_LABELS)}")
    if num_frames < 1 or size < 16:
        raise ValueError(f"need num_frames >= 1 and size >= 16, got {num_frames}, {size}")
    source = REVERSED_OF.get(label, label)
    side = 1.0 if rng.random() < 0.5 else -1.0
    script = SCRIPTS[source](rng, formation(rng))
    frames = _render(script, rng, num_frames, size, side, _ZOOM_PROFILES[source], profile_of(profile))
    return frames[::-1].copy() if label in REVERSED_OF else frames


def game_id_of(index: int) -> str:
    """The game of demo play `index`: PLAYS_PER_GAME consecutive plays share one (splits group by it)."""
    return f"demo-game-{index // PLAYS_PER_GAME:04d}"


def render_play(seed: int, index: int, num_frames: int = 40, size: int = DEMO_SOURCE_SIZE, *,
                profile: str = "default", label_weights: Optional[Mapping[str, int]] = None,
                label: Optional[str] = None) -> DemoPlay:
    """Renders demo play `index` of the demo set `seed` (deterministic).

    `label` (as `label_of(index, label_weights)` gave it) skips the label lookup.
    """
    if index < 0:
        raise ValueError(f"demo play index must be >= 0, got {index}")
    label = label or label_of(index, label_weights)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, index])
    frames = render_label(label, rng, num_frames, size, profile)
    return DemoPlay(play_id=f"demo-{seed}-{index:05d}", game_id=game_id_of(index),
                    label=label, frames=frames, frame_rate=DEMO_FRAME_RATE)


def play_path(seed: int, index: int, profile: str = "default", label: str = "") -> str:
    """The records' data_path of a demo play: demo://<seed>/<index>[?profile=P&label=L].

    Plays of the default profile and the balanced cycle keep the short form, so
    their records stay as they were; others carry what the reader needs.
    """
    path = f"demo://{seed}/{index}"
    query = [f"{k}={v}" for k, v in (("profile", profile if profile != "default" else ""),
                                    ("label", label)) if v]
    return path + ("?" + "&".join(query) if query else "")
