"""Synthetic game videos: demo plays one after another in one h264 video, and their play-by-play.

Game g holds demo plays g*PLAYS_PER_GAME .. (g+1)*PLAYS_PER_GAME-1 of
`demo_data.plays` (the same play ids, labels and game ids), with dead-ball time
before, between and after them (`demo_data.dead_ball`: players drifting and
standing, free-throw and inbound set-ups, pans, close-ups and replays of the play
just run). Gaps run from a fraction of a second (plays that follow each other
closely) to several seconds. A manifest row per play gives its [start, end) in
seconds, and `dead_ball.csv` the dead-ball pieces (kind, start, end). The records job renders them with `--demo_game_videos=N`, so that the
path for plays cut from game videos (`media.video_clips`) runs with no data.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
from typing import Iterable, List, Tuple

import numpy as np

from demo_data import dead_ball
from demo_data import plays as demo_plays

GAP_SECONDS = (1.0, 6.0)  # dead-ball time before each play, drawn per gap
SHORT_GAP_SECONDS = (0.2, 0.6)  # ... or, this often, a play that follows the last closely
SHORT_GAP_SHARE = 0.25
GAME_GOP = 50  # frames between keyframes (2 s at 25 fps)
MANIFEST_NAME = "plays.csv"
MANIFEST_COLUMNS = ("play_id", "label", "path", "game_id", "start", "end")
DEAD_BALL_NAME = "dead_ball.csv"
DEAD_BALL_COLUMNS = ("path", "game_id", "kind", "start", "end")


@dataclasses.dataclass(frozen=True)
class GamePlay:
    """One row of a game's play-by-play: where a play is in its game video."""

    play_id: str
    label: str
    game_id: str
    start: float  # seconds
    end: float  # seconds, exclusive


@dataclasses.dataclass(frozen=True)
class DeadBall:
    """One piece of a game's dead-ball time."""

    game_id: str
    kind: str  # dead_ball.KINDS
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


def _gap_frames(rng: np.random.Generator, fps: int) -> int:
    low, high = SHORT_GAP_SECONDS if rng.random() < SHORT_GAP_SHARE else GAP_SECONDS
    return max(1, int(round(rng.uniform(low, high) * fps)))


def render_game(seed: int, game: int, *, num_frames: int = 40,
                plays_per_game: int = demo_plays.PLAYS_PER_GAME,
                size: int = demo_plays.DEMO_SOURCE_SIZE, profile: str = "default"
                ) -> Tuple[List[np.ndarray], List[GamePlay], List[DeadBall]]:
    """Game `game` of the demo set `seed`: its frames in pieces, its plays and its dead ball."""
    fps = int(demo_plays.DEMO_FRAME_RATE)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, game, 1])
    gaps = [_gap_frames(rng, fps) for _ in range(plays_per_game + 1)]
    table: List[GamePlay] = []
    dead: List[DeadBall] = []
    pieces: List[np.ndarray] = []
    position, previous, game_id = 0, None, demo_plays.game_id_of(game * plays_per_game)

    def add_gap(k: int) -> None:
        nonlocal position
        gap_rng = np.random.default_rng([seed & 0xFFFFFFFF, game, 2, k])
        kinds = dead_ball.draw_kinds(gap_rng, gaps[k], previous is not None, fps)
        for (kind, count), frames in zip(kinds, dead_ball.render_gap_pieces(
                kinds, gap_rng, size, profile=profile, previous=previous)):
            dead.append(DeadBall(game_id, kind, position / fps, (position + count) / fps))
            pieces.append(frames)
            position += count

    for k in range(plays_per_game):
        play = demo_plays.render_play(seed, game * plays_per_game + k, num_frames, size,
                                      profile=profile)
        add_gap(k)
        table.append(GamePlay(play.play_id, play.label, play.game_id, position / fps,
                              (position + num_frames) / fps))
        pieces.append(play.frames)
        position += num_frames
        previous = play.frames
    add_gap(plays_per_game)
    return pieces, table, dead


def write_game_video(path: str, seed: int, game: int, *, num_frames: int = 40,
                     plays_per_game: int = demo_plays.PLAYS_PER_GAME,
                     size: int = demo_plays.DEMO_SOURCE_SIZE,
                     profile: str = "default") -> List[GamePlay]:
    """Renders game `game` of the demo set `seed` to `path`; returns its play-by-play."""
    return write_game(path, seed, game, num_frames=num_frames, plays_per_game=plays_per_game,
                      size=size, profile=profile)[0]


def write_game(path: str, seed: int, game: int, **kwargs) -> Tuple[List[GamePlay], List[DeadBall]]:
    """Renders a game (see `render_game`) to `path`; returns its plays and dead-ball pieces."""
    pieces, table, dead = render_game(seed, game, **kwargs)
    write_h264(path, itertools.chain.from_iterable(pieces),
               fps=int(demo_plays.DEMO_FRAME_RATE))
    return table, dead


def write_demo_games(folder: str, num_games: int, seed: int = 0, *, num_frames: int = 40,
                     size: int = demo_plays.DEMO_SOURCE_SIZE, profile: str = "default") -> str:
    """Writes `num_games` game videos, their manifest (`plays.csv`) and their dead-ball pieces
    (`dead_ball.csv`) to `folder`; returns the manifest's path."""
    os.makedirs(folder, exist_ok=True)
    rows, dead_rows = [], []
    for game in range(num_games):
        name = f"demo-game-{game:04d}.mp4"
        table, dead = write_game(os.path.join(folder, name), seed, game,
                                 num_frames=num_frames, size=size, profile=profile)
        rows += [(play.play_id, play.label, name, play.game_id, f"{play.start:.6f}",
                  f"{play.end:.6f}") for play in table]
        dead_rows += [(name, piece.game_id, piece.kind, f"{piece.start:.6f}", f"{piece.end:.6f}")
                      for piece in dead]
    for name, columns, table_rows in ((MANIFEST_NAME, MANIFEST_COLUMNS, rows),
                                      (DEAD_BALL_NAME, DEAD_BALL_COLUMNS, dead_rows)):
        with open(os.path.join(folder, name), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(table_rows)
    return os.path.join(folder, MANIFEST_NAME)


__all__ = ["DeadBall", "GamePlay", "render_game", "write_h264", "write_game", "write_game_video",
           "write_demo_games"]
