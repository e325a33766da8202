"""trainer.serving.export: model.keras, the raw-JPEG serving signature and its export card."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from schemas import export_card, play_record
from schemas.sampling import FrameSampling
from trainer.serving import export

SIZE = 32
NUM_FRAMES = 3
RECORD_FRAMES = 6
LABELS = ["cut", "handoff", "isolation"]


def tiny_model(num_classes=len(LABELS), seed=0):
    """Same contract as trainer.modeling.model.build_model: uint8 [B, T, H, W, 3] -> probabilities."""
    keras.utils.set_random_seed(seed)
    clips = keras.Input((None, SIZE, SIZE, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(clips)
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, strides=4, activation="relu"))(x)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
    x = keras.layers.GRU(4)(x)
    return keras.Model(clips, keras.layers.Dense(num_classes, activation="softmax")(x))


def random_clips(batch, frames, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth images keep JPEG error small; the comparison uses the decoded pixels anyway.
    base = rng.integers(0, 256, (batch, frames, 4, 4, 3)).astype(np.uint8)
    return np.repeat(np.repeat(base, SIZE // 4, axis=2), SIZE // 4, axis=3)


def to_jpeg(clips):
    return tf.constant([[tf.io.encode_jpeg(frame).numpy() for frame in clip] for clip in clips])


def decode(jpegs):
    return np.stack([[tf.io.decode_jpeg(j, channels=3).numpy() for j in clip]
                     for clip in jpegs.numpy()])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model()
    job_dir = str(tmp_path_factory.mktemp("job"))
    meta = export.export_model(model, job_dir, labels=LABELS, image_size=SIZE,
                               num_frames=NUM_FRAMES,
                               sampling=FrameSampling(num_frames=RECORD_FRAMES, height=SIZE * 2,
                                                      resize_mode="pad", frame_rate=25.0))
    loaded = tf.saved_model.load(meta["saved_model_dir"])
    return model, job_dir, meta, loaded


def test_signature_matches_keras_model(exported):
    model, _, _, loaded = exported
    serve = loaded.signatures["serving_default"]
    assert list(serve.structured_input_signature[1]) == ["clips"]
    jpegs = to_jpeg(random_clips(2, RECORD_FRAMES))
    out = serve(clips=jpegs)
    # Eval-time choice of 3 of 6 frames: stride 6 // 3 = 2, offset (6 - 5) // 2 = 0.
    expected = model(decode(jpegs)[:, [0, 2, 4]], training=False).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert out["probabilities"].shape == (2, len(LABELS))
    assert out["labels"].numpy().tolist() == [[l.encode() for l in LABELS]] * 2
    top = [LABELS[i].encode() for i in expected.argmax(axis=1)]
    assert out["top_label"].numpy().tolist() == top
    np.testing.assert_allclose(out["top_probability"].numpy(), expected.max(axis=1), atol=1e-5)


def test_signature_picks_centred_frames_from_a_longer_clip(exported):
    model, _, _, loaded = exported
    jpegs = to_jpeg(random_clips(1, 11, seed=1))
    out = loaded.signatures["serving_default"](clips=jpegs)
    # 11 frames, 3 wanted: stride 3, offset (11 - 7) // 2 = 2 -> frames 2, 5, 8.
    expected = model(decode(jpegs)[:, [2, 5, 8]], training=False).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)


def test_signature_repeats_the_last_frame_of_a_short_clip(exported):
    model, _, _, loaded = exported
    jpegs = to_jpeg(random_clips(1, 2, seed=2))
    out = loaded.signatures["serving_default"](clips=jpegs)
    expected = model(decode(jpegs)[:, [0, 1, 1]], training=False).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)


def test_signature_resizes_frames_of_another_size(exported):
    _, _, _, loaded = exported
    frames = np.random.default_rng(3).integers(0, 256, (1, 4, 48, 40, 3), dtype=np.uint8)
    out = loaded.signatures["serving_default"](clips=to_jpeg(frames))
    assert out["probabilities"].shape == (1, len(LABELS))
    assert out["probabilities"].numpy().sum() == pytest.approx(1.0, abs=1e-5)


def test_model_keras_reloads(exported):
    model, job_dir, meta, _ = exported
    assert meta["model_path"] == os.path.join(job_dir, "model.keras")
    reloaded = keras.models.load_model(meta["model_path"])
    clips = random_clips(2, NUM_FRAMES, seed=4)
    np.testing.assert_allclose(reloaded(clips).numpy(), model(clips).numpy(), atol=1e-6)


def test_metadata_is_written_and_found_from_job_dir_or_saved_model(exported):
    _, job_dir, meta, _ = exported
    saved_model_dir = os.path.join(job_dir, "saved_model")
    assert export.resolve_saved_model_dir(job_dir) == saved_model_dir
    assert export.resolve_saved_model_dir(saved_model_dir) == saved_model_dir
    with open(export.metadata_path(saved_model_dir)) as f:
        on_disk = export_card.ExportCard.from_json(f.read())
    for card in (on_disk, export.load_metadata(job_dir)):
        assert card.labels == LABELS
        assert card.image_size == [SIZE, SIZE]
        assert card.num_frames == NUM_FRAMES
        assert card.record_num_frames == RECORD_FRAMES
        # The records' sampling, at the model's frame size: what a client sends.
        assert card.sampling == FrameSampling(num_frames=RECORD_FRAMES, height=SIZE, width=SIZE,
                                              resize_mode="pad", frame_rate=25.0)
        assert (card.signature, card.input) == (export.SIGNATURE_NAME, export.INPUT_NAME)
        assert card.schema_version == play_record.SCHEMA_VERSION
    assert meta["labels"] == LABELS and meta["sampling"]["num_frames"] == RECORD_FRAMES


def test_export_card_of_an_earlier_version_is_read(tmp_path):
    """A playclips_export.json with flat sampling keys (export version 1) reads as the same card."""
    old = {"labels": LABELS, "image_size": [SIZE, SIZE], "num_frames": NUM_FRAMES,
           "record_num_frames": RECORD_FRAMES, "resize_mode": "pad", "pad_short": "loop",
           "jpeg_quality": 80, "frame_rate": None, "eval_views": 3, "eval_flip": True,
           "schema_version": play_record.SCHEMA_VERSION, "signature": "serving_default",
           "input": "clips"}
    path = export_card.card_path(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump(old, f)
    card = export_card.read(str(tmp_path))
    assert card.sampling == FrameSampling(num_frames=RECORD_FRAMES, height=SIZE, width=SIZE,
                                          resize_mode="pad", pad_short="loop", jpeg_quality=80)
    assert (card.num_frames, card.eval_views, card.eval_flip) == (NUM_FRAMES, 3, True)
    assert export_card.ExportCard.from_json(card.to_json()) == card
    with pytest.raises(export_card.SchemaError, match="re-export"):
        export_card.ExportCard.from_json(json.dumps(dict(old, schema_version=0)))
    with pytest.raises(export_card.SchemaError, match="export version 9"):
        export_card.ExportCard.from_json(json.dumps(dict(card.to_dict(), export_version=9)))


def test_missing_or_wrong_model_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.resolve_saved_model_dir(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        export.resolve_saved_model_dir(str(tmp_path))


def test_label_count_must_match_the_model(tmp_path):
    with pytest.raises(ValueError, match="3 outputs but 2 labels"):
        export.export_model(tiny_model(), str(tmp_path), labels=["a", "b"], image_size=SIZE,
                            num_frames=NUM_FRAMES)


def test_export_of_a_mirrored_strategy_model(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = tiny_model(seed=5)
    meta = export.export_model(model, str(tmp_path), labels=LABELS, image_size=(SIZE, SIZE),
                               num_frames=NUM_FRAMES)
    assert meta["sampling"]["num_frames"] == NUM_FRAMES
    loaded = tf.saved_model.load(meta["saved_model_dir"])
    jpegs = to_jpeg(random_clips(1, NUM_FRAMES, seed=6))
    out = loaded.signatures["serving_default"](clips=jpegs)
    expected = model(decode(jpegs), training=False).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)


def test_signature_on_stored_frames_matches_the_eval_pipeline(exported, tmp_path):
    """Raw record frames through the signature == the model on the reader's eval clips."""
    from demo_data import synthetic_records as record_fixtures
    from trainer.data import parsers, reader, sources
    model, _, _, loaded = exported
    record_fixtures.write_dataset(tmp_path, num_plays=3, num_frames=RECORD_FRAMES, size=SIZE,
                                  labels=LABELS, splits=("test",), num_shards=1, noise=8.0)
    files = sources.split_files(str(tmp_path), "test")
    dataset = reader.make_dataset(files, parsers.ClipParser(NUM_FRAMES, (SIZE, SIZE)),
                                  reader.ReaderConfig(3), training=False)
    clips, _ = next(iter(dataset))
    expected = model(clips, training=False).numpy()
    stored = [play_record.decode_play(r.numpy()).frames
              for r in tf.data.TFRecordDataset(files)]
    out = loaded.signatures["serving_default"](clips=tf.constant(stored))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)


def test_export_of_build_model(tmp_path):
    from trainer.modeling import model as model_lib
    model = model_lib.build_model(len(LABELS), image_size=(SIZE, SIZE), cut_layer="block1_pool",
                                  weights="none", rnn="gru", rnn_units=4)
    meta = export.export_model(model, str(tmp_path), labels=LABELS, image_size=SIZE,
                               num_frames=NUM_FRAMES,
                               sampling=FrameSampling(num_frames=RECORD_FRAMES))
    jpegs = to_jpeg(random_clips(2, RECORD_FRAMES, seed=7))
    out = tf.saved_model.load(meta["saved_model_dir"]).signatures["serving_default"](clips=jpegs)
    expected = model(decode(jpegs)[:, [0, 2, 4]], training=False).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-4)
    reloaded = keras.models.load_model(meta["model_path"])
    clips = decode(jpegs)[:, :NUM_FRAMES]
    np.testing.assert_allclose(reloaded(clips).numpy(), model(clips).numpy(), atol=1e-5)
