"""The Beam jobs' models for RunInference: the saved frozen base, and the exported classifier.

RunInference gets `(PlayKey, frames)` pairs through Beam's `KeyedModelHandler`:
the key (the play id, with the few fields the job's output needs) rides outside
the model, and only a play's JPEG frames go in.

  keyed_handler     the embed job: `FrameFeaturesHandler`, the saved base; a
                    prediction's inference is the play's features
                    `[views, frames, dim]` (float32)
  serving_handler   the prediction job: `ServingHandler`, the export's
                    `serving_default` signature on raw JPEG bytes (in float32 the
                    SavedModel's, else the same function on model.keras rebuilt in
                    the compute dtype: `trainer.serving.compute_dtype`); a
                    prediction's inference is the play's class probabilities `[C]`
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference import base as inference_base
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult

from beam_jobs.outputs import METRICS_NAMESPACE
from schemas import features_card
from schemas.errors import one_line

logger = logging.getLogger(__name__)

FRAMES_PER_CALL = 128  # frames per base call: bounds the activations' memory at 224 px


def _give_beam_the_resource_module() -> None:
    """Lets RunInference measure its memory without torch.

    Beam's `ml.inference.base` imports the standard `resource` module in one
    try block with its torch-only `ModelManager`, so without torch it has no
    `resource` and logs "Resource module is not available for current
    platform" on every model load. The module is there: hand it over.
    """
    if getattr(inference_base, "resource", None) is not None:
        return
    try:
        import resource  # pylint: disable=g-import-not-at-top
    except ImportError:  # not a Unix platform: Beam's warning is then true
        return
    inference_base.resource = resource


_give_beam_the_resource_module()


def failure_reason(err: Any) -> str:
    """`inference failed: Type: message` (one line) of a failed batch's error.

    RunInference's exception handling hands on the exception itself, or (Beam
    2.72's wrapper) a tuple `(exception type, repr, traceback lines)` whose
    last traceback line holds the message.
    """
    if isinstance(err, BaseException):
        name, message = type(err).__name__, one_line(err)
    elif (isinstance(err, tuple) and len(err) == 3 and isinstance(err[0], type)
          and isinstance(err[2], (list, tuple))):
        name = err[0].__name__
        last = "".join(err[2][-1:]) if err[2] else str(err[1])
        message = " ".join(last.split(f"{name}:", 1)[-1].split()) or str(err[1])
    else:
        name, message = type(err).__name__, " ".join(str(err).split())
    return f"inference failed: {name}: {message}"


class PlayKey(NamedTuple):
    """What rides beside a play's frames through RunInference: its id and its record's fields."""

    play_id: str
    split: str
    label: str
    label_index: int
    data_path: str


class FrameBase:
    """VGGPreprocess then the loaded base: uint8 frames [N, H, W, 3] -> features [N, D].

    A class (not a function) because RunInference keeps a weak reference to its
    model, and one with a named method because a model shared across processes
    is a proxy that forwards method calls.
    """

    def __init__(self, base, preprocess, frames_per_call: int = FRAMES_PER_CALL):
        self.base = base
        self.preprocess = preprocess
        self.frames_per_call = frames_per_call

    def features(self, frames: np.ndarray) -> np.ndarray:
        """Features of `frames`, in calls of at most frames_per_call frames (bounds the memory)."""
        step = self.frames_per_call
        from keras import ops  # pylint: disable=g-import-not-at-top
        return np.concatenate([
            np.asarray(ops.convert_to_numpy(ops.cast(
                self.base(self.preprocess(frames[i:i + step]), training=False), "float32")))
            for i in range(0, int(frames.shape[0]), step)])


class FrameFeaturesHandler(ModelHandler):
    """RunInference's model: the saved base on every frame of a batch of plays.

    An example is one play's JPEG frames (a list of bytes). Frames are decoded
    with `tf.io.decode_jpeg`, as the trainer decodes them, and go through
    `VGGPreprocess` then the base; with the flip view, also left-right flipped.
    `share_model_across_processes` loads one base per machine (up to
    `model_copies`) for the worker processes, as for a GPU worker. The base
    computes in `compute_dtype` (float32 | bfloat16 | float16, resolved at launch).
    """

    def __init__(self, base_path: str, views: Sequence[str], batch_size: int,
                 compute_dtype: str = "float32", frames_per_call: int = FRAMES_PER_CALL,
                 share_model_across_processes: bool = False,
                 model_copies: Optional[int] = None):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size,
                         large_model=share_model_across_processes, model_copies=model_copies)
        self._base_path = base_path
        self._flip = "flip" in views
        self._frames_per_call = frames_per_call
        self._compute_dtype = compute_dtype

    def load_model(self) -> FrameBase:
        """Loads base.keras once per worker: every worker holds the weights the launcher saved."""
        import keras  # pylint: disable=g-import-not-at-top
        from backbone import vgg16  # pylint: disable=g-import-not-at-top
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, features_card.BASE_FILE)
            with FileSystems.open(self._base_path,
                                  compression_type=CompressionTypes.UNCOMPRESSED) as src:
                with open(local, "wb") as dst:
                    dst.write(src.read())
            base = keras.saving.load_model(
                local, compile=False, safe_mode=True,
                custom_objects={"VGGPreprocess": vgg16.VGGPreprocess})
        vgg16.set_compute_dtype(base, self._compute_dtype)
        logger.info("loaded the base %s (computes in %s)", self._base_path, self._compute_dtype)
        return FrameBase(base, vgg16.VGGPreprocess(), self._frames_per_call)

    def run_inference(self, batch: Sequence[List[bytes]], model: FrameBase,
                      inference_args: Optional[Dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        del inference_args
        frames = tf.stack([tf.io.decode_jpeg(jpeg, channels=3)
                           for play in batch for jpeg in play]).numpy()
        views = [frames] + ([frames[:, :, ::-1]] if self._flip else [])
        features = np.stack([model.features(view) for view in views])  # [V, N*T, D]
        start = 0
        for play in batch:
            yield PredictionResult(play, features[:, start:start + len(play)])
            start += len(play)

    def get_num_bytes(self, batch: Sequence[List[bytes]]) -> int:
        return sum(len(jpeg) for play in batch for jpeg in play)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def keyed_handler(base_path: str, views: Sequence[str], batch_size: int,
                  compute_dtype: str = "float32", share_model_across_processes: bool = False,
                  model_copies: Optional[int] = None) -> KeyedModelHandler:
    """The handler RunInference gets: `(PlayKey, frames)` in, `(PlayKey, PredictionResult)` out."""
    return KeyedModelHandler(FrameFeaturesHandler(
        base_path, views, batch_size, compute_dtype=compute_dtype,
        share_model_across_processes=share_model_across_processes,
        model_copies=model_copies))


class ServingHandler(ModelHandler):
    """RunInference's model: the exported classifier (`trainer.serving.export`) on batches of plays.

    An example is one play's JPEG frames (a list of bytes), all its stored
    frames: the signature picks and decodes the frames it needs, as
    `trainer.predict` uses it. Beam's `TFModelHandlerTensor` does not fit: it
    loads with `tf.keras.models.load_model`, which in Keras 3 reads `.keras`
    files only, and imports tensorflow_hub. Plays of a batch with different
    frame counts go to the signature in groups of equal count (its input is
    rectangular); results keep the batch's order, which `KeyedModelHandler`
    pairs with the keys. The model computes in `compute_dtype` (float32 |
    bfloat16 | float16, resolved at launch); its probabilities are float32.
    """

    def __init__(self, saved_model_dir: str, batch_size: int, compute_dtype: str = "float32",
                 share_model_across_processes: bool = False,
                 model_copies: Optional[int] = None):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size,
                         large_model=share_model_across_processes, model_copies=model_copies)
        self._saved_model_dir = saved_model_dir
        self._compute_dtype = compute_dtype

    def load_model(self):
        """Loads the export once per worker (TensorFlow reads gs:// itself): a
        `trainer.serving.compute_dtype.Serving`, whose `probabilities` method RunInference's
        shared-model proxy forwards."""
        from trainer.serving import compute_dtype as dtype_lib  # pylint: disable=g-import-not-at-top
        serving = dtype_lib.load_serving(self._saved_model_dir, self._compute_dtype)
        logger.info("loaded the model %s (computes in %s)", self._saved_model_dir,
                    self._compute_dtype)
        return serving

    def run_inference(self, batch: Sequence[List[bytes]], model: Any,
                      inference_args: Optional[Dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        del inference_args
        by_length: Dict[int, List[int]] = {}
        for i, play in enumerate(batch):
            by_length.setdefault(len(play), []).append(i)
        probabilities: List[Optional[np.ndarray]] = [None] * len(batch)
        for indices in by_length.values():
            rows = model.probabilities([list(batch[i]) for i in indices])
            for i, row in zip(indices, rows):
                probabilities[i] = row
        return [PredictionResult(play, p, self._saved_model_dir)
                for play, p in zip(batch, probabilities)]

    def get_num_bytes(self, batch: Sequence[List[bytes]]) -> int:
        return sum(len(jpeg) for play in batch for jpeg in play)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def serving_handler(saved_model_dir: str, batch_size: int, compute_dtype: str = "float32",
                    share_model_across_processes: bool = False,
                    model_copies: Optional[int] = None) -> KeyedModelHandler:
    """The prediction job's handler: `(PlayKey, frames)` in, `(PlayKey, PredictionResult)` out."""
    return KeyedModelHandler(ServingHandler(
        saved_model_dir, batch_size, compute_dtype,
        share_model_across_processes=share_model_across_processes, model_copies=model_copies))
