"""The trainer's input side (trainer/data/sources.py, clips.py, parsers.py, reader.py) and file systems."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from schemas import dataset_card, play_record
from schemas.errors import UsageError
from demo_data import synthetic_records as record_fixtures
from trainer.data import clips as clip_ops
from trainer.data import dataset_options, filesystems, parsers, reader, sources
from trainer.data import config as data_config


def _batches(ds):
    return [(clips.numpy(), labels.numpy()) for clips, labels in ds]


def _dataset(tmp_path, card, num_frames="card", augment=True, **overrides):
    parser = parsers.ClipParser(card.num_frames if num_frames == "card" else num_frames,
                                (card.height, card.width), augment)
    kwargs = dict(training=False, global_batch_size=4, compression=card.compression)
    kwargs.update(overrides)
    options = data_config.ReaderConfig(**{name: kwargs.pop(name) for name in
                                          ("global_batch_size", "seed", "shuffle_buffer")
                                          if name in kwargs})
    return reader.make_dataset(sources.split_files(str(tmp_path), "train", card), parser, options,
                               **kwargs)


# ------------------------------------------------------------------ shapes


def test_training_batches_have_static_shapes_and_dtypes(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=7, num_frames=6, size=(32, 40))
    ds = _dataset(tmp_path, card, training=True, global_batch_size=2, num_frames=4, seed=3)
    clips_spec, labels_spec = ds.element_spec
    assert clips_spec.shape.as_list() == [2, 4, 32, 40, 3] and clips_spec.dtype == tf.uint8
    assert labels_spec.shape.as_list() == [2] and labels_spec.dtype == tf.int32
    assert ds.options().autotune.enabled is False  # see dataset_options.without_autotune
    batches = _batches(ds)
    assert len(batches) == 3  # 7 plays, drop_remainder
    assert all(c.shape == (2, 4, 32, 40, 3) and c.dtype == np.uint8 for c, _ in batches)
    assert set(np.concatenate([l for _, l in batches])) <= {0, 1}


def test_eval_keeps_the_last_partial_batch_and_all_plays(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=7, num_frames=5, size=32)
    batches = _batches(_dataset(tmp_path, card, num_frames=None))
    assert [c.shape[0] for c, _ in batches] == [4, 3]
    assert batches[0][0].shape[1:] == (5, 32, 32, 3)
    labels = np.concatenate([l for _, l in batches])
    assert sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1, 1]


def test_repeat_yields_more_than_one_epoch(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=4, num_frames=4, size=32)
    ds = _dataset(tmp_path, card, training=True, global_batch_size=2, repeat=True, seed=0)
    assert len(_batches(ds.take(5))) == 5


# ------------------------------------------------------------ augmentation


@pytest.mark.parametrize("num_frames", [None, 6])  # tf.map_fn and unrolled decode paths
def test_augmentation_is_the_same_for_every_frame_of_a_clip(tmp_path, num_frames):
    card = record_fixtures.write_dataset(tmp_path, num_plays=4, num_frames=6, size=32, mode="static")
    source = {}
    for clips, labels in _batches(_dataset(tmp_path, card, num_frames=None)):
        for clip in clips:
            assert all(np.array_equal(frame, clip[0]) for frame in clip)
            source[clip[0].tobytes()] = clip[0]
    changed = 0
    for epoch in range(4):
        ds = _dataset(tmp_path, card, training=True, global_batch_size=2, seed=epoch,
                      num_frames=num_frames)
        for clips, _ in _batches(ds):
            for clip in clips:
                for frame in clip[1:]:
                    assert np.array_equal(frame, clip[0]), "frames of one clip augmented differently"
                changed += clip[0].tobytes() not in source
    assert changed >= 4, "augmentation never changed a clip"


def _shifted(clip, dy, dx, flip):
    """NumPy reference: zero-pad, crop back shifted by (dy, dx), maybe mirror."""
    out = np.zeros_like(clip)
    h, w = clip.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        clip[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out[:, :, ::-1] if flip else out


def test_augment_clip_matches_a_numpy_reference_and_is_reproducible():
    clip = np.random.default_rng(0).integers(1, 255, (3, 16, 24, 3)).astype(np.uint8)
    draws = set()
    for s in range(24):
        seed = tf.constant([s, 7])
        dy, dx, flip = (v.numpy() for v in clip_ops.draw_augmentation(16, 24, seed))
        assert abs(dy) <= 2 and abs(dx) <= 3
        draws.add((int(dy), int(dx), bool(flip)))
        out = clip_ops.augment_clip(tf.constant(clip), seed=seed).numpy()
        assert out.dtype == np.uint8 and np.array_equal(out, _shifted(clip, dy, dx, flip))
    assert len(draws) > 10 and {flip for _, _, flip in draws} == {True, False}


def test_fused_decode_and_augment_equals_decode_then_augment():
    # Noisy 4:2:0 JPEGs, shifts of up to half the frame: the decoded window starts
    # at 0, 16 and 32 px, so chroma upsampling at its edges would show if it leaked.
    frames = record_fixtures.play_frames(1, 4, 3, 48, 80, "square", play_seed=5, noise=30.0)
    jpegs = tf.constant([record_fixtures.encode_jpeg(f) for f in frames])
    decoded = clip_ops.decode_frames(jpegs, 48, 80)
    stored = (tf.constant(48, tf.int64), tf.constant(80, tf.int64))
    shifts = set()
    for s in range(40):
        seed = tf.constant([s, 3])
        dy, dx, _ = (v.numpy() for v in clip_ops.draw_augmentation(48, 80, seed, pad_fraction=0.5))
        shifts.add(int(dx))
        apart = clip_ops.augment_clip(decoded, seed=seed, pad_fraction=0.5).numpy()
        for stored_size in (None, stored):
            fused = clip_ops.decode_and_augment(jpegs, 48, 80, seed=seed, pad_fraction=0.5,
                                            stored_size=stored_size).numpy()
            assert np.array_equal(fused, apart), (s, dy, dx, stored_size is None)
    assert min(shifts) < -17 and max(shifts) > 17


def test_fused_decode_and_augment_resizes_frames_stored_at_another_size():
    frames = record_fixtures.play_frames(2, 4, 2, 40, 48, "square", play_seed=1, noise=4.0)
    jpegs = tf.constant([record_fixtures.encode_jpeg(f) for f in frames])
    seed = tf.constant([4, 2])
    stored = (tf.constant(40, tf.int64), tf.constant(48, tf.int64))
    fused = clip_ops.decode_and_augment(jpegs, 32, 32, seed=seed, stored_size=stored).numpy()
    apart = clip_ops.augment_clip(clip_ops.decode_frames(jpegs, 32, 32), seed=seed).numpy()
    assert fused.shape == (2, 32, 32, 3) and np.array_equal(fused, apart)


def test_eval_is_deterministic_and_unaugmented(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=6, num_frames=10, size=32, mode="index")
    first = _batches(_dataset(tmp_path, card, num_frames=4))
    second = _batches(_dataset(tmp_path, card, num_frames=4))
    for (c1, l1), (c2, l2) in zip(first, second):
        assert np.array_equal(c1, c2) and np.array_equal(l1, l2)
    for clips, _ in first:
        for clip in clips:
            # Centred, evenly spaced: stride 10 // 4 = 2, span 7, offset (10 - 7) // 2 = 1.
            assert record_fixtures.frame_indices(clip, 10).tolist() == [1, 3, 5, 7]
            # Flat gray frames: no crop/flip changed a pixel.
            assert all(frame.min() == frame.max() for frame in clip)


def test_unrolled_and_map_fn_decoding_agree(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=5, num_frames=4, size=32)
    unrolled = _batches(_dataset(tmp_path, card, num_frames=4))  # static T
    looped = _batches(_dataset(tmp_path, card, num_frames=None))  # T unknown: tf.map_fn
    for (c1, l1), (c2, l2) in zip(unrolled, looped, strict=True):
        assert np.array_equal(c1, c2) and np.array_equal(l1, l2)


# --------------------------------------------------------- frame selection


def _indices(selected):
    return [int(s) for s in selected.numpy()]


def test_frame_indices_eval_is_centred_and_evenly_spaced():
    assert _indices(clip_ops.frame_indices(40, 8)) == [2, 7, 12, 17, 22, 27, 32, 37]
    assert _indices(clip_ops.frame_indices(9, 3)) == [1, 4, 7]
    assert _indices(clip_ops.frame_indices(6, 4)) == [1, 2, 3, 4]
    assert _indices(clip_ops.frame_indices(5, None)) == [0, 1, 2, 3, 4]


def test_frame_indices_training_stays_in_range_with_a_regular_stride():
    seen_strides, seen_offsets = set(), set()
    for s in range(60):
        idx = _indices(clip_ops.frame_indices(20, 4, training=True, seed=tf.constant([s, 1])))
        steps = np.diff(idx)
        assert len(set(steps)) == 1 and 4 <= steps[0] <= 5  # S = 20 // 4, at least S - S // 4
        assert 0 <= idx[0] and idx[-1] <= 19
        seen_strides.add(int(steps[0]))
        seen_offsets.add(idx[0])
    assert seen_strides == {4, 5} and len(seen_offsets) > 3
    # Stateless seed: same seed, same frames; no seed: global generator, still in range.
    seed = tf.constant([5, 9])
    assert _indices(clip_ops.frame_indices(20, 4, True, seed)) == \
        _indices(clip_ops.frame_indices(20, 4, True, seed))
    assert max(_indices(clip_ops.frame_indices(20, 4, training=True))) <= 19


def test_frame_indices_pads_short_clips_with_the_last_frame_and_rejects_empty_ones():
    assert _indices(clip_ops.frame_indices(3, 5)) == [0, 1, 2, 2, 2]
    assert _indices(clip_ops.frame_indices(3, 5, True, tf.constant([1, 2]))) == [0, 1, 2, 2, 2]
    with pytest.raises(tf.errors.InvalidArgumentError, match="no frames"):
        clip_ops.frame_indices(0, 2)
    with pytest.raises(ValueError, match="num_frames"):
        clip_ops.frame_indices(3, 0)


def test_pipeline_decodes_the_chosen_frames(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=4, num_frames=12, size=32, mode="index")
    ds = _dataset(tmp_path, card, training=True, global_batch_size=2, num_frames=3, seed=11,
                  augment=False)
    for _ in range(3):
        for clips, _ in _batches(ds):
            for clip in clips:
                idx = record_fixtures.frame_indices(clip, 12)
                steps = np.diff(idx)
                assert steps[0] == steps[1] and 1 <= steps[0] <= 4
                assert 0 <= idx[0] and idx[-1] <= 11


def test_decode_frames_resizes_other_sizes():
    frames = [record_fixtures.encode_jpeg(np.full((40, 48, 3), v, np.uint8)) for v in (10, 200)]
    out = clip_ops.decode_frames(tf.constant(frames), 32, 32).numpy()
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    assert abs(int(out[0].mean()) - 10) <= 2 and abs(int(out[1].mean()) - 200) <= 2
    same = clip_ops.decode_frames(tf.constant(frames), 40, 48).numpy()
    assert same.shape == (2, 40, 48, 3)


def test_decode_frames_unrolled_and_looped_agree_on_mixed_sizes():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, shape).astype(np.uint8) for shape in
              [(32, 32, 3), (40, 48, 3), (32, 32, 3)]]
    jpegs = tf.constant([record_fixtures.encode_jpeg(image) for image in images])
    unrolled = clip_ops.decode_frames(jpegs, 32, 32).numpy()  # static T: one size check per clip

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def looped(frames):  # T unknown: tf.map_fn, one check per frame
        return clip_ops.decode_frames(frames, 32, 32)

    assert np.array_equal(unrolled, looped(jpegs).numpy())
    # A frame already at the size comes through untouched even when another one is resized.
    assert np.array_equal(unrolled[0], tf.io.decode_jpeg(jpegs[0]).numpy())


def test_augment_clip_takes_clips_of_unknown_length():
    clip = np.random.default_rng(2).integers(1, 255, (5, 16, 24, 3)).astype(np.uint8)
    seed = tf.constant([3, 4])

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 24, 3], tf.uint8)])
    def augment(c):
        return clip_ops.augment_clip(c, seed=seed)

    assert np.array_equal(augment(clip).numpy(), clip_ops.augment_clip(tf.constant(clip), seed=seed))


def test_stored_frames_of_another_size_are_resized_in_the_pipeline(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=2, num_frames=3, size=32,
                                         stored_size=(36, 44))
    (clips, _), = _batches(_dataset(tmp_path, card))
    assert clips.shape == (2, 3, 32, 32, 3)


# ---------------------------------------------------------------- sharding


def test_input_context_gives_pipelines_disjoint_shards_and_per_replica_batches(tmp_path):
    # Two shards, two labels: shard i holds only label i.
    card = record_fixtures.write_dataset(tmp_path, num_plays=8, num_frames=3, size=32, num_shards=2)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        ds = _dataset(tmp_path, card, training=True, global_batch_size=4, input_context=context,
                      seed=0)
        batches = _batches(ds)
        assert all(c.shape[0] == 2 for c, _ in batches)  # 4 global / 2 replicas
        labels = set(np.concatenate([l for _, l in batches]).tolist())
        assert len(labels) == 1
        seen.append(labels)
    assert seen[0].isdisjoint(seen[1])
    files = sources.split_files(str(tmp_path), "train", card)
    parts = [reader.shard_files(files, tf.distribute.InputContext(2, i, 2)) for i in range(2)]
    assert sorted(parts[0] + parts[1]) == files and not set(parts[0]) & set(parts[1])


def test_fewer_shards_than_pipelines_is_a_clear_error(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=2, num_frames=2, size=32, num_shards=1)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
    with pytest.raises(ValueError, match=r"1 shard\(s\) for 2 input pipelines.*--num_shards"):
        _dataset(tmp_path, card, training=True, input_context=context)


def _config(**values):
    from trainer.data.config import DataConfig
    return DataConfig(**values)


def test_distribute_datasets_from_function_through_resolved_inputs(tmp_path):
    record_fixtures.write_dataset(tmp_path, num_plays=4, num_frames=6, size=32, splits=("train", "val"))
    resolved = sources.resolve_play_source(_config(data_dir=str(tmp_path), num_frames=4))
    assert (resolved.num_frames, resolved.image_size) == (4, (32, 32))
    assert resolved.labels == ["pick_and_roll", "isolation"] and resolved.compression == "none"
    assert resolved.counts == {"train": 4, "val": 4, "test": 0}
    strategy = tf.distribute.get_strategy()
    parser = parsers.ClipParser(resolved.num_frames, resolved.image_size)
    dist = strategy.distribute_datasets_from_function(reader.dataset_fn(
        resolved, "train", parser, data_config.ReaderConfig(2, seed=1), training=True))
    clip_batch, labels = next(iter(dist))
    assert clip_batch.shape == (2, 4, 32, 32, 3) and labels.dtype == tf.int32
    eval_batches = _batches(reader.read(resolved, "val", parser, data_config.ReaderConfig(4),
                                        training=False))
    assert eval_batches[0][0].shape == (4, 4, 32, 32, 3)
    with pytest.raises(UsageError, match="num_frames=9 but the records hold 6"):
        sources.resolve_play_source(_config(data_dir=str(tmp_path), num_frames=9))


def test_explicit_file_globs(tmp_path):
    record_fixtures.write_dataset(tmp_path, num_plays=4, num_frames=2, size=32, splits=("train", "val"))
    train = sources.match_files(f"{tmp_path}/train-*, {tmp_path}/train-00000-*")
    assert [os.path.basename(f) for f in train] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    for path in tmp_path.glob("*.tfrecord"):
        path.rename(other / path.name)
    resolved = sources.resolve_play_source(_config(
        train_files=f"{other}/train-*", eval_files=f"{other}/val-*", num_frames=2, height=32,
        width=32, labels=["a", "b"]))
    assert len(resolved.files["val"]) == 2 and resolved.counts["val"] == 4
    with pytest.raises(UsageError, match="give --height and --width"):
        sources.resolve_play_source(_config(train_files=f"{other}/train-*", labels=["a", "b"]))


# ------------------------------------------------------------ error cases


def test_no_matching_files_and_missing_card_are_clear_errors(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=2, num_frames=2, size=32)
    with pytest.raises(ValueError, match="no file matches"):
        sources.match_files(str(tmp_path / "*.nothing"))
    with pytest.raises(ValueError, match="no shard of split 'test'"):
        sources.split_files(str(tmp_path), "test", card)
    with pytest.raises(UsageError, match="records job's --output_dir"):
        sources.load_card(str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="no input files"):
        reader.make_dataset([], parsers.ClipParser(2, (32, 32)), data_config.ReaderConfig(1),
                            training=False)


def test_card_of_another_schema_version_is_rejected(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=2, num_frames=2, size=32)
    card.schema_version = play_record.SCHEMA_VERSION + 1
    (tmp_path / dataset_card.CARD_NAME).write_text(card.to_json())
    with pytest.raises(play_record.SchemaError, match="schema version 2, this code reads version 1"):
        sources.load_card(str(tmp_path))


def test_check_files_accepts_play_records_and_empty_shards(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=1, num_frames=2, size=32, num_shards=3)
    files = sources.split_files(str(tmp_path), "train", card)
    assert len(files) == 3  # two of them empty
    sources.check_files(files, card.compression)


def test_check_files_rejects_a_text_file(tmp_path):
    path = tmp_path / "notes.tfrecord"
    path.write_text("this is not a record file\n" * 20)
    with pytest.raises(ValueError, match="notes.tfrecord.*not a TFRecord file.*compression"):
        sources.check_files([str(path)], "none")


def test_check_files_rejects_an_example_of_another_layout(tmp_path):
    example = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
    path = record_fixtures.write_records(str(tmp_path / "other.tfrecord"), [example.SerializeToString()])
    with pytest.raises(play_record.SchemaError, match="other.tfrecord.*not a playclips play record"):
        sources.check_files([path], "none")


@pytest.mark.parametrize("frame, message", [
    (record_fixtures.encode_jpeg(np.zeros((24, 32, 3), np.uint8)), "states 32x32 frames .* is 24x32"),
    (b"\x89PNG not a jpeg", "not a JPEG"),
])
def test_check_files_rejects_frames_unlike_the_record_states(tmp_path, frame, message):
    record = play_record.PlayRecord(play_id="p", label="a", label_index=0, frames=[frame],
                                    timestamps_us=[0], height=32, width=32)
    path = record_fixtures.write_records(str(tmp_path / "odd.tfrecord"),
                                         [play_record.encode_play(record)])
    with pytest.raises(play_record.SchemaError, match="odd.tfrecord.*" + message):
        sources.check_files([path], "none")


def _record_of_version(version):
    record = play_record.PlayRecord(
        play_id="p", label="a", label_index=0,
        frames=[record_fixtures.encode_jpeg(np.zeros((32, 32, 3), np.uint8))], timestamps_us=[0],
        height=32, width=32)
    seq = tf.train.SequenceExample.FromString(play_record.encode_play(record))
    values = seq.context.feature[play_record.SCHEMA_VERSION_KEY].int64_list.value
    values[:] = [version]
    return seq.SerializeToString()


def test_schema_version_mismatch_names_both_versions(tmp_path):
    path = record_fixtures.write_records(str(tmp_path / "v2.tfrecord"), [_record_of_version(2)])
    with pytest.raises(play_record.SchemaError, match=r"version 2, this code reads version 1"):
        sources.check_files([path], "none")
    # Without the check, the pipeline itself still stops with the schema's message.
    ds = reader.make_dataset([path], parsers.ClipParser(1, (32, 32)), data_config.ReaderConfig(1),
                             training=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="schema version mismatch"):
        _batches(ds)


def test_gzip_shards(tmp_path):
    card = record_fixtures.write_dataset(tmp_path, num_plays=5, num_frames=3, size=32, compression="gzip")
    files = sources.split_files(str(tmp_path), "train", card)
    assert all(f.endswith(".tfrecord.gz") for f in files)
    sources.check_files(files, card.compression)
    batches = _batches(_dataset(tmp_path, card, training=True, global_batch_size=2, seed=0))
    assert len(batches) == 2 and batches[0][0].shape == (2, 3, 32, 32, 3)
    with pytest.raises(ValueError, match="compression='none'"):
        sources.check_files(files, "none")
    with pytest.raises(ValueError, match="unknown compression"):
        filesystems.compression_type("lz4")


# ------------------------------------------------------------- file systems


def test_local_and_gs_paths_need_no_extra_file_system():
    filesystems.ensure_filesystem("/tmp/x")
    filesystems.ensure_filesystem("gs://bucket/records")
    assert "gs" in tf.io.gfile.get_registered_schemes()


def test_s3_hdfs_az_load_tensorflow_io():
    for path in ("s3://bucket/records", "hdfs://namenode/records", "az://account/container/x"):
        filesystems.ensure_filesystem(path)
    schemes = tf.io.gfile.get_registered_schemes()
    assert {"s3", "hdfs", "az"} <= set(schemes)


def test_file_system_errors_are_clear(monkeypatch):
    with pytest.raises(UsageError, match="unknown file system 'ftp://'"):
        filesystems.ensure_filesystem("ftp://host/x")
    monkeypatch.setitem(sys.modules, "tensorflow_io", None)  # makes `import tensorflow_io` fail
    with pytest.raises(UsageError, match="s3:// paths.*needs tensorflow-io.*tensorflow-io==0.37.1"):
        filesystems.ensure_filesystem("s3://bucket/records")


# ---------------------------------------------------------- learnable data


def test_fixture_clips_are_learnable(tmp_path):
    """A tiny model's loss goes down on the fixture's moving squares."""
    card = record_fixtures.write_dataset(tmp_path, num_plays=8, num_frames=6, size=32,
                                         labels=("a", "b", "c", "d"), num_shards=2)
    ds = _dataset(tmp_path, card, training=True, global_batch_size=4, seed=0, augment=False,
                  repeat=True)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((6, 32, 32, 3), dtype="uint8"),
        tf.keras.layers.Rescaling(1 / 255.0),
        tf.keras.layers.TimeDistributed(tf.keras.layers.AveragePooling2D(4)),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(4, activation="softmax"),
    ])
    model.compile(tf.keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    history = model.fit(ds, epochs=8, steps_per_epoch=2, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0], history
