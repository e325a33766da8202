"""trainer.modeling.model: shapes, cuts, freezing, weights files, in-model preprocessing, save/load."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from backbone import vgg16  # noqa: E402
from trainer.modeling.config import HEADS  # noqa: E402
from trainer.modeling import heads  # noqa: E402
from trainer.modeling import model as model_lib  # noqa: E402
from trainer.serving import export  # noqa: E402
from schemas import features_card  # noqa: E402
from schemas.errors import UsageError  # noqa: E402

SIZE = (32, 32)


def tiny(num_classes=3, **kwargs):
    args = dict(image_size=SIZE, num_frames=None, cut_layer="block1_pool", weights="none",
                rnn_units=4, dropout=0.0, max_frames=8)
    args.update(kwargs)
    return model_lib.build_model(num_classes, **args)


def clips(batch=2, frames=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, frames, *SIZE, 3), dtype=np.uint8)


def test_layer_names_match_keras_vgg16():
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(*SIZE, 3))
    assert vgg16.vgg16_layer_names() == [layer.name for layer in base.layers[1:]]


@pytest.mark.parametrize("rnn,bidirectional", [("lstm", False), ("gru", True)])
def test_output_shapes_and_any_frame_count(rnn, bidirectional):
    model = tiny(num_classes=5, rnn=rnn, bidirectional=bidirectional)
    assert model.input.dtype == "uint8"
    assert tuple(model.input.shape) == (None, None, *SIZE, 3)
    for frames in (4, 7):
        probs = model(clips(frames=frames), training=False).numpy()
        assert probs.shape == (2, 5)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("cut,channels", [("block1_pool", 64), ("block2_conv2", 128), ("block3_pool", 256)])
def test_cut_layer(cut, channels):
    base = vgg16.build_base(cut, "none", SIZE)
    names = [layer.name for layer in base.layers]
    assert cut in names
    later = vgg16.vgg16_layer_names()[vgg16.vgg16_layer_names().index(cut) + 1:]
    assert not set(later) & set(names)
    assert base.output_shape == (None, channels)


def test_unknown_cut_layer_lists_valid_names():
    with pytest.raises(UsageError, match="block5_pool") as info:
        vgg16.build_base("block9_conv1", "none", SIZE)
    assert "--cut_layer='block9_conv1'" in str(info.value)


def test_default_fine_tune_from():
    assert model_lib.default_fine_tune_from("block5_pool") == "block5_conv1"
    assert model_lib.default_fine_tune_from("block3_conv2") == "block3_conv1"


def _conv_weights(model):
    base = model_lib.base_of(model)
    return {layer.name: [w.copy() for w in layer.get_weights()]
            for layer in base.layers if layer.get_weights()}


@pytest.mark.parametrize("trainable_from,changed", [
    ("none", set()),
    ("block2_conv1", {"block2_conv1", "block2_conv2"}),
    ("all", {"block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"}),
])
def test_freezing_one_real_train_step(trainable_from, changed):
    keras.utils.set_random_seed(1)
    model = tiny(num_classes=2, cut_layer="block2_pool", trainable_from=trainable_from)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    before = _conv_weights(model)
    head_before = model.get_layer("logits").get_weights()[0].copy()
    model.train_on_batch(clips(batch=4, frames=3), np.array([0, 1, 0, 1]))
    after = _conv_weights(model)
    moved = {name for name in before
             if not all(np.array_equal(b, a) for b, a in zip(before[name], after[name]))}
    assert moved == changed
    assert not np.array_equal(head_before, model.get_layer("logits").get_weights()[0])
    # TimeDistributed itself stays trainable; its trainable weights follow the base's layers.
    assert model.get_layer(model_lib.FEATURES_NAME).trainable
    assert len(model_lib.base_of(model).trainable_weights) == 2 * len(changed)


def test_unknown_trainable_from():
    with pytest.raises(UsageError, match="--trainable_from"):
        tiny(trainable_from="block5_conv1")  # cut at block1_pool: not in the base


def _known_vgg16(seed=7):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(*SIZE, 3))
    rng = np.random.default_rng(seed)
    vgg.set_weights([rng.normal(size=w.shape).astype("float32") for w in vgg.get_weights()])
    return vgg


@pytest.mark.parametrize("fmt", ["weights.h5", "legacy.h5"])
def test_weights_from_file(tmp_path, fmt):
    vgg = _known_vgg16()
    path = str(tmp_path / f"vgg16_notop.{fmt}")
    if fmt == "weights.h5":
        vgg.save_weights(path)
    else:  # the layout of the Keras applications download (by layer name)
        from keras.src.legacy.saving import legacy_h5_format
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, vgg)
    model = tiny(cut_layer="block2_conv2", weights=path)
    base = model_lib.base_of(model)
    for name in ("block1_conv1", "block2_conv2"):
        for loaded, saved in zip(base.get_layer(name).get_weights(), vgg.get_layer(name).get_weights()):
            np.testing.assert_array_equal(loaded, saved)


def test_weights_file_errors(tmp_path):
    with pytest.raises(vgg16.WeightsUnavailableError, match="no such file"):
        vgg16.build_base("block1_pool", str(tmp_path / "missing.h5"), SIZE)
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(vgg16.WeightsUnavailableError, match="not a VGG16 notop weights file"):
        vgg16.build_base("block1_pool", str(bad), SIZE)


def test_imagenet_unavailable_says_what_to_do(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(vgg16.WeightsUnavailableError) as info:
        vgg16.build_base("block1_pool", "imagenet", SIZE)
    message = str(info.value)
    for hint in (features_card.IMAGENET_WEIGHTS_FILE, ".keras/models", "--weights=PATH", "--weights=none"):
        assert hint in message


def test_preprocessing_inside_model_matches_keras():
    frames = clips(batch=1, frames=2)
    ours = vgg16.VGGPreprocess()(frames).numpy()
    expected = keras.applications.vgg16.preprocess_input(frames.astype("float32"))
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_stock_preprocessing_equals_the_custom_layer(policy):
    try:
        keras.mixed_precision.set_global_policy(policy)
        for shape in ((3, *SIZE, 3), (2, 4, *SIZE, 3)):  # frames and clips
            frames = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
            inputs = keras.Input(shape[1:], dtype="uint8")
            stock = keras.Model(inputs, vgg16.vgg_preprocess(inputs))
            custom = vgg16.VGGPreprocess()
            np.testing.assert_array_equal(np.asarray(stock(frames)), np.asarray(custom(frames)))
            assert stock.trainable_weights == []
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_stock_middle_frame_equals_the_custom_layer():
    features = keras.Input((None, 6))
    stock = keras.Model(features, heads.middle_frame(features))
    for frames in range(1, 10):
        x = _features(frames=frames, seed=frames)
        np.testing.assert_array_equal(np.asarray(stock(x)), np.asarray(heads.MiddleFrame()(x)))
        np.testing.assert_array_equal(np.asarray(stock(x)), x[:, frames // 2])


def test_head_registry_names_are_the_head_choices():
    assert tuple(heads.HEAD_BUILDERS) == tuple(HEADS)


def test_models_with_the_custom_layers_still_load(tmp_path):
    """A classifier saved with VGGPreprocess and MiddleFrame (registered) loads with this package."""
    keras.utils.set_random_seed(0)
    base = vgg16.build_base("block1_pool", "none", SIZE)
    inputs = keras.Input((None, *SIZE, 3), dtype="uint8")
    x = vgg16.VGGPreprocess(name="vgg_preprocess")(inputs)
    x = keras.layers.TimeDistributed(base, name=model_lib.FEATURES_NAME)(x)
    x = heads.MiddleFrame(name="middle_frame")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="logits")(x))
    path = str(tmp_path / "old.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = clips(frames=5)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)
    new = tiny(head="single_frame", feature_norm=False)
    frame_model, _ = model_lib.split_model(new)  # the stock preprocessing moves with the split
    assert frame_model(clips(batch=1, frames=2)[0]).shape == (2, 64)


def test_mixed_precision_policy():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = tiny()
        assert model.get_layer("vgg_preprocess").compute_dtype == "bfloat16"
        assert model(clips(), training=False).dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_keras_save_load_round_trip(tmp_path):
    model = tiny(rnn="gru", bidirectional=True)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)  # stock layers only
    x = clips(frames=5)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def _head_model(head, feature_dim=6, num_classes=3, seed=0, max_frames=8, **options):
    keras.utils.set_random_seed(seed)
    return model_lib.build_head_model(num_classes, feature_dim, head=head, rnn="gru",
                                      rnn_units=4, dropout=0.0, max_frames=max_frames, **options)


def _features(batch=2, frames=5, dim=6, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, frames, dim)).astype("float32")


@pytest.mark.parametrize("head", model_lib.HEADS)
def test_heads_shapes_and_safe_mode_round_trip(tmp_path, head):
    model = _head_model(head)
    for frames in (3, 8):
        probs = model(_features(frames=frames), training=False).numpy()
        assert probs.shape == (2, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    path = str(tmp_path / f"{head}.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)  # no Lambda layers
    x = _features(frames=7, seed=1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    full = tiny(head=head)  # on top of the base, from clips
    assert full(clips(frames=3), training=False).shape == (2, 3)


def test_order_agnostic_heads_cannot_tell_a_clip_from_its_reverse():
    x = _features(frames=6, seed=2)
    backwards = x[:, ::-1]
    mean_pool, rnn, single = _head_model("mean_pool"), _head_model("rnn"), _head_model("single_frame")
    np.testing.assert_allclose(mean_pool.predict(backwards, verbose=0),
                               mean_pool.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert np.abs(rnn.predict(backwards, verbose=0) - rnn.predict(x, verbose=0)).max() > 1e-3
    # single_frame sees frame T // 2 only: changing the others changes nothing.
    other = x.copy()
    other[:, [0, 1, 2, 4, 5]] = 0.0
    np.testing.assert_allclose(single.predict(other, verbose=0), single.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert np.abs(single.predict(x[:, ::-1], verbose=0) - single.predict(x, verbose=0)).max() > 1e-3
    for head in ("temporal_conv", "transformer"):  # the frames' order reaches the summary
        model = _head_model(head)
        reversed_, forward = model.predict(backwards, verbose=0), model.predict(x, verbose=0)
        assert np.abs(reversed_ - forward).max() > 1e-4


def test_unknown_head_names_the_choices():
    with pytest.raises(UsageError, match="--head='attention'.*rnn, mean_pool, single_frame"):
        _head_model("attention")


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_frame_positions_count_the_frames_for_any_count(policy):
    """Index t (+ 0.5, truncated by the Embedding) for T below, at and past max_frames, exact
    in float32 under mixed precision too (bfloat16 holds no 299.5)."""
    try:
        keras.mixed_precision.set_global_policy(policy)
        features = keras.Input((None, 3))
        positions = keras.Model(features, heads.frame_positions(features, 300))
        for frames in (1, 5, 300, 303):
            got = np.asarray(positions(_features(frames=frames, dim=3)))
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, np.tile(np.minimum(np.arange(frames), 299) + 0.5,
                                                       (2, 1)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_transformer_on_fewer_frames_uses_the_first_positions():
    """A clip of T < max_frames frames gets positions 0..T-1: the head built for 6 frames equals,
    on 3 frames, the head built for 3 with the same weights and the first 3 position rows."""
    long, short = _head_model("transformer", max_frames=6), _head_model("transformer", max_frames=3)
    for layer in short.layers:
        if layer.name == "frame_index":  # the counter: a kernel of max_frames fixed ones
            continue
        weights = long.get_layer(layer.name).get_weights()
        if layer.name == "position_embedding":
            weights = [weights[0][:3]]
        layer.set_weights(weights)
    x = _features(frames=3, seed=4)
    np.testing.assert_allclose(short.predict(x, verbose=0), long.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_transformer_needs_max_frames():
    with pytest.raises(UsageError, match="transformer head needs .*max_frames"):
        model_lib.build_head_model(3, 6, head="transformer", rnn_units=4)
    # A known frame count is enough: build_model(num_frames=...) sizes the positions.
    model = tiny(head="transformer", num_frames=4, max_frames=None)
    assert model.get_layer("position_embedding").get_weights()[0].shape == (4, 4)


@pytest.mark.parametrize("head,options", [
    ("temporal_conv", dict(head_layers=2, head_kernel_size=2)),
    ("transformer", dict(head_layers=2, head_heads=2)),
])
def test_new_heads_fit_export_and_reload_in_safe_mode(tmp_path, head, options):
    """A real fit, the trainer's export (trainer.serving.export), a safe_mode reload of
    model.keras: the same predictions, and the head's weights move from cached features to
    the classifier on clips (copy_head_weights)."""
    keras.utils.set_random_seed(0)
    model = tiny(num_classes=2, head=head, max_frames=4, **options)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    trained_before = [np.array(w) for w in model.trainable_weights]
    frozen_before = [np.array(w) for w in model.non_trainable_weights]
    history = model.fit(clips(batch=4, frames=4, seed=3), np.array([0, 1, 0, 1]), epochs=1,
                        batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(b, np.array(a))
               for b, a in zip(trained_before, model.trainable_weights))
    for b, a in zip(frozen_before, model.non_trainable_weights):  # the frame counter too
        np.testing.assert_array_equal(b, np.array(a))

    exported = export.export_model(model, str(tmp_path / "job"), labels=["a", "b"],
                                   image_size=SIZE, num_frames=4)
    loaded = keras.saving.load_model(exported["model_path"], safe_mode=True, compile=False)
    # Direct calls, not `predict`: a second frame count retraces predict with T unknown, and
    # Keras 3.15's TimeDistributed then maps over range(batch), not range(T) (any head).
    for frames in (4, 3):  # the exported frame count, and fewer
        x = clips(frames=frames, seed=5)
        np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                                   np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)

    on_features = _head_model(head, num_classes=2, feature_dim=64, max_frames=4, **options)
    model_lib.copy_head_weights(model, on_features)
    frame_model, _ = model_lib.split_model(model)
    x = clips(batch=1, frames=4, seed=6)
    features = np.asarray(frame_model(x[0]))[np.newaxis]
    np.testing.assert_allclose(np.asarray(on_features(features, training=False)),
                               np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)
