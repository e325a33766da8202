"""The exported model in a compute dtype: float32 as exported, or bfloat16 / float16 without
re-export. Shared by `trainer.predict`, the timeline and the prediction job (`--compute_dtype`).

The export (`trainer.serving.export`) is float32: `model.keras` and a SavedModel
whose `serving_default` signature takes raw JPEG bytes. In float32 the clients
use that SavedModel as it is. For another compute dtype, the Keras model beside
`saved_model/` is rebuilt from its config under the Keras mixed policy of that
dtype (`backbone.precision.POLICIES`: the weights stay float32, the layers
compute in the dtype) and the float32 weights are copied in; the model's
output layers (the softmax) keep float32. The serving function is then the
export's own (`export.make_serving_fn` with the card's views), traced here:
the same JPEG bytes in, float32 probabilities out.

  resolve            --compute_dtype for an export (auto: `backbone.precision`'s probe), logged
  in_compute_dtype   a Keras model rebuilt in a compute dtype, with the same weights
  load_keras_model   an export's model.keras in a compute dtype (the timeline)
  load_serving       an export's serving function in a compute dtype (predict, the prediction job)
"""

from __future__ import annotations

import copy
import logging
import posixpath
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from backbone import precision
from schemas import export_card
from schemas.errors import UsageError, one_line

if TYPE_CHECKING:  # keras loads with TensorFlow, when a model does
    import keras

logger = logging.getLogger(__name__)

MODEL_FILENAME = export_card.MODEL_FILENAME


def keras_model_path(model_dir: str) -> str:
    """The export's model.keras: in `model_dir` (a JOB_DIR) or beside it (a saved_model/ folder);
    "" where there is none."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    model_dir = model_dir.rstrip("/")
    for path in (posixpath.join(model_dir, MODEL_FILENAME),
                 posixpath.join(posixpath.dirname(model_dir), MODEL_FILENAME)):
        if tf.io.gfile.exists(path):
            return path
    return ""


def resolve(requested: str, model_dir: Optional[str] = None, cpuinfo_text: Optional[str] = None,
            compute_capabilities: Optional[Iterable[tuple]] = None) -> str:
    """The dtype `--compute_dtype=requested` means here, logged; a bad name is a UsageError.

    auto: bfloat16 where the hardware has it, else float32 (`backbone.precision`).
    With `model_dir` (an export that may be served from its SavedModel alone): a
    dtype other than float32 runs its model.keras, and without one auto falls
    back to float32 with a warning, and an explicit dtype is a UsageError.
    """
    dtype = precision.resolve_compute_dtype(requested, cpuinfo_text, compute_capabilities)
    if dtype != "float32" and model_dir is not None and not keras_model_path(model_dir):
        if requested != "auto":
            raise UsageError(f"--compute_dtype={dtype} runs the export's {MODEL_FILENAME}, and "
                             f"there is none in or beside {model_dir!r}: pass the training "
                             f"JOB_DIR, or --compute_dtype=float32 (the SavedModel alone)")
        logger.warning("--compute_dtype=auto: %s would be native here, but %r has no %s beside "
                       "its SavedModel: running in float32", dtype, model_dir, MODEL_FILENAME)
        dtype = "float32"
    warning = precision.compute_dtype_warning(dtype, cpuinfo_text, compute_capabilities)
    if warning:
        logger.warning("%s", warning)
    logger.info("the model computes in %s (--compute_dtype=%s)", dtype, requested)
    return dtype


def _set_policy(node: Any, policy: Dict[str, Any], keep: Sequence[str]) -> None:
    """Puts `policy` as the dtype of every layer config under `node` (nested models and wrapped
    layers too) but the inputs' and the layers named in `keep`."""
    if isinstance(node, list):
        for item in node:
            _set_policy(item, policy, keep)
        return
    if not isinstance(node, dict):
        return
    config = node.get("config")
    if (isinstance(config, dict) and "dtype" in config and node.get("class_name") != "InputLayer"
            and config.get("name") not in keep):
        config["dtype"] = copy.deepcopy(policy)
    for value in node.values():
        _set_policy(value, policy, keep)


def _output_layer_names(config: Dict[str, Any]) -> List[str]:
    """The names of a Functional config's output layers (`[name, node, tensor]` or a list)."""
    outputs = config.get("config", {}).get("output_layers") or []
    if outputs and isinstance(outputs[0], str):
        outputs = [outputs]
    return [str(output[0]) for output in outputs]


