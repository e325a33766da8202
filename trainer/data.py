"""The trainer's tf.data input pipeline: play-record shards -> (clips, labels).

    files -> shard per input pipeline -> shuffle files -> parallel interleave of
    TFRecordDatasets -> shuffle records -> [parallel map, one clip per call:
    parse (schemas.play_record) -> choose frames -> decode only those JPEGs,
    and of each only the window that the clip's crop keeps (an unrolled graph)
    -> flip and pad the whole clip with the same draw] -> batch (per-replica
    size) -> prefetch

`benchmarks/input_pipeline.py` measures it against the rate of decoding the
same frames whole from memory, with no parsing or augmentation.

Clips stay uint8 until the model: the dataset yields
`(clips uint8 [B, T, H, W, 3], labels int32 [B])`; the cast and the VGG16
preprocessing live inside the model.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple

import tensorflow as tf

from schemas import play_record
from schemas.errors import UsageError

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_SHUFFLE_BUFFER = 256
# dataset.json's "compression" -> TFRecordDataset's compression_type.
_COMPRESSION = {"": "", "none": "", "gzip": "GZIP", "zlib": "ZLIB"}


def compression_type(compression: Optional[str]) -> str:
    """Maps a card's compression ("none", "gzip", "zlib") to TFRecordDataset's argument."""
    key = (compression or "").lower()
    if key not in _COMPRESSION:
        raise ValueError(f"unknown compression {compression!r}: use one of 'none', 'gzip', 'zlib'")
    return _COMPRESSION[key]


# ---------------------------------------------------------------- files


def _pipeline_of(input_context: Optional[tf.distribute.InputContext]) -> Tuple[int, int]:
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def shard_files(files: Sequence[str],
                input_context: Optional[tf.distribute.InputContext]) -> List[str]:
    """The files that this input pipeline reads (every num_pipelines-th file)."""
    files = list(files)
    num_pipelines, pipeline_id = _pipeline_of(input_context)
    if not files:
        raise ValueError("no input files")
    if len(files) < num_pipelines:
        raise UsageError(
            f"{len(files)} shard(s) for {num_pipelines} input pipelines: every pipeline (worker) "
            f"needs at least one shard of its own. Re-run the records job with --num_shards of at "
            f"least {num_pipelines} (a multiple of it balances the workers), or use fewer workers")
    return files[pipeline_id::num_pipelines]


# ---------------------------------------------------------------- per clip


def _uniform_int(maxval, seed) -> tf.Tensor:
    """A random int32 in [0, maxval) (stateless when `seed` is given)."""
    if seed is None:
        return tf.random.uniform([], 0, maxval, dtype=tf.int32)
    return tf.random.stateless_uniform([], seed, 0, maxval, dtype=tf.int32)


def frame_indices(total: tf.Tensor, num_frames: int, training: bool = False,
                  seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Which `num_frames` of a clip's `total` stored frames to use: int32 [num_frames].

    Eval: evenly spaced with stride max(T // num_frames, 1), centred in the
    clip. Training: a random stride in [S - S // 4, S], S = max(T // num_frames, 1)
    (so a training clip spans at least 3/4 of what eval sees: the play's course
    over time is the signal), and a random offset inside the clip. A clip shorter
    than `num_frames` repeats its last frame. `seed` is an optional stateless
    seed (int [2]); without it training draws from TensorFlow's global generator.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    total = tf.cast(total, tf.int32)
    check = tf.debugging.assert_positive(total, message="play record has no frames")
    with tf.control_dependencies([check]):
        max_stride = tf.maximum(total // num_frames, 1)
    if training:
        if seed is not None:
            stride_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        else:
            stride_seed = offset_seed = None
        stride = max_stride - _uniform_int(max_stride // 4 + 1, stride_seed)
        room = tf.maximum(total - ((num_frames - 1) * stride + 1), 0)
        offset = _uniform_int(room + 1, offset_seed)
    else:
        stride = max_stride
        offset = tf.maximum(total - ((num_frames - 1) * stride + 1), 0) // 2
    return tf.minimum(offset + tf.range(num_frames, dtype=tf.int32) * stride, total - 1)


def select_frames(jpegs: tf.Tensor, num_frames: Optional[int], training: bool = False,
                  seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Chooses `num_frames` of the T stored frames (string [T] -> string [num_frames]).

    The frames are those of `frame_indices`; `num_frames=None` keeps all T.
    """
    jpegs = tf.convert_to_tensor(jpegs, tf.string)
    if num_frames is None:
        return jpegs
    selected = tf.gather(jpegs, frame_indices(tf.shape(jpegs)[0], num_frames, training, seed))
    selected.set_shape([num_frames])
    return selected


