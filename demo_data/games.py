"""Synthetic game videos: demo plays one after another in one h264 video, and their play-by-play.

Game g holds demo plays g*PLAYS_PER_GAME .. (g+1)*PLAYS_PER_GAME-1 of
`demo_data.plays` (the same play ids, labels and game ids), each preceded by a
dead-ball gap of dark frames, and a manifest row per play gives its [start, end)
in seconds. The records job renders them with `--demo_game_videos=N`, so that the
path for plays cut from game videos (`media.video_clips`) runs with no data.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
from typing import Iterable, List

import numpy as np

from demo_data import plays as demo_plays

GAP_SECONDS = (1.0, 3.0)  # dead-ball time before each play, drawn per gap
GAME_GOP = 50  # frames between keyframes (2 s at 25 fps)
MANIFEST_NAME = "plays.csv"
MANIFEST_COLUMNS = ("play_id", "label", "path", "game_id", "start", "end")
_GAP_COLOR = (24, 28, 36)


@dataclasses.dataclass(frozen=True)
class GamePlay:
    """One row of a game's play-by-play: where a play is in its game video."""

    play_id: str
    label: str
    game_id: str
    start: float  # seconds
    end: float  # seconds, exclusive


def write_h264(path: str, frames: Iterable[np.ndarray], *, fps: int = 25, gop: int = GAME_GOP,
               crf: int = 18, preset: str = "veryfast", pixel_format: str = "rgb24") -> str:
    """Encodes uint8 frames (`rgb24` [H, W, 3] or `yuv420p` [H*3/2, W]) as an h264 video.

    libx264 with a keyframe every `gop` frames; its presets from `veryfast` up
    use B-frames, so packets come in decode order, not pts order.
    """
    import av  # pylint: disable=g-import-not-at-top
    frames = iter(frames)
    first = next(frames)
    height = first.shape[0] * 2 // 3 if pixel_format == "yuv420p" else first.shape[0]
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = first.shape[1], height, "yuv420p"
        stream.options = {"g": str(gop), "crf": str(crf), "preset": preset}
        for array in itertools.chain([first], frames):
            frame = av.VideoFrame.from_ndarray(array, format=pixel_format)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_game_video(path: str, seed: int, game: int, *, num_frames: int = 40,
                     plays_per_game: int = demo_plays.PLAYS_PER_GAME,
                     size: int = demo_plays.DEMO_SOURCE_SIZE) -> List[GamePlay]:
    """Renders game `game` of the demo set `seed` to `path`; returns its play-by-play."""
    fps = int(demo_plays.DEMO_FRAME_RATE)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, game, 1])
    gaps = [int(round(rng.uniform(*GAP_SECONDS) * fps)) for _ in range(plays_per_game + 1)]
    gap_frame = np.empty((size, size, 3), np.uint8)
    gap_frame[:] = _GAP_COLOR
    table: List[GamePlay] = []
    segments = []
    position = 0
    for k in range(plays_per_game):
        play = demo_plays.render_play(seed, game * plays_per_game + k, num_frames, size)
        position += gaps[k]
        table.append(GamePlay(play.play_id, play.label, play.game_id, position / fps,
                              (position + num_frames) / fps))
        segments += [itertools.repeat(gap_frame, gaps[k]), play.frames]
        position += num_frames
    segments.append(itertools.repeat(gap_frame, gaps[-1]))
    write_h264(path, itertools.chain.from_iterable(segments), fps=fps)
    return table


def write_demo_games(folder: str, num_games: int, seed: int = 0, *, num_frames: int = 40,
                     size: int = demo_plays.DEMO_SOURCE_SIZE) -> str:
    """Writes `num_games` game videos and their manifest (`plays.csv`) to `folder`; returns its path."""
    os.makedirs(folder, exist_ok=True)
    rows = []
    for game in range(num_games):
        name = f"demo-game-{game:04d}.mp4"
        for play in write_game_video(os.path.join(folder, name), seed, game,
                                     num_frames=num_frames, size=size):
            rows.append((play.play_id, play.label, name, play.game_id, f"{play.start:.6f}",
                         f"{play.end:.6f}"))
    manifest = os.path.join(folder, MANIFEST_NAME)
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return manifest


__all__ = ["GamePlay", "write_h264", "write_game_video", "write_demo_games"]
