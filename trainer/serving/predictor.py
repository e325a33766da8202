"""`Predictor`: an exported model, fed plays sampled as its export card says.

A play (a frame folder, a video file, or a [start, end) range of a video) is
sampled by `media.sample_plays` with the export card's frame sampling (the
records' settings at the model's frame size) and sent as JPEG bytes to the
SavedModel's serving signature, which picks and decodes the frames itself and
averages the views the training run evaluated. `trainer.predict` is its
command line; the prediction job feeds the same signature in Beam. In a compute
dtype other than float32 the signature is the export's serving function on
model.keras rebuilt in that dtype (`trainer.serving.compute_dtype`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

from media import frames
from media.sample_plays import Play, sample_plays
from trainer.serving import compute_dtype as dtype_lib


class Predictor:
    """An exported model plus the frame sampling its export card describes."""

    def __init__(self, model_dir: str, pad_short: Optional[str] = None,
                 compute_dtype: str = "float32"):
        """Loads the export of a JOB_DIR or saved_model/ folder, computing in `compute_dtype`
        (float32 | bfloat16 | float16, resolved: `compute_dtype.resolve`).

        `pad_short` (loop | last | "") replaces the card's padding of short plays.
        """
        from trainer.serving import export  # pylint: disable=g-import-not-at-top
        self.saved_model_dir = export.resolve_saved_model_dir(model_dir)
        self.serving = dtype_lib.load_serving(self.saved_model_dir, compute_dtype)
        self.compute_dtype = compute_dtype
        self.card = self.serving.card
        self.labels: List[str] = list(self.card.labels)
        self.sampling = (self.card.sampling if pad_short is None
                         else dataclasses.replace(self.card.sampling, pad_short=pad_short))

    def read(self, path: str, start: Optional[float] = None,
             end: Optional[float] = None) -> List[bytes]:
        """The play's sampled JPEG frames, of [start, end) seconds when given (raises PlayError)."""
        if start is not None and not frames.is_video(path):
            raise frames.PlayError(f"--start/--end need a video file, got {path}", kind="bad_range")
        ((_, sampled),) = sample_plays([Play(path, start, end)], self.sampling)
        if isinstance(sampled, frames.PlayError):
            raise sampled
        return list(sampled.frames)

    def classify_frames(self, jpegs: Sequence[bytes]) -> List[float]:
        """Class probabilities (label order) of one clip given as JPEG bytes."""
        return [float(p) for p in self.serving.probabilities([list(jpegs)])[0]]

    def classify(self, path: str, top_k: int = 3, start: Optional[float] = None,
                 end: Optional[float] = None) -> Dict[str, Any]:
        """{'path', ['start', 'end'], 'top': [{'label', 'probability'}...], 'probabilities'}."""
        probabilities = self.classify_frames(self.read(path, start, end))
        order = sorted(range(len(probabilities)), key=lambda i: (-probabilities[i], i))
        where = {} if start is None else {"start": start, "end": end}
        return {
            "path": path,
            **where,
            "top": [{"label": self.labels[i], "probability": probabilities[i]}
                    for i in order[:max(1, top_k)]],
            "probabilities": dict(zip(self.labels, probabilities)),
        }


__all__ = ["Predictor"]