def _decode_one(data: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """One JPEG (or PNG) -> uint8 [height, width, 3], resized (bilinear) if needed."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], [height, width]))
    image = tf.cond(same, lambda: image, lambda: _resized(image, height, width))
    return tf.ensure_shape(image, [height, width, 3])


def _resized(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Bilinear resize of a uint8 image to (height, width), rounded back to uint8."""
    resized = tf.image.resize(image, [height, width])
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def decode_frames(jpegs: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Decodes JPEG (or PNG) frames, string [T] -> uint8 [T, height, width, 3].

    Frames of another size are resized (bilinear) to (height, width). With a
    static T the graph is unrolled and checks the sizes once per clip, cheaper
    than the `tf.map_fn` loop with a `tf.cond` per frame used when T is unknown.
    """
    jpegs = tf.convert_to_tensor(jpegs, tf.string)
    count = jpegs.shape[0]
    if count is None:
        out = tf.map_fn(lambda data: _decode_one(data, height, width), jpegs,
                        fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8))
    else:
        images = [tf.io.decode_image(data, channels=3, expand_animations=False)
                  for data in tf.unstack(jpegs)]
        shapes = tf.stack([tf.shape(image) for image in images])
        same = tf.reduce_all(tf.equal(shapes[:, :2], [height, width]))
        out = tf.cond(same, lambda: tf.stack(images),
                      lambda: tf.stack([_resized(image, height, width) for image in images]))
    return tf.ensure_shape(out, [count, height, width, 3])


def draw_augmentation(height: int, width: int, seed: Optional[tf.Tensor] = None,
                      pad_fraction: float = 0.125) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One random draw for a clip: (shift_y, shift_x, flip).

    The shifts are those of padding each side by `pad_fraction` of the size
    and cropping back at a uniformly random offset: in [-pad, pad].
    """
    pad_h, pad_w = int(height * pad_fraction), int(width * pad_fraction)
    if seed is not None:
        y_seed, x_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    else:
        y_seed = x_seed = flip_seed = None
    shift_y = pad_h - _uniform_int(2 * pad_h + 1, y_seed)
    shift_x = pad_w - _uniform_int(2 * pad_w + 1, x_seed)
    return shift_y, shift_x, tf.equal(_uniform_int(2, flip_seed), 1)


def _kept_window(height: int, width: int, shift_y: tf.Tensor, shift_x: tf.Tensor
                 ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The part of a frame that a shift keeps in view: (top, left, rows, columns)."""
    return (tf.maximum(-shift_y, 0), tf.maximum(-shift_x, 0),
            height - tf.abs(shift_y), width - tf.abs(shift_x))


def _flip_and_place(kept: tf.Tensor, height: int, width: int, shift_y: tf.Tensor,
                    shift_x: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """Mirrors the kept part of a clip (when `flip`) and pads it back to (height, width).

    `kept` is uint8 [T, keep_h, keep_w * 3]. Mirroring the kept part touches
    fewer bytes than mirroring the padded frame; the left and right margins
    then swap.
    """
    count = tf.shape(kept)[0]
    _, _, keep_h, keep_w = _kept_window(height, width, shift_y, shift_x)
    pixels = tf.reshape(kept, [count * keep_h, keep_w, 3])
    pixels = tf.cond(flip, lambda: tf.reverse(pixels, axis=[1]), lambda: pixels)
    rows = tf.reshape(pixels, [count, keep_h, keep_w * 3])
    top = tf.maximum(shift_y, 0)
    left = tf.where(flip, tf.maximum(-shift_x, 0), tf.maximum(shift_x, 0))
    rows = tf.pad(rows, [[0, 0], [top, height - keep_h - top],
                         [3 * left, 3 * (width - keep_w - left)]])
    return tf.reshape(rows, [count, height, width, 3])


def _augment_decoded(clip: tf.Tensor, height: int, width: int, shift_y: tf.Tensor,
                     shift_x: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """Applies one drawn crop and flip to decoded frames (uint8 [T, height, width, 3])."""
    top, left, keep_h, keep_w = _kept_window(height, width, shift_y, shift_x)
    rows = tf.reshape(clip, [tf.shape(clip)[0], height, width * 3])
    kept = tf.slice(rows, [0, top, 3 * left], [-1, keep_h, 3 * keep_w])
    return _flip_and_place(kept, height, width, shift_y, shift_x, flip)


def augment_clip(clip: tf.Tensor, seed: Optional[tf.Tensor] = None,
                 pad_fraction: float = 0.125) -> tf.Tensor:
    """One random crop and flip for the whole clip (uint8 [T, H, W, 3] -> same shape).

    Crop: zero-pad each side by `pad_fraction` of the size and crop back to
    (H, W) at one random offset, i.e. out[y, x] = clip[y - shift_y, x - shift_x]
    (zeros outside). Flip: left-right with probability 1/2. The same draw
    applies to every frame. Slice, pad and reverse run once per clip on 3-D
    views ([T, H, W * 3] and [T * H, W, 3]), where TensorFlow's CPU kernels are
    3-6x faster than on the same bytes seen as 4-D uint8.
    """
    clip = tf.convert_to_tensor(clip, tf.uint8)
    height, width = int(clip.shape[1]), int(clip.shape[2])
    draw = draw_augmentation(height, width, seed, pad_fraction)
    return tf.ensure_shape(_augment_decoded(clip, height, width, *draw), clip.shape)


# libjpeg decodes a crop from a column that is a multiple of the iMCU width
# (16 px with 4:2:0 or 4:2:2 chroma, 8 with 4:4:4); other starts cost a copy.
_JPEG_CROP_ALIGN = 16


def _decode_kept_window(jpegs: tf.Tensor, height: int, width: int, shift_y: tf.Tensor,
                        shift_x: tf.Tensor) -> tf.Tensor:
    """Decodes only the part of each (height x width) JPEG frame that a shift keeps.

    Returns uint8 [T, keep_h, keep_w * 3], bit-identical to slicing fully
    decoded frames. libjpeg's chroma upsampling treats a crop's first and last
    columns as image edges, so the decoded window starts at the last iMCU
    boundary before the kept columns (or at column 0) and ends one column after
    them (or at the frame's edge); the extra columns are sliced off. Rows need
    no margin.
    """
    top, left, keep_h, keep_w = _kept_window(height, width, shift_y, shift_x)
    start = tf.where(left > 0, (left - 1) // _JPEG_CROP_ALIGN * _JPEG_CROP_ALIGN, 0)
    end = tf.minimum(left + keep_w + 1, width)
    window = tf.stack([top, start, keep_h, end - start])
    frames = tf.stack([tf.io.decode_and_crop_jpeg(data, window, channels=3)
                       for data in tf.unstack(jpegs)])
    rows = tf.reshape(frames, [tf.shape(frames)[0], keep_h, (end - start) * 3])
    return tf.slice(rows, [0, 0, 3 * (left - start)], [-1, -1, 3 * keep_w])


def decode_and_augment(jpegs: tf.Tensor, height: int, width: int,
                       seed: Optional[tf.Tensor] = None, pad_fraction: float = 0.125,
                       stored_size: Optional[Tuple[tf.Tensor, tf.Tensor]] = None) -> tf.Tensor:
    """`augment_clip(decode_frames(jpegs, height, width), seed, pad_fraction)`, often cheaper.

    `stored_size` is the frames' (height, width) as the record states it
    (`image/height`, `image/width`). When it is (height, width) and T is
    static, each JPEG is decoded only where the crop keeps it
    (`tf.io.decode_and_crop_jpeg`, as TensorFlow's ResNet preprocessing does):
    with the default pad_fraction that skips about 6% of the rows and of the
    columns on average, and saves the slice pass, with the same pixels out.
    Otherwise frames are decoded whole (and resized) first. Frames must then
    be JPEG, as the schema says; a record whose frames are smaller than it
    states fails with libjpeg's crop-window error.
    """
    jpegs = tf.convert_to_tensor(jpegs, tf.string)
    count = jpegs.shape[0]
    if stored_size is None or count is None:
        return augment_clip(decode_frames(jpegs, height, width), seed, pad_fraction)
    shift_y, shift_x, flip = draw_augmentation(height, width, seed, pad_fraction)

    def cropped():
        kept = _decode_kept_window(jpegs, height, width, shift_y, shift_x)
        return _flip_and_place(kept, height, width, shift_y, shift_x, flip)

    def whole():
        return _augment_decoded(decode_frames(jpegs, height, width), height, width,
                                shift_y, shift_x, flip)

    stored_h, stored_w = (tf.cast(v, tf.int32) for v in stored_size)
    as_stored = tf.logical_and(tf.equal(stored_h, height), tf.equal(stored_w, width))
    out = tf.cond(as_stored, cropped, whole)
    return tf.ensure_shape(out, [count, height, width, 3])


# ---------------------------------------------------------------- dataset


@dataclasses.dataclass(frozen=True)
class CorruptRecords:
    """How a pipeline skips corrupt records (the trainer's --skip_corrupt_records).

    Every file is read until its first record that fails its checksum or is
    cut short (TFRecord cannot resynchronize after a bad length, so the rest of
    that file is lost for the pass).

    Attributes:
      files: the files that the start-up scan found corrupt (`inputs.scan_file`).
        Reaching the end of one puts a marker in the record stream, which
        rides (after the shuffle) with the next record to the end of the
        pipeline, where `counter` adds it up as the batch leaves. The count
        therefore follows the batches consumed, not the reader running ahead.
      counter: an int64 variable (host) or None: not counted.
    """

    files: Tuple[str, ...] = ()
    counter: Optional[tf.Variable] = None

    @property
    def counting(self) -> bool:
        return self.counter is not None and bool(self.files)


def _read_file(path: tf.Tensor, compression_type: str,
               corrupt: Optional[CorruptRecords]) -> tf.data.Dataset:
    """One file's records; with `corrupt`, read up to a corrupt record (and marked, if counted)."""
    records = tf.data.TFRecordDataset(path, compression_type=compression_type)
    if corrupt is None:
        return records
    records = records.ignore_errors()
    if not corrupt.counting:
        return records
    is_corrupt = tf.reduce_any(tf.equal(path, tf.constant(corrupt.files, tf.string)))
    marker = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(1, tf.int64)))
    return (records.map(lambda record: (record, tf.constant(0, tf.int64)))
            .concatenate(marker.take(tf.cast(is_corrupt, tf.int64))))


def _fold_markers(ds: tf.data.Dataset) -> tf.data.Dataset:
    """(record, marker) -> (record, markers since the previous record): markers ride on records."""
    def step(pending, element):
        record, marker = element
        total = pending + marker
        return tf.where(marker > 0, total, 0), (record, total, marker > 0)

    return (ds.scan(tf.constant(0, tf.int64), step)
            .filter(lambda record, skipped, is_marker: tf.logical_not(is_marker))
            .map(lambda record, skipped, is_marker: (record, skipped)))


def _record_stream(files: Sequence[str], *, training: bool, compression: Optional[str],
                   input_context: Optional[tf.distribute.InputContext], seed: Optional[int],
                   shuffle_buffer: int, repeat: bool, random_draws: bool,
                   corrupt: Optional[CorruptRecords] = None) -> tf.data.Dataset:
    """(serialized record, stateless seed int64 [2]) pairs of this pipeline's shards.

    Files are sharded per input pipeline, shuffled and interleaved in parallel
    when training; records are shuffled. Each record gets its own stateless
    seed (reproducible with `seed`, fresh each epoch) when `random_draws`.
    With `corrupt` counting, a third item is the number of corrupt records
    skipped just before the record.
    """
    ctype = compression_type(compression)
    files = shard_files(files, input_context)
    _, pipeline_id = _pipeline_of(input_context)
    # Each pipeline draws differently from the same user seed.
    pipeline_seed = None if seed is None else seed + 1000003 * pipeline_id
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=pipeline_seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.interleave(
        lambda path: _read_file(path, ctype, corrupt),
        cycle_length=min(len(files), 16), block_length=1,
        num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=pipeline_seed, reshuffle_each_iteration=True)
    counting = corrupt is not None and corrupt.counting
    if counting:
        ds = _fold_markers(ds)
    if random_draws:
        seeds = tf.data.Dataset.random(seed=pipeline_seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))
        if counting:
            return ds.map(lambda counted, record_seed: (counted[0], record_seed, counted[1]))
        return ds
    if counting:
        return ds.map(lambda serialized, skipped: (serialized, tf.zeros([2], tf.int64), skipped))
    return ds.map(lambda serialized: (serialized, tf.zeros([2], tf.int64)))


def _passing_count(fn: Callable) -> Callable:
    """`fn(serialized, seed)` on counted elements, with the skipped count carried along."""
    return lambda serialized, record_seed, skipped: (*fn(serialized, record_seed), skipped)


def _count_skipped(ds: tf.data.Dataset, counter: tf.Variable) -> tf.data.Dataset:
    """Adds each batch's skipped-record count to `counter` as the batch leaves; drops the count."""
    def count(inputs, labels, skipped):
        with tf.control_dependencies([counter.assign_add(tf.reduce_sum(skipped))]):
            return inputs, tf.identity(labels)
    return ds.map(count)


def _batched(ds: tf.data.Dataset, training: bool, global_batch_size: int,
             input_context: Optional[tf.distribute.InputContext],
             corrupt: Optional[CorruptRecords] = None) -> tf.data.Dataset:
    """Per-replica batches (the last partial one dropped when training), prefetched."""
    batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                  if input_context else int(global_batch_size))
    # A plain batch: a parallel one's copy threads compete with decoding on small
    # hosts (benchmarks/input_pipeline.py).
    ds = ds.batch(batch_size, drop_remainder=training).prefetch(AUTOTUNE)
    if corrupt is not None and corrupt.counting:
        ds = _count_skipped(ds, corrupt.counter)
    return without_autotune(ds)


def make_dataset(files: Sequence[str], *, training: bool, global_batch_size: int,
                 num_frames: Optional[int], image_size: Tuple[int, int],
                 compression: Optional[str] = "none",
                 input_context: Optional[tf.distribute.InputContext] = None,
                 seed: Optional[int] = None,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                 repeat: bool = False,
                 augment: Optional[bool] = None,
                 corrupt: Optional[CorruptRecords] = None) -> tf.data.Dataset:
    """Builds `(clips uint8 [B, T, H, W, 3], labels int32 [B])` batches from play-record shards.

    Args:
      files: shard paths (see `inputs.split_files`, `inputs.match_files`); sharded
        per input pipeline by `input_context` (one pipeline needs at least one shard).
      training: shuffles files and records, interleaves non-deterministically,
        picks frames at a random offset/stride, augments (unless `augment` is
        False) and drops the last partial batch. Otherwise the order, frames
        (centred, evenly spaced) and pixels are deterministic.
      global_batch_size: split per replica with `input_context`.
      num_frames: frames per clip; None keeps all stored frames (then every
        record must hold the same number, and decoding loops with tf.map_fn
        instead of an unrolled graph).
      image_size: (height, width) of the output frames (resized if stored
        frames differ).
      compression: the card's compression ("none", "gzip").
      input_context: from `strategy.distribute_datasets_from_function`.
      seed: seeds the shuffles and the per-record frame/augmentation draws
        (training order still varies: the interleave is non-deterministic).
      shuffle_buffer: record shuffle buffer (training only).
      repeat: repeat the file list forever.
      augment: random crop + flip; defaults to `training`.
      corrupt: skip (and count) corrupt records (see CorruptRecords); None:
        a corrupt record fails the pipeline with a DataLossError.
    """
    height, width = (int(v) for v in image_size)
    augment = training if augment is None else augment
    random_draws = training or augment
    ds = _record_stream(files, training=training, compression=compression,
                        input_context=input_context, seed=seed, shuffle_buffer=shuffle_buffer,
                        repeat=repeat, random_draws=random_draws, corrupt=corrupt)

    def to_clip(serialized, record_seed):
        parsed = play_record.parse_play(serialized)
        select_seed, augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(record_seed, 2))
        jpegs = select_frames(parsed["frames"], num_frames, training=training,
                              seed=select_seed if random_draws else None)
        label = tf.cast(parsed["label"], tf.int32)
        if augment:
            return decode_and_augment(jpegs, height, width, seed=augment_seed,
                                      stored_size=(parsed["height"], parsed["width"])), label
        return decode_frames(jpegs, height, width), label

    # One clip per call, clips in parallel: a clip's frames are decoded in one
    # unrolled graph (num_frames known) with no per-frame tf.data elements.
    if corrupt is not None and corrupt.counting:
        to_clip = _passing_count(to_clip)
    ds = ds.map(to_clip, num_parallel_calls=AUTOTUNE, deterministic=not training)
    return _batched(ds, training, global_batch_size, input_context, corrupt)


def make_feature_dataset(files: Sequence[str], *, training: bool, global_batch_size: int,
                         num_frames: int, feature_dim: int,
                         parse_fn: Callable[[tf.Tensor], dict],
                         input_context: Optional[tf.distribute.InputContext] = None,
                         seed: Optional[int] = None,
                         shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                         repeat: bool = False,
                         corrupt: Optional[CorruptRecords] = None) -> tf.data.Dataset:
    """`(features float32 [B, num_frames, C], labels int32 [B])` from cached-feature shards.

    The frozen-base counterpart of `make_dataset`: the same file handling and
    the same frame choice (`frame_indices`: random stride and offset when
    training, centred for eval) over every stored frame's features. When the
    records hold several views (the flipped frames' features), training draws
    one view per clip, as `augment_clip` flips a whole clip; eval uses view 0.
    `parse_fn` is `schemas.feature_record.parse_features` with the card's dtype.
    `corrupt` as in `make_dataset`.
    """
    ds = _record_stream(files, training=training, compression="none",
                        input_context=input_context, seed=seed, shuffle_buffer=shuffle_buffer,
                        repeat=repeat, random_draws=training, corrupt=corrupt)

    def to_features(serialized, record_seed):
        parsed = parse_fn(serialized)
        views = parsed["features"]  # [V, T, C]
        select_seed, view_seed = tf.unstack(tf.random.experimental.stateless_split(record_seed, 2))
        view = _uniform_int(tf.shape(views)[0], view_seed) if training else 0
        clip = tf.gather(views, view)
        indices = frame_indices(tf.shape(clip)[0], num_frames, training,
                                seed=select_seed if training else None)
        features = tf.ensure_shape(tf.gather(clip, indices), [num_frames, feature_dim])
        return features, tf.cast(parsed["label"], tf.int32)

    if corrupt is not None and corrupt.counting:
        to_features = _passing_count(to_features)
    ds = ds.map(to_features, num_parallel_calls=AUTOTUNE, deterministic=not training)
    return _batched(ds, training, global_batch_size, input_context, corrupt)


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with tf.data's autotuning thread off; AUTOTUNE knobs take tf.data's defaults.

    In TF 2.16 deleting an iterator waits for that thread's next wake-up, up to
    60 s (cancelling the iterator does not wake it): Keras deletes its iterators
    at the end of each `fit`, which stalled for up to a minute per iterator.
    Without autotuning, parallel calls default to the number of CPU cores,
    which on a small host gives the same clips/s (benchmarks/input_pipeline.py).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
