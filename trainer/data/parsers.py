"""Parsers: a decoded record -> the model's (inputs, label), with train and eval apart.

Each record kind has one parser with two functions, in the shape of Model
Garden's `Parser._parse_train_data` / `_parse_eval_data`:

  parse_train(serialized, seed)  random frame choice (stride and offset) and,
                                 for play records, one crop and flip per clip;
                                 `seed` is the record's stateless seed (int64 [2])
  parse_eval(serialized, seed)   centred, evenly spaced frames, no augmentation
                                 (`seed` is ignored)

  views_fn(views)                the multi-view eval function: `EvalViews`' K
                                 temporal windows of a play (`clips.view_windows`),
                                 each also flipped with `views.flip`, stacked as
                                 [V, ...]; the scores are averaged per play by the
                                 evaluation (`trainer.evaluation.reports.view_report`)

The serving signature (`trainer.serving.export`) runs `ClipParser.eval_views`, the
multi-view function's frames -> views step, so that serving sees what
evaluation saw.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Tuple, Union

import tensorflow as tf

from trainer.data import clips, decoders

ParseFn = Callable[[tf.Tensor, tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]


def _split_seed(seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Two stateless seeds from a record's: (frame choice, the other draw)."""
    first, second = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    return first, second


@dataclasses.dataclass(frozen=True)
class EvalViews:
    """The views of a play that evaluation, export and predict score (--eval_views, --eval_flip).

    Views are ordered window 0..K-1, then (with `flip`) the same windows flipped.
    `with_centre` appends the centred clip when no view is it (an even K), so
    that a report can score the centred clip next to the play; the play's
    average is over the first `count` views only.
    """

    windows: int = 1
    flip: bool = False
    with_centre: bool = False

    def __post_init__(self):
        if self.windows < 1:
            raise ValueError(f"windows must be >= 1, got {self.windows}")

    @property
    def count(self) -> int:
        """The views averaged per play."""
        return self.windows * (2 if self.flip else 1)

    @property
    def extra_centre(self) -> bool:
        """Whether the centred clip is appended after the averaged views (an even K)."""
        return self.with_centre and self.windows % 2 == 0

    @property
    def total(self) -> int:
        return self.count + int(self.extra_centre)

    @property
    def centre(self) -> int:
        """The index of the centred, unflipped clip among the views."""
        return self.count if self.extra_centre else self.windows // 2

    def window_indices(self, total_frames, num_frames: Optional[int]) -> tf.Tensor:
        """The stored frames of each window, int32 [windows (+1: the centre), num_frames]."""
        windows = clips.view_windows(total_frames, num_frames, self.windows)
        if self.extra_centre:
            centre = clips.frame_indices(total_frames, num_frames)[tf.newaxis]
            windows = tf.concat([windows, centre], axis=0)
        return windows

    def stack(self, windows: tf.Tensor, flipped: Optional[tf.Tensor]) -> tf.Tensor:
        """The views [total, ...] from the windows' clips (and their flipped copies)."""
        if not self.flip:
            return windows
        parts = [windows[:self.windows], flipped[:self.windows]]
        if self.extra_centre:
            parts.append(windows[self.windows:])
        return tf.concat(parts, axis=0)


