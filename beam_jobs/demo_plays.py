"""Synthetic demo plays (placeholder renderer; the real one replaces the internals, same API)."""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

DEMO_LABELS: List[str] = [
    "cut", "handoff", "isolation", "off_screen", "pick_and_roll_ball_handler",
    "pick_and_roll_roll_man", "post_up", "putback", "spot_up", "transition", "misc",
]
DEMO_FRAME_RATE = 25.0
DEMO_SOURCE_SIZE = 128  # rendered size before the job resizes


@dataclasses.dataclass
class DemoPlay:
    play_id: str
    game_id: str
    label: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    frame_rate: float


def render_play(seed: int, index: int, num_frames: int = 40, size: int = DEMO_SOURCE_SIZE) -> DemoPlay:
    """Renders demo play `index` of the demo set `seed` (deterministic)."""
    rng = np.random.default_rng([seed, index])
    label_index = index % len(DEMO_LABELS)
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    frames[..., 1] = 90
    for t in range(num_frames):
        x = int((t / max(num_frames - 1, 1)) * (size - 8))
        y = int((label_index + 0.5) / len(DEMO_LABELS) * (size - 8))
        frames[t, y:y + 8, x:x + 8] = (255, 128, 0)
    frames = np.clip(frames.astype(np.int16) + rng.integers(-5, 6, frames.shape), 0, 255).astype(np.uint8)
    return DemoPlay(play_id=f"demo-{seed}-{index:05d}", game_id=f"demo-game-{index // 10:04d}",
                    label=DEMO_LABELS[label_index], frames=frames, frame_rate=DEMO_FRAME_RATE)
