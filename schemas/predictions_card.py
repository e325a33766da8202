"""`predictions.json`: the card the prediction job writes last beside its predictions.

Its presence marks a complete output, as `dataset.json` and `features.json` do
for the other jobs. It names the model and the input the predictions come from
and counts what was predicted and rejected (written + rejected = input).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

from schemas import dataset_card, play_record

CARD_NAME = "predictions.json"
EVAL_NAME = "eval.json"  # beside the card when the input has true labels (trainer.evaluation.evaluate's report)


@dataclasses.dataclass
class PredictionsCard(dataset_card.Card):
    """What a prediction-job output folder holds."""

    model: str  # the SavedModel folder the predictions come from
    labels: List[str]  # the model's label vocabulary, index order
    input: str  # the manifest, or the records folder
    split: str = ""  # with a records folder: the split read ("all": every split)
    top_k: int = 3
    # The dtype the model computed in (--compute_dtype, resolved at launch): float32 (the
    # SavedModel) | bfloat16 | float16 (model.keras rebuilt in it). Cards from before: float32.
    compute_dtype: str = "float32"
    num_written: int = 0  # plays predicted (lines of predictions-*.jsonl)
    num_labelled: int = 0  # of those, plays whose true label is in the model's vocabulary
    num_input: int = 0
    num_rejected: int = 0
    rejected_reasons: Dict[str, int] = dataclasses.field(default_factory=dict)
    eval_file: str = ""  # EVAL_NAME when written, else ""
    shard_pattern: str = "predictions-*-of-*.jsonl"
    args: Dict[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = play_record.SCHEMA_VERSION

    @classmethod
    def check_versions(cls, data: Dict[str, Any]) -> None:
        play_record.check_schema_version(data.get("schema_version"), "predictions card",
                                         ": re-run the prediction job with this version")
