"""Export: `JOB_DIR/model.keras` and a SavedModel that serves raw JPEG clips.

The SavedModel's `serving_default` signature takes

  clips: tf.string [batch, frames], the JPEG (or PNG) bytes of each frame

and does the eval-time preprocessing itself (the multi-view eval function's
`parsers.ClipParser.eval_views`: `eval_views` windows of `num_frames` evenly
spaced frames spread over the given frames, each also flipped with
`eval_flip`, decoded at `image_size`), runs the model on every view and
averages the views' log-probabilities per play, as the evaluation does
(`trainer.serving.averaging.average_log_probabilities`). It returns

  probabilities   float32 [batch, C]
  labels          string  [batch, C]  the label vocabulary (same for every row)
  top_label       string  [batch]
  top_probability float32 [batch]

Serving therefore needs no Python preprocessing. Both outputs are written under a
temporary name beside their final one and then renamed, so that a killed
export never leaves a half-written model under the final name. `saved_model/assets.extra/`
holds the export card `playclips_export.json` (`schemas.export_card`: labels, the
model's frame count and size, views, and the frame sampling of its records) so
that clients (`trainer.predict`, the prediction job, the timeline) sample a play
the way the records job did.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf

from schemas import export_card
from schemas.export_card import ExportCard
from schemas.sampling import FrameSampling
from trainer.data import parsers
from trainer.serving.averaging import average_log_probabilities

MODEL_FILENAME = export_card.MODEL_FILENAME
SAVED_MODEL_DIR = "saved_model"
SIGNATURE_NAME = export_card.SIGNATURE_NAME
INPUT_NAME = export_card.INPUT_NAME


def metadata_path(saved_model_dir: str) -> str:
    """Where `export_model` writes the export card inside a SavedModel folder."""
    return export_card.card_path(saved_model_dir)


def resolve_saved_model_dir(model_dir: str) -> str:
    """Accepts a JOB_DIR or its saved_model/ folder; returns the SavedModel folder.

    Raises FileNotFoundError with what was looked for.
    """
    candidates = [model_dir, os.path.join(model_dir, SAVED_MODEL_DIR)]
    for candidate in candidates:
        if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    if not tf.io.gfile.exists(model_dir):
        raise FileNotFoundError(f"model directory {model_dir!r} does not exist")
    raise FileNotFoundError(
        f"no saved_model.pb in {model_dir!r} or {os.path.join(model_dir, SAVED_MODEL_DIR)!r}: "
        f"pass the training job's JOB_DIR or its {SAVED_MODEL_DIR}/ folder")


def load_metadata(model_dir: str) -> ExportCard:
    """The export card of a JOB_DIR or saved_model/ folder (FileNotFoundError, SchemaError)."""
    return export_card.read(resolve_saved_model_dir(model_dir))


def make_serving_fn(model: keras.Model, labels: Sequence[str], image_size: Tuple[int, int],
                    num_frames: int, views: Optional[parsers.EvalViews] = None):
    """The serving function: string [batch, frames] JPEG bytes -> dict of outputs (not traced)."""
    height, width = (int(v) for v in image_size)
    num_frames = int(num_frames)
    labels = [str(label) for label in labels]
    parser = parsers.ClipParser(num_frames, (height, width))
    views = views or parsers.EvalViews()

    def serve(clips: tf.Tensor) -> Dict[str, tf.Tensor]:
        frames = tf.map_fn(
            lambda jpegs: parser.eval_views(jpegs, views), clips,
            fn_output_signature=tf.TensorSpec([views.count, num_frames, height, width, 3],
                                              tf.uint8))
        flat = tf.reshape(frames, [-1, num_frames, height, width, 3])
        per_view = tf.cast(model(flat, training=False), tf.float32)
        per_view = tf.reshape(per_view, [tf.shape(frames)[0], views.count, len(labels)])
        probabilities = (per_view[:, 0] if views.count == 1
                         else average_log_probabilities(per_view))
        vocabulary = tf.constant(labels, tf.string)
        batch = tf.shape(probabilities)[0]
        top_index = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "labels": tf.tile(vocabulary[tf.newaxis, :], [batch, 1]),
            "top_label": tf.gather(vocabulary, top_index),
            "top_probability": tf.reduce_max(probabilities, axis=-1),
        }

    return serve


def _temporary_name(path: str) -> str:
    """A name beside `path` for writing before the rename."""
    return f"{path}.tmp-{uuid.uuid4().hex[:12]}"


def _save_keras(model: keras.Model, path: str) -> None:
    """model.save to a local temp file, copied beside `path` and renamed (works for gs://)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILENAME)
        model.save(local)
        partial = _temporary_name(path)
        tf.io.gfile.copy(local, partial, overwrite=True)
        tf.io.gfile.rename(partial, path, overwrite=True)


def _replace_dir(partial: str, path: str) -> None:
    """Renames the folder `partial` to `path`, replacing an earlier export's folder."""
    old = None
    if tf.io.gfile.exists(path):
        old = _temporary_name(path)
        tf.io.gfile.rename(path, old)
    tf.io.gfile.rename(partial, path)
    if old:
        tf.io.gfile.rmtree(old)


def export_model(model: keras.Model, job_dir: str, *, labels: Sequence[str],
                 image_size: Union[int, Tuple[int, int]], num_frames: int,
                 sampling: Optional[FrameSampling] = None, eval_views: int = 1,
                 eval_flip: bool = False) -> Dict[str, Any]:
    """Writes JOB_DIR/model.keras and JOB_DIR/saved_model/ (raw-JPEG serving signature).

    Args:
      model: uint8 clips [B, T, H, W, 3] -> probabilities [B, C].
      job_dir: a local path or gs:// (tf.io.gfile).
      labels: the C label names, index order.
      image_size: (height, width) the model takes (an int means square).
      num_frames: frames the model sees; the signature picks them from the given frames.
      sampling: how the model's records were sampled (`dataset.json`'s); the
        card stores it at `image_size`, for clients that sample plays. None:
        `num_frames` frames a play and the default settings.
      eval_views, eval_flip: the views the signature averages per play
        (`parsers.EvalViews`; 1 and False: the centred clip alone).

    Returns:
      The export card as a dict, plus `model_path` and `saved_model_dir`.
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    height, width = (int(v) for v in image_size)
    labels = [str(label) for label in labels]
    num_classes = int(model.output_shape[-1])
    if num_classes != len(labels):
        raise ValueError(f"the model has {num_classes} outputs but {len(labels)} labels were given")
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    sampling = sampling or FrameSampling(num_frames=int(num_frames))
    card = ExportCard(labels=labels, image_size=[height, width], num_frames=int(num_frames),
                      sampling=dataclasses.replace(sampling, height=height, width=width),
                      eval_views=int(eval_views), eval_flip=bool(eval_flip),
                      signature=SIGNATURE_NAME, input=INPUT_NAME)

    tf.io.gfile.makedirs(job_dir)
    model_path = os.path.join(job_dir, MODEL_FILENAME)
    _save_keras(model, model_path)

    saved_model_dir = os.path.join(job_dir, SAVED_MODEL_DIR)
    partial = _temporary_name(saved_model_dir)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=make_serving_fn(model, labels, (height, width), num_frames,
                           parsers.EvalViews(int(eval_views), bool(eval_flip))),
        input_signature=[tf.TensorSpec([None, None], tf.string, name=INPUT_NAME)])
    archive.write_out(partial, verbose=False)
    export_card.write(card, partial)
    _replace_dir(partial, saved_model_dir)
    return dict(card.to_dict(), model_path=model_path, saved_model_dir=saved_model_dir)