def in_compute_dtype(model: "keras.Model", compute_dtype: str) -> "keras.Model":
    """`model` rebuilt under the mixed policy of `compute_dtype`, with its weights (float32).

    float32: `model` itself. Otherwise a new model from `model`'s config in which
    every layer but the inputs and the output layers (the float32 softmax) has
    the policy `backbone.precision.POLICIES[compute_dtype]`; `model` is unchanged.
    """
    import keras  # pylint: disable=g-import-not-at-top,redefined-outer-name
    if compute_dtype == "float32":
        return model
    policy = keras.saving.serialize_keras_object(
        keras.DTypePolicy(precision.POLICIES[compute_dtype]))
    config = keras.saving.serialize_keras_object(model)
    keep = _output_layer_names(config)
    _set_policy(config.get("config", {}).get("layers", []), policy, keep)
    rebuilt = keras.saving.deserialize_keras_object(config, safe_mode=True)
    rebuilt.set_weights(model.get_weights())
    logger.debug("rebuilt %s under %s (output layers %s stay float32)", model.name,
                 precision.POLICIES[compute_dtype], ", ".join(keep))
    return rebuilt


def load_keras_model(path: str, compute_dtype: str = "float32") -> "keras.Model":
    """The Keras model at `path` (an export's model.keras) in `compute_dtype`.

    UsageError for a truncated or foreign model file.
    """
    import keras  # pylint: disable=g-import-not-at-top,redefined-outer-name
    # Registers the custom layers of older exports, so that they load too.
    from backbone import vgg16  # noqa: F401  pylint: disable=unused-import,g-import-not-at-top
    from trainer.modeling import heads  # noqa: F401  pylint: disable=unused-import,g-import-not-at-top
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except (OSError, ValueError, TypeError) as err:  # a truncated or foreign model file
        raise UsageError(f"cannot load {path!r}: {one_line(err)} (re-export the model with "
                         f"python -m trainer.task)") from err
    return in_compute_dtype(model, compute_dtype)


class Serving:
    """An export's serving function in a compute dtype: JPEG clips [B, T] -> probabilities [B, C].

    float32: the SavedModel's signature. Otherwise model.keras in the dtype
    behind the export's serving function (the same frame choice, decode and
    view averaging), traced once for string [None, None] inputs.
    """

    def __init__(self, saved_model_dir: str, compute_dtype: str = "float32"):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        self.saved_model_dir = saved_model_dir
        self.compute_dtype = compute_dtype
        self.card = export_card.read(saved_model_dir)
        if compute_dtype == "float32":
            self._loaded = tf.saved_model.load(saved_model_dir)  # keeps its variables alive
            if self.card.signature not in self._loaded.signatures:
                raise UsageError(f"{saved_model_dir!r} has no {self.card.signature!r} signature")
            self._serve = self._loaded.signatures[self.card.signature]
            return
        from trainer.data import parsers  # pylint: disable=g-import-not-at-top
        from trainer.serving import export  # pylint: disable=g-import-not-at-top
        path = keras_model_path(saved_model_dir)
        if not path:
            raise UsageError(f"--compute_dtype={compute_dtype}: no {MODEL_FILENAME} in or beside "
                             f"{saved_model_dir!r}")
        self.model = load_keras_model(path, compute_dtype)
        serve = export.make_serving_fn(
            self.model, self.card.labels, self.card.image_size, self.card.num_frames,
            parsers.EvalViews(int(self.card.eval_views), bool(self.card.eval_flip)))
        traced = tf.function(serve, input_signature=[
            tf.TensorSpec([None, None], tf.string, name=self.card.input)])
        self._serve = lambda **inputs: traced(inputs[self.card.input])

    def outputs(self, clips: Any) -> Dict[str, Any]:
        """The signature's outputs (probabilities, labels, top_label, top_probability)."""
        return self._serve(**{self.card.input: clips})

    def probabilities(self, clips: List[List[bytes]]) -> np.ndarray:
        """Probabilities (label order, float32) of clips that all have the same number of frames."""
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        outputs = self.outputs(tf.constant(clips, tf.string))
        return np.asarray(outputs["probabilities"], np.float32)


def load_serving(saved_model_dir: str, compute_dtype: str = "float32") -> Serving:
    """The serving function of the export in `saved_model_dir`, computing in `compute_dtype`."""
    return Serving(saved_model_dir, compute_dtype)


__all__ = ["Serving", "in_compute_dtype", "keras_model_path", "load_keras_model", "load_serving",
           "resolve"]
