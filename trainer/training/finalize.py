"""The end of a run (chief): the weights chosen, evaluated over the play's views, exported.

`finalize` puts the trained weights in plain models (outside the strategy),
replaces them with the best validation epoch's (--export_weights=best) when
the fit loop recorded one for this model, evaluates the model the task names
on test (else val; --eval_split) and exports the task's classifier (unless
--export=false). A tuning trial (--eval_split=none --export=false) does
neither: test stays unseen while hyperparameters are chosen.

What it writes under JOB_DIR: eval.json and confusion_matrix.png (the
evaluation), model.keras and saved_model/ (the export).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import keras

from schemas.errors import UsageError
from trainer.evaluation import predictions, reports
from trainer.serving import export
from trainer.training.config import EvaluationConfig
from trainer.training.play_task import Phase, PlayClassificationTask

logger = logging.getLogger(__name__)


def choose_weights(model: keras.Model, export_weights: str, best: Optional[Dict[str, Any]],
                   last: Optional[Dict[str, Any]], best_path: str,
                   total_epochs: int) -> Dict[str, Any]:
    """Loads the best epoch's weights (`best_path`) into `model` when asked and recorded for it;
    returns the record of the weights it holds (eval.json's "weights")."""
    record = dict(last or {"epoch": total_epochs, "value": None})
    if export_weights == "best" and best and best.get("model") == model.name:
        try:
            model.load_weights(best_path)
        except (ValueError, OSError, KeyError) as err:
            raise UsageError(f"{best_path} does not fit this model "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:160]}): "
                             f"it holds another run's weights; use a new --job_dir or "
                             f"--export_weights=last") from None
        record = dict(best)
    elif export_weights == "best":
        logger.warning("no best epoch recorded for this model: evaluating the last epoch's "
                       "weights")
    return {"export_weights": export_weights, "epoch": record.get("epoch"),
            "monitor": record.get("monitor"), "value": record.get("value"),
            "tie_break": record.get("tie_break"),
            "tie_break_value": record.get("tie_break_value")}


def finalize(task: PlayClassificationTask, model: keras.Model, phase: Phase,
             evaluation: EvaluationConfig, job_dir: str, *, best: Optional[Dict[str, Any]],
             last: Optional[Dict[str, Any]], best_path: str) -> Dict[str, Any]:
    """Chief only: `model` (trained by `phase`, the last one) with the chosen weights, evaluated
    on test (or val) over the play's views and exported with the same views.

    `best` and `last` are the fit loop's epoch records, `best_path` its best
    weights. Returns {"eval": ..., "export": ...} for the run's summary (each when done).
    """
    if evaluation.eval_split == "none" and not evaluation.export:
        logger.info("--eval_split=none --export=false: no final evaluation or export")
        return {}
    plain = task.plain_model(phase)
    plain.set_weights(model.get_weights())
    weights = choose_weights(plain, evaluation.export_weights, best, last, best_path,
                             phase.epochs)
    evaluated, exported_model = task.final_models(plain, phase)
    doing = " and ".join(name for name, done in (("evaluating", evaluation.eval_split != "none"),
                                                  ("exporting", evaluation.export)) if done)
    logger.info("%s the weights of epoch %s (--export_weights=%s)", doing, weights["epoch"],
                evaluation.export_weights)
    result: Dict[str, Any] = {}
    report = evaluate_model(task, evaluated, weights, job_dir, evaluation.eval_split)
    if report is not None:
        result["eval"] = report
    if evaluation.export:
        result["export"] = export_classifier(task, exported_model, job_dir)
    return result


def evaluate_model(task: PlayClassificationTask, model: keras.Model, weights: Dict[str, Any],
                   job_dir: str, eval_split: str = "test") -> Optional[Dict[str, Any]]:
    """Scores `model` on the task's eval source and writes eval.json: on test (else val) with
    `eval_split` test, on val with val; None with none, or when there is no such split."""
    plays, source, views = task.plays, task.eval_source, task.eval_views
    if eval_split == "none":
        logger.info("--eval_split=none: skipped evaluation")
        return None
    split = "test" if eval_split == "test" and source.files["test"] else "val"
    if not source.files[split]:
        logger.info("no test or val split: skipped evaluation")
        return None
    with task.reading():
        labels, scores = predictions.predict_views(model, task.eval_dataset(split))
    no_play_label = getattr(plays.card, "no_play_label", "") if plays.card else ""
    report = reports.view_report(labels, scores, list(plays.labels), averaged=views.count,
                                 centre=views.centre, flip=views.flip, no_play_label=no_play_label)
    report["views"]["source"] = source.record_kind
    report["split"] = split  # --eval_split: test (else val), or val
    report["weights"] = weights
    reports.write_report(report, list(plays.labels), job_dir)
    if source.corrupt_files and source.corrupt_files.get(split):
        logger.info("%s: skipped %d corrupt record(s) (with the rest of their files)",
                    split, len(source.corrupt_files[split]))
    logger.info(reports.format_summary(split, report["clip"], "clip"))
    logger.info(reports.format_summary(split, report["play"], "play"))
    if "play_labels" in report:
        logger.info(reports.format_summary(split, report["play_labels"],
                                           f"play (without {no_play_label})"))
    return {"split": split, "accuracy": report["accuracy"],
            "num_examples": report["num_examples"], "clip": report["clip"],
            "play": report["play"], "weights": weights}


def export_classifier(task: PlayClassificationTask, model: keras.Model,
                      job_dir: str) -> Dict[str, str]:
    """Exports the classifier on clips with the records' frame sampling and the eval views:
    JOB_DIR/model.keras and JOB_DIR/saved_model/."""
    plays, views = task.plays, task.eval_views
    card = plays.card
    exported = export.export_model(
        model, job_dir, labels=list(plays.labels),
        image_size=plays.image_size, num_frames=plays.num_frames,
        sampling=card.sampling if card else None,
        eval_views=views.windows, eval_flip=views.flip)
    logger.info("exported %s and %s", exported["model_path"], exported["saved_model_dir"])
    return {"model_path": exported["model_path"],
            "saved_model_dir": exported["saved_model_dir"]}
