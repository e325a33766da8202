"""`TimelineModel`: an exported model split for the timeline, with its export card.

The Keras model beside the SavedModel (`model.keras`) is split
(`trainer.modeling.model.split_model`) into its per-frame part (its
preprocessing and base) and its head, so that the timeline runs the base once
per sampled frame and the head once per window; the export card says how the
model's records were sampled (frame count, size, resize mode, JPEG quality,
frame rate), which is how the timeline samples a game video. In a compute dtype
other than float32 the model is rebuilt in that dtype before the split
(`trainer.serving.compute_dtype`); features and probabilities come out float32.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from schemas.errors import UsageError, one_line
from trainer.serving import compute_dtype as dtype_lib


class TimelineModel:
    """An exported model split into its per-frame part and its head, with its export card."""

    def __init__(self, model_dir: str, compute_dtype: str = "float32"):
        """Loads the export of a JOB_DIR computing in `compute_dtype` (float32 | bfloat16 |
        float16, resolved: `compute_dtype.resolve`)."""
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        from trainer.serving import export  # pylint: disable=g-import-not-at-top
        from trainer.modeling import model as model_lib  # pylint: disable=g-import-not-at-top
        try:
            self.card = export.load_metadata(model_dir)
        except (OSError, tf.errors.OpError) as err:
            raise UsageError(f"cannot load model {model_dir!r}: {one_line(err)} (train and export "
                             f"one with python -m trainer.task --job_dir=...)") from err
        path = dtype_lib.keras_model_path(model_dir)
        if not path:
            raise UsageError(f"no {export.MODEL_FILENAME} in {model_dir!r}: pass the training "
                             f"job's JOB_DIR (the timeline needs the Keras model beside saved_model/)")
        self.model_path = path
        self.compute_dtype = compute_dtype
        self.model = dtype_lib.load_keras_model(path, compute_dtype)
        self.frame_model, self.head = model_lib.split_model(self.model)
        self.labels: List[str] = [str(label) for label in self.card.labels]
        self.height, self.width = (int(v) for v in self.card.image_size)
        self.num_frames = self.card.num_frames
        self.record_num_frames = self.card.record_num_frames
        self.frame_rate: Optional[float] = self.card.sampling.frame_rate
        self.sampling = self.card.sampling  # how the video's frames are resized and encoded
        self._features_fn = tf.function(self._features, reduce_retracing=True)
        self._head_fn = tf.function(lambda x: self.head(x, training=False), reduce_retracing=True)
        self._full_fn = tf.function(self._full, reduce_retracing=True)

    def _decode(self, jpegs):
        from trainer.data import clips as clips_lib  # pylint: disable=g-import-not-at-top
        return clips_lib.decode_frames(jpegs, self.height, self.width)

    def _features(self, jpegs):
        return self.frame_model(self._decode(jpegs), training=False)

    def _full(self, jpegs):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        windows = tf.shape(jpegs)[0]
        frames = self._decode(tf.reshape(jpegs, [-1]))
        frames = tf.reshape(frames, [windows, self.num_frames, self.height, self.width, 3])
        return self.model(frames, training=False)

    def features(self, jpegs: Sequence[bytes]):
        """Per-frame features [N, C] (numpy float32) of N JPEG frames."""
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        return self._features_fn(tf.constant(list(jpegs), tf.string)).numpy().astype("float32")

    def head_probabilities(self, features):
        """Probabilities [B, labels] of windows' stacked features [B, num_frames, C]."""
        return self._head_fn(features).numpy().astype("float32")

    def full_probabilities(self, windows: Sequence[Sequence[bytes]]):
        """Probabilities [B, labels] of the full model on windows of `num_frames` JPEGs each."""
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        return self._full_fn(tf.constant([list(w) for w in windows], tf.string)).numpy().astype(
            "float32")

    def window_offsets(self, total: int) -> List[int]:
        """Which of a window's `total` sampled frames the model sees (as evaluation picks them)."""
        from trainer.data import clips as clips_lib  # pylint: disable=g-import-not-at-top
        return [int(i) for i in clips_lib.frame_indices(total, self.num_frames, training=False).numpy()]
