"""demo_data.games and demo_data.dead_ball: dead-ball time that looks like basketball, not dark frames."""

import csv
import os

import numpy as np
import pytest

from demo_data import dead_ball, games
from demo_data import plays as demo_plays

FPS = demo_plays.DEMO_FRAME_RATE


@pytest.fixture(scope="module")
def game():
    return games.render_game(3, 1, num_frames=8, plays_per_game=6, size=32)


def test_plays_and_dead_ball_tile_the_game(game):
    pieces, table, dead = game
    spans = sorted([(p.start, p.end, "play") for p in table] + [(d.start, d.end, d.kind) for d in dead])
    assert spans[0][0] == 0.0
    for (_, end, _), (start, _, _) in zip(spans, spans[1:]):
        assert start == pytest.approx(end)  # no hole, no overlap
    assert spans[-1][1] == pytest.approx(sum(len(p) for p in pieces) / FPS)
    assert len(table) == 6 and all(p.end - p.start == pytest.approx(8 / FPS) for p in table)
    assert {d.kind for d in dead} <= set(dead_ball.KINDS)


def test_gaps_range_from_a_fraction_of_a_second_to_seconds():
    gaps = []
    for g in range(6):
        _, table, dead = games.render_game(0, g, num_frames=8, plays_per_game=5, size=16)
        starts = [0.0] + [p.end for p in table]
        ends = [p.start for p in table] + [max(d.end for d in dead)]
        gaps += [e - s for s, e in zip(starts, ends)]
    assert min(gaps) >= games.SHORT_GAP_SECONDS[0] - 1 / FPS
    assert max(gaps) <= games.GAP_SECONDS[1] + 1 / FPS
    assert min(gaps) < 1.0 and max(gaps) > 3.0  # plays close together, and long breaks


def test_dead_ball_is_the_court_not_dark_frames(game):
    pieces, _, dead = game
    frames = np.concatenate(pieces)
    for piece in dead:  # the old gaps were one flat colour of mean brightness ~29
        middle = frames[int((piece.start + piece.end) / 2 * FPS)]
        assert middle.mean() > 80, piece
        assert middle.std() > 10, piece  # lines, players: not a flat colour


def test_a_replay_is_the_previous_play_slowed_and_zoomed():
    rng = np.random.default_rng(0)
    previous = np.random.default_rng(1).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    replay = dead_ball.render_gap("replay", rng, 6, 32, previous=previous)
    assert replay.shape == (6, 32, 32, 3)
    # Half speed: frames come in equal pairs, from the end of the play.
    assert np.array_equal(replay[0], replay[1]) and np.array_equal(replay[-2], replay[-1])
    assert not np.array_equal(replay[0], replay[2])
    without = dead_ball.render_gap("replay", np.random.default_rng(0), 4, 32)  # nothing to replay
    assert without.shape == (4, 32, 32, 3)


def test_every_kind_renders_deterministically():
    for kind in dead_ball.KINDS:
        a = dead_ball.render_gap(kind, np.random.default_rng(5), 5, 32, profile="hard",
                                 previous=np.zeros((4, 32, 32, 3), np.uint8))
        b = dead_ball.render_gap(kind, np.random.default_rng(5), 5, 32, profile="hard",
                                 previous=np.zeros((4, 32, 32, 3), np.uint8))
        assert a.shape == (5, 32, 32, 3) and np.array_equal(a, b), kind
    with pytest.raises(ValueError, match="unknown dead-ball kind"):
        dead_ball.render_gap("timeout", np.random.default_rng(0), 3, 32)


def test_write_demo_games_lists_plays_and_dead_ball(tmp_path):
    manifest = games.write_demo_games(str(tmp_path), 1, seed=2, num_frames=8, size=32)
    plays = list(csv.DictReader(open(manifest)))
    dead = list(csv.DictReader(open(os.path.join(tmp_path, games.DEAD_BALL_NAME))))
    assert len(plays) == demo_plays.PLAYS_PER_GAME and len(dead) > demo_plays.PLAYS_PER_GAME
    assert {row["path"] for row in dead} == {"demo-game-0000.mp4"}
    for row in dead:
        for play in plays:  # dead ball never overlaps a play
            overlap = min(float(row["end"]), float(play["end"])) - max(float(row["start"]),
                                                                      float(play["start"]))
            assert overlap <= 1e-6
