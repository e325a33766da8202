"""Parsers: a decoded record -> the model's (inputs, label), with train and eval apart.

Each record kind has one parser with two functions, in the shape of Model
Garden's `Parser._parse_train_data` / `_parse_eval_data`:

  parse_train(serialized, seed)  random frame choice (stride and offset) and,
                                 for play records, one crop and flip per clip;
                                 `seed` is the record's stateless seed (int64 [2])
  parse_eval(serialized, seed)   centred, evenly spaced frames, no augmentation
                                 (`seed` is ignored)

The serving signature (`trainer.export`) runs `ClipParser.eval_clip`, the
eval parser's frames -> clip step, so that serving sees what evaluation saw.
A multi-view evaluation (K temporal windows of a play, and flipped copies,
logits averaged per play) is another eval function of the same parser over
`clips.frame_indices` windows; the reader and the decoders stay as they are.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Tuple, Union

import tensorflow as tf

from trainer import clips, decoders

ParseFn = Callable[[tf.Tensor, tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]


def _split_seed(seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Two stateless seeds from a record's: (frame choice, the other draw)."""
    first, second = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    return first, second


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
        parsed = decoders.decode_play(serialized)
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
        parsed = decoders.decode_play(serialized)
        return self.eval_clip(parsed["frames"]), tf.cast(parsed["label"], tf.int32)

    def eval_clip(self, jpegs: tf.Tensor) -> tf.Tensor:
        """A play's stored JPEG frames (string [T]) -> the eval clip; the serving signature's step."""
        return clips.decode_frames(self._frames(jpegs, False), *self.image_size)


@dataclasses.dataclass(frozen=True)
class FeatureParser:
    """Cached-feature records -> (features float32 [num_frames, C], label int32).

    The same frame choice as `ClipParser` over every stored frame's features.
    When the records hold several views (the flipped frames' features),
    training draws one view per clip, as the clip parser flips a whole clip;
    eval uses view 0.
    """

    num_frames: int
    feature_dim: int
    dtype: str

    def parse_fn(self, training: bool) -> ParseFn:
        return self.parse_train if training else self.parse_eval

    def _features(self, views: tf.Tensor, view, training: bool,
                  seed: Optional[tf.Tensor] = None) -> tf.Tensor:
        clip = tf.gather(views, view)
        indices = clips.frame_indices(tf.shape(clip)[0], self.num_frames, training, seed)
        return tf.ensure_shape(tf.gather(clip, indices), [self.num_frames, self.feature_dim])

    def parse_train(self, serialized: tf.Tensor, seed: tf.Tensor):
        parsed = decoders.decode_features(serialized, self.dtype)
        views = parsed["features"]  # [V, T, C]
        select_seed, view_seed = _split_seed(seed)
        view = clips.uniform_int(tf.shape(views)[0], view_seed)
        return (self._features(views, view, True, select_seed),
                tf.cast(parsed["label"], tf.int32))

    def parse_eval(self, serialized: tf.Tensor, seed: Optional[tf.Tensor] = None):
        parsed = decoders.decode_features(serialized, self.dtype)
        return self._features(parsed["features"], 0, False), tf.cast(parsed["label"], tf.int32)


Parser = Union[ClipParser, FeatureParser]
