"""Tests of the synthetic demo plays (beam_jobs/demo_plays.py)."""

import collections

import numpy as np
import pytest

from media import demo_plays

SIZE = 48  # small frames keep the tests fast


def test_shapes_dtypes_and_metadata():
    play = demo_plays.render_play(3, 14, num_frames=12, size=SIZE)
    assert play.frames.shape == (12, SIZE, SIZE, 3)
    assert play.frames.dtype == np.uint8
    assert play.label == demo_plays.DEMO_LABELS[14 % 11]
    assert play.play_id == "demo-3-00014"
    assert play.game_id == demo_plays.render_play(3, 10, num_frames=2, size=SIZE).game_id
    assert play.game_id != demo_plays.render_play(3, 20, num_frames=2, size=SIZE).game_id
    assert play.frame_rate == demo_plays.DEMO_FRAME_RATE
    default = demo_plays.render_play(0, 0)
    assert default.frames.shape == (40, demo_plays.DEMO_SOURCE_SIZE, demo_plays.DEMO_SOURCE_SIZE, 3)


def test_deterministic_per_seed_and_index():
    a = demo_plays.render_play(5, 7, num_frames=10, size=SIZE)
    b = demo_plays.render_play(5, 7, num_frames=10, size=SIZE)
    np.testing.assert_array_equal(a.frames, b.frames)
    other_seed = demo_plays.render_play(6, 7, num_frames=10, size=SIZE)
    other_index = demo_plays.render_play(5, 18, num_frames=10, size=SIZE)  # same label
    assert other_index.label == a.label
    assert not np.array_equal(a.frames, other_seed.frames)
    assert not np.array_equal(a.frames, other_index.frames)


def test_every_label_balanced():
    assert len(demo_plays.DEMO_LABELS) == len(set(demo_plays.DEMO_LABELS)) == 11
    counts = collections.Counter(demo_plays.label_of(i) for i in range(330))
    assert set(counts) == set(demo_plays.DEMO_LABELS)
    assert set(counts.values()) == {30}


@pytest.mark.parametrize("label", demo_plays.DEMO_LABELS)
def test_every_label_renders_a_court_with_players_and_ball(label):
    frames = demo_plays.render_label(label, np.random.default_rng(1), num_frames=8, size=64)
    rgb = frames.astype(int)
    wood = (np.abs(rgb - [196, 146, 92]).sum(-1) < 90).mean()
    ball = ((rgb[..., 0] > 200) & (rgb[..., 1] > 80) & (rgb[..., 1] < 160) & (rgb[..., 2] < 70))
    jersey = (rgb[..., 2] > 110) & (rgb[..., 0] < 80)  # the defense's blue
    assert wood > 0.2, "the court floor should fill much of the frame"
    assert ball.any(axis=(1, 2)).mean() > 0.5, "the ball should be visible in most frames"
    assert jersey.any(axis=(1, 2)).all(), "defenders should be visible in every frame"
    assert np.abs(np.diff(rgb, axis=0)).mean() > 0.5, "frames should move"


def test_misc_is_transition_backwards_so_order_matters():
    """Same frames, opposite order: no single frame tells the two labels apart."""
    forward = demo_plays.render_label("transition", np.random.default_rng(9), num_frames=10, size=SIZE)
    backward = demo_plays.render_label("misc", np.random.default_rng(9), num_frames=10, size=SIZE)
    np.testing.assert_array_equal(backward, forward[::-1])
    assert not np.array_equal(backward, forward)
    # The camera pans from the backcourt toward the basket: the paint (dark red) grows.
    rgb = forward.astype(int)
    paint = ((rgb[..., 0] > 110) & (rgb[..., 1] < 70) & (rgb[..., 2] < 80)).mean(axis=(1, 2))
    assert paint[-3:].mean() > paint[:3].mean() + 0.05


def test_pick_and_roll_labels_share_the_screen_then_differ(monkeypatch):
    """Both pick-and-roll scripts start with the same screen; only what follows differs.

    The play types also differ in zoom profile; give both the same one to compare the motion alone.
    """
    profiles = dict(demo_plays._ZOOM_PROFILES)
    profiles["pick_and_roll_roll_man"] = profiles["pick_and_roll_ball_handler"]
    monkeypatch.setattr(demo_plays, "_ZOOM_PROFILES", profiles)
    handler = demo_plays.render_label("pick_and_roll_ball_handler", np.random.default_rng(4),
                                      num_frames=20, size=SIZE).astype(float)
    roll = demo_plays.render_label("pick_and_roll_roll_man", np.random.default_rng(4),
                                   num_frames=20, size=SIZE).astype(float)
    early = np.abs(handler[:6] - roll[:6]).mean()
    late = np.abs(handler[-6:] - roll[-6:]).mean()
    assert late > 2 * early


def test_zoom_profiles_tell_types_apart_only_in_sequence():
    """Every play type has its own order of the same zoom levels (reversed misc included)."""
    profiles = demo_plays._ZOOM_PROFILES
    orders = list(profiles.values()) + [profiles[demo_plays.REVERSED_OF["misc"]][::-1]]
    assert len(set(orders)) == len(demo_plays.DEMO_LABELS)
    assert all(sorted(o) == sorted(orders[0]) for o in orders)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown demo label"):
        demo_plays.render_label("dunk", np.random.default_rng(0))
    with pytest.raises(ValueError, match="index"):
        demo_plays.render_play(0, -1)
    with pytest.raises(ValueError, match="num_frames"):
        demo_plays.render_play(0, 1, num_frames=0)