@dataclasses.dataclass(frozen=True)
class ClipParser:
    """Play records -> (clip uint8 [num_frames, H, W, 3], label int32).

    `num_frames=None` keeps every stored frame (then every record must hold the
    same number, and decoding loops with tf.map_fn instead of an unrolled graph).
    `augment=False` trains without the crop and flip.
    """

    num_frames: Optional[int]
    image_size: Tuple[int, int]
    augment: bool = True

    def parse_fn(self, training: bool) -> ParseFn:
        return self.parse_train if training else self.parse_eval

    def _frames(self, jpegs: tf.Tensor, training: bool,
                seed: Optional[tf.Tensor] = None) -> tf.Tensor:
        jpegs = tf.convert_to_tensor(jpegs, tf.string)
        chosen = tf.gather(jpegs, clips.frame_indices(tf.shape(jpegs)[0], self.num_frames,
                                                      training, seed))
        if self.num_frames is not None:
            chosen.set_shape([self.num_frames])
        return chosen

    def parse_train(self, serialized: tf.Tensor, seed: tf.Tensor):
        parsed = decoders.play_tensors(serialized)
        select_seed, augment_seed = _split_seed(seed)
        jpegs = self._frames(parsed["frames"], True, select_seed)
        height, width = self.image_size
        if self.augment:
            clip = clips.decode_and_augment(jpegs, height, width, seed=augment_seed,
                                            stored_size=(parsed["height"], parsed["width"]))
        else:
            clip = clips.decode_frames(jpegs, height, width)
        return clip, tf.cast(parsed["label"], tf.int32)

    def parse_eval(self, serialized: tf.Tensor, seed: Optional[tf.Tensor] = None):
        parsed = decoders.play_tensors(serialized)
        return self.eval_clip(parsed["frames"]), tf.cast(parsed["label"], tf.int32)

    def eval_clip(self, jpegs: tf.Tensor) -> tf.Tensor:
        """A play's stored JPEG frames (string [T]) -> the centred eval clip."""
        return clips.decode_frames(self._frames(jpegs, False), *self.image_size)

    def eval_views(self, jpegs: tf.Tensor, views: EvalViews) -> tf.Tensor:
        """A play's stored JPEG frames (string [T]) -> its views uint8 [V, num_frames, H, W, 3].

        The serving signature's step. Each chosen frame is decoded once per
        window (windows overlap little at eval's stride); a flipped view mirrors
        the decoded window left-right.
        """
        jpegs = tf.convert_to_tensor(jpegs, tf.string)
        indices = views.window_indices(tf.shape(jpegs)[0], self.num_frames)
        count = int(indices.shape[0])
        chosen = tf.gather(jpegs, tf.reshape(indices, [-1]))
        if self.num_frames is not None:
            chosen.set_shape([count * self.num_frames])
        height, width = self.image_size
        decoded = clips.decode_frames(chosen, height, width)
        windows = tf.reshape(decoded, [count, -1, height, width, 3])
        out = views.stack(windows, tf.reverse(windows, axis=[3]) if views.flip else None)
        return tf.ensure_shape(out, [views.total, self.num_frames, height, width, 3])

    def views_fn(self, views: EvalViews) -> ParseFn:
        """The multi-view eval function: (serialized, seed) -> (views [V, N, H, W, 3], label)."""
        def parse(serialized: tf.Tensor, seed: Optional[tf.Tensor] = None):
            parsed = decoders.play_tensors(serialized)
            return self.eval_views(parsed["frames"], views), tf.cast(parsed["label"], tf.int32)
        return parse


@dataclasses.dataclass(frozen=True)
class FeatureParser:
    """Cached-feature records -> (features float32 [num_frames, C], label int32).

    The same frame choice as `ClipParser` over every stored frame's features.
    When the records hold several views (the flipped frames' features),
    training draws one view per clip, as the clip parser flips a whole clip;
    eval uses view 0, and the multi-view eval's flipped views use the stored
    flipped view (`flip_view`, its index in the card's `views`).
    """

    num_frames: int
    feature_dim: int
    dtype: str
    flip_view: Optional[int] = None

    def parse_fn(self, training: bool) -> ParseFn:
        return self.parse_train if training else self.parse_eval

    def _features(self, views: tf.Tensor, view, training: bool,
                  seed: Optional[tf.Tensor] = None) -> tf.Tensor:
        clip = tf.gather(views, view)
        indices = clips.frame_indices(tf.shape(clip)[0], self.num_frames, training, seed)
        return tf.ensure_shape(tf.gather(clip, indices), [self.num_frames, self.feature_dim])

    def parse_train(self, serialized: tf.Tensor, seed: tf.Tensor):
        parsed = decoders.feature_tensors(serialized, self.dtype)
        views = parsed["features"]  # [V, T, C]
        select_seed, view_seed = _split_seed(seed)
        view = clips.uniform_int(tf.shape(views)[0], view_seed)
        return (self._features(views, view, True, select_seed),
                tf.cast(parsed["label"], tf.int32))

    def parse_eval(self, serialized: tf.Tensor, seed: Optional[tf.Tensor] = None):
        parsed = decoders.feature_tensors(serialized, self.dtype)
        return self._features(parsed["features"], 0, False), tf.cast(parsed["label"], tf.int32)

    def views_fn(self, views: EvalViews) -> ParseFn:
        """The multi-view eval function: (serialized, seed) -> (views [V, N, C], label).

        Raises ValueError for flipped views when the records hold no flipped view.
        """
        if views.flip and self.flip_view is None:
            raise ValueError("the feature records hold no flipped view")

        def parse(serialized: tf.Tensor, seed: Optional[tf.Tensor] = None):
            parsed = decoders.feature_tensors(serialized, self.dtype)
            stored = parsed["features"]  # [V, T, C]
            indices = views.window_indices(tf.shape(stored)[1], self.num_frames)
            windows = tf.gather(stored[0], indices)
            flipped = tf.gather(stored[self.flip_view], indices) if views.flip else None
            out = tf.ensure_shape(views.stack(windows, flipped),
                                  [views.total, self.num_frames, self.feature_dim])
            return out, tf.cast(parsed["label"], tf.int32)
        return parse


Parser = Union[ClipParser, FeatureParser]
