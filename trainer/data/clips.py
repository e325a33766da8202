"""Tensor operations on one clip: which stored frames to use, JPEG decoding, crop and flip.

The parsers (`trainer.data.parsers`) compose these; the serving signature uses the
same ones through the eval parser. Clips stay uint8: the cast and the VGG16
preprocessing live inside the model.
"""

from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf


def uniform_int(maxval, seed) -> tf.Tensor:
    """A random int32 in [0, maxval) (stateless when `seed` is given)."""
    if seed is None:
        return tf.random.uniform([], 0, maxval, dtype=tf.int32)
    return tf.random.stateless_uniform([], seed, 0, maxval, dtype=tf.int32)


def frame_indices(total, num_frames: Optional[int], training: bool = False,
                  seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Which `num_frames` of a clip's `total` stored frames to use: int32 [num_frames].

    `num_frames=None` keeps all `total` frames, in order.

    Eval: evenly spaced with stride max(T // num_frames, 1), centred in the
    clip. Training: a random stride in [S - S // 4, S], S = max(T // num_frames, 1)
    (so a training clip spans at least 3/4 of what eval sees: the play's course
    over time is the signal), and a random offset inside the clip. A clip shorter
    than `num_frames` repeats its last frame. `seed` is an optional stateless
    seed (int [2]); without it training draws from TensorFlow's global generator.
    """
    if num_frames is None:
        return tf.range(tf.cast(total, tf.int32))
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
        stride = max_stride - uniform_int(max_stride // 4 + 1, stride_seed)
        room = tf.maximum(total - ((num_frames - 1) * stride + 1), 0)
        offset = uniform_int(room + 1, offset_seed)
    else:
        stride = max_stride
        offset = tf.maximum(total - ((num_frames - 1) * stride + 1), 0) // 2
    return tf.minimum(offset + tf.range(num_frames, dtype=tf.int32) * stride, total - 1)


def view_windows(total, num_frames: Optional[int], windows: int) -> tf.Tensor:
    """`windows` evaluation windows of a clip, int32 [windows, num_frames]: the views of a play.

    Each window has eval's stride (`frame_indices`); their offsets spread evenly
    from the first to the last possible start, so one window is the centred
    eval clip, and the middle window of an odd count is it exactly.
    """
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    if windows == 1 or num_frames is None:
        return tf.tile(frame_indices(total, num_frames)[tf.newaxis], [windows, 1])
    total = tf.cast(total, tf.int32)
    check = tf.debugging.assert_positive(total, message="play record has no frames")
    with tf.control_dependencies([check]):
        stride = tf.maximum(total // num_frames, 1)
    room = tf.maximum(total - ((num_frames - 1) * stride + 1), 0)
    offsets = tf.range(windows, dtype=tf.int32) * room // (windows - 1)
    steps = tf.range(num_frames, dtype=tf.int32) * stride
    return tf.minimum(offsets[:, tf.newaxis] + steps[tf.newaxis], total - 1)



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
    shift_y = pad_h - uniform_int(2 * pad_h + 1, y_seed)
    shift_x = pad_w - uniform_int(2 * pad_w + 1, x_seed)
    return shift_y, shift_x, tf.equal(uniform_int(2, flip_seed), 1)


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
    faster than on the same bytes seen as 4-D uint8 (docs/history.md).
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
    that skips the rows and columns the crop drops and saves the slice pass,
    with the same pixels out.
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

