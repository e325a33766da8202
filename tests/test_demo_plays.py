"""Tests of the synthetic demo plays (beam_jobs/demo_plays.py)."""

import collections

import numpy as np
import pytest

from demo_data import plays as demo_plays

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


# sha256 of render_play(0, i, num_frames=6, size=48).frames before profiles existed: the
# default profile must keep drawing the same plays (the demo's records stay byte-identical).
DEFAULT_SHA256 = {3: "66396b83115c39e8b5e483b93cde5fa97e0cae07b6f267b28f2c72918117a288",
                  10: "f581699539edb7ef001909efbfbaa9ff09b6c4e4147ec2721b5fcf4be9a99f37"}


@pytest.mark.parametrize("index", sorted(DEFAULT_SHA256))
def test_default_profile_draws_the_original_plays(index):
    import hashlib  # pylint: disable=g-import-not-at-top
    frames = demo_plays.render_play(0, index, num_frames=6, size=48).frames
    assert hashlib.sha256(frames.tobytes()).hexdigest() == DEFAULT_SHA256[index]
    weights = demo_plays.parse_label_weights("balanced")
    assert [demo_plays.label_of(i, weights) for i in range(22)] == \
        [demo_plays.label_of(i) for i in range(22)]


def test_hard_profile_keeps_misc_the_reverse_of_transition():
    forward = demo_plays.render_label("transition", np.random.default_rng(9), 10, SIZE, "hard")
    backward = demo_plays.render_label("misc", np.random.default_rng(9), 10, SIZE, "hard")
    np.testing.assert_array_equal(backward, forward[::-1])
    default = demo_plays.render_label("transition", np.random.default_rng(9), 10, SIZE)
    assert not np.array_equal(forward, default)
    again = demo_plays.render_play(2, 5, num_frames=6, size=SIZE, profile="hard").frames
    np.testing.assert_array_equal(again, demo_plays.render_play(2, 5, 6, SIZE, profile="hard").frames)


def test_hard_pick_and_roll_labels_differ_later_and_less(monkeypatch):
    """Under `hard` both pick-and-roll plays wait, then share the screen: they differ only late."""
    profiles = dict(demo_plays._ZOOM_PROFILES)
    profiles["pick_and_roll_roll_man"] = profiles["pick_and_roll_ball_handler"]
    monkeypatch.setattr(demo_plays, "_ZOOM_PROFILES", profiles)

    def pair(profile):
        return [demo_plays.render_label(label, np.random.default_rng(4), 20, SIZE, profile)
                .astype(float) for label in ("pick_and_roll_ball_handler", "pick_and_roll_roll_man")]

    hard, default = pair("hard"), pair("default")
    diff = [np.abs(a - b).mean(axis=(1, 2, 3)) for a, b in (hard, default)]
    assert diff[0][:6].mean() < 0.5 * diff[1][:6].mean() + 1e-9  # same for longer
    assert diff[0][-6:].mean() > 2 * diff[0][:6].mean()  # but still apart at the end


def test_label_weights_make_an_imbalanced_cycle():
    weights = demo_plays.parse_label_weights("imbalanced")
    cycle = sum(weights.values())
    counts = collections.Counter(demo_plays.label_of(i, weights) for i in range(3 * cycle))
    assert counts == {label: 3 * w for label, w in weights.items()}
    assert max(weights.values()) / min(weights.values()) == 20
    custom = demo_plays.parse_label_weights("cut=3, misc=2")
    assert custom["cut"] == 3 and custom["misc"] == 2 and custom["putback"] == 1
    first = [demo_plays.label_of(i, weights) for i in range(cycle)]
    assert len(set(first[:20])) >= 8  # spread over the cycle, not in runs
    play = demo_plays.render_play(0, 1, num_frames=2, size=SIZE, label_weights=weights)
    assert play.label == first[1]


@pytest.mark.parametrize("text,match", [("dunk=3", "demo label"), ("cut=0", "whole number"),
                                        ("cut=1.5", "whole number"), ("cut", "label=weight")])
def test_bad_label_weights_and_profile_are_usage_errors(text, match):
    from schemas.errors import UsageError  # pylint: disable=g-import-not-at-top
    with pytest.raises(UsageError, match=match):
        demo_plays.parse_label_weights(text)
    with pytest.raises(UsageError, match="default, hard"):
        demo_plays.profile_of("harder")


def test_play_path_round_trips_through_the_frame_reader():
    from media import frames  # pylint: disable=g-import-not-at-top
    assert demo_plays.play_path(3, 7) == "demo://3/7"
    path = demo_plays.play_path(3, 7, "hard", "cut")
    assert frames.parse_demo_path(path) == (3, 7, {"profile": "hard", "label": "cut"})
    assert frames.parse_demo_path("demo://3/7") == (3, 7, {})
    with pytest.raises(frames.PlayError, match="bad demo play path"):
        frames.parse_demo_path("demo://3/7?size=9")


def test_a_large_test_split_is_possible():
    """Demo plays come 10 to a game and splits go by game: 3,300 plays can hold 1,000+ test plays."""
    from beam_jobs import splits  # pylint: disable=g-import-not-at-top
    fractions = splits.parse_splits("train=0.57,val=0.1,test=0.33")
    assigned = [splits.assign_split(demo_plays.game_id_of(i), fractions) for i in range(3300)]
    test_labels = collections.Counter(demo_plays.label_of(i) for i in range(3300)
                                      if assigned[i] == "test")
    assert sum(test_labels.values()) >= 1000
    assert min(test_labels.values()) >= 90 and len(test_labels) == 11
    assert demo_plays.render_play(0, 19, num_frames=2, size=SIZE).game_id == demo_plays.game_id_of(10)
