"""The timeline's files and its score against true plays.

`write_outputs` writes `timeline.json` (the whole `compute_timeline` result),
`timeline.csv` (one row per segment), `plays.csv` (the detected plays) and
`timeline.png` (`trainer.serving.timeline_plot`); `read_plays` reads a video's
true plays from a records-job manifest, `score_plays` and `score_detections`
score the timeline against them, and `false_plays.csv` lists the detected plays
that overlap none (hard negatives for the records job).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from typing import Any, Dict, List, Optional, Sequence

from schemas.errors import UsageError, one_line
from trainer.evaluation import detection
from trainer.serving import segments as segments_lib

JSON_NAME, CSV_NAME, PNG_NAME = "timeline.json", "timeline.csv", "timeline.png"
PLAYS_NAME = "plays.csv"  # the detected plays as a records-job manifest (+ confidence)
PLAYS_COLUMNS = ("play_id", "label", "path", "game_id", "start", "end", "confidence")
EVAL_NAME = "eval.json"  # with --plays: the detection report
# With --plays: the detected plays that overlap no true play (tIoU < 0.3) as background rows of
# the records job's manifest (hard-negative mining), and the label the model gave them.
FALSE_PLAYS_NAME = "false_plays.csv"
FALSE_PLAYS_COLUMNS = PLAYS_COLUMNS + ("detected_label",)


def true_plays_row(row: Dict[str, str]) -> Dict[str, Any]:
    """A true play from a manifest row (play_id, label, path, game_id, start, end); KeyError or
    ValueError when label, start or end is missing or not a number."""
    return {"play_id": row.get("play_id") or "", "label": row["label"],
            "start": float(row["start"]), "end": float(row["end"]),
            "path": row.get("path") or "", "game_id": row.get("game_id") or ""}


def read_plays(manifest: str, video: str) -> List[Dict[str, Any]]:
    """The rows of a records-job manifest (CSV with start/end) whose path names `video`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
        with tf.io.gfile.GFile(manifest, "r") as f:
            rows = list(csv.DictReader(f))
    except (OSError, tf.errors.OpError) as err:
        raise UsageError(f"cannot read --plays {manifest!r}: {one_line(err)}") from err
    name = posixpath.basename(video)
    plays = []
    for number, row in enumerate(rows, 2):
        if posixpath.basename(row.get("path") or "") != name:
            continue
        try:
            plays.append(true_plays_row(row))
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"--plays {manifest!r} row {number}: needs label, start and end "
                             f"({one_line(err)})") from err
    if not plays:
        raise UsageError(f"--plays {manifest!r} has no row whose path is {name!r}")
    return plays


def score_plays(timeline: Dict[str, Any], plays: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Each true play's covering segment (majority overlap) and whether its label is right."""
    scored = []
    for play in plays:
        found = segments_lib.majority_label(timeline["segments"], play["start"], play["end"])
        scored.append(dict(play, found=found, correct=found == play["label"]))
    correct = sum(p["correct"] for p in scored)
    return {"plays": scored, "correct": correct, "n": len(scored),
            "play_majority_accuracy": correct / len(scored) if scored else float("nan")}


def true_segments(plays: Sequence[Dict[str, Any]], game: str) -> List[detection.Segment]:
    """A video's true plays (`read_plays` rows) as scored segments of `game`."""
    return [detection.Segment(game, float(p["start"]), float(p["end"]), p["label"])
            for p in plays]


def detected_plays(timeline: Dict[str, Any], game: str) -> List[detection.Segment]:
    """The timeline's detected plays (`plays`: neither uncertain nor no play) as scored
    segments (score: the play's confidence)."""
    return [detection.Segment(game, float(p["start"]), float(p["end"]), p["label"],
                              float(p["confidence"]))
            for p in timeline["plays"]]


def game_id_of(video: str) -> str:
    """A game's id in plays.csv: the video's file name without its extension."""
    return posixpath.splitext(posixpath.basename(video.replace("\\", "/")))[0]


def plays_rows(timeline: Dict[str, Any]) -> List[List[str]]:
    """plays.csv's rows: the records job's manifest columns and the confidence, so that the
    detected plays go back into the records job (to label or correct) or the prediction job."""
    game = game_id_of(timeline["video"])
    return [[f"{game}-{k:04d}", p["label"], timeline["video"], game, f"{p['start']:.3f}",
             f"{p['end']:.3f}", f"{p['confidence']:.4f}"]
            for k, p in enumerate(timeline["plays"])]


def false_plays_rows(timeline: Dict[str, Any],
                     plays: Sequence[Dict[str, Any]]) -> List[List[str]]:
    """false_plays.csv's rows: each detected play that overlaps no true play at tIoU 0.3 or more
    (`detection.false_detections`), labelled with the timeline's `no_play_label`, with the path
    and game id of the video's rows in the true plays' manifest, so that appended to it they go
    back into the records job as background clips of the right game (and split)."""
    game = posixpath.basename(timeline["video"])
    truth = true_segments(plays, game)
    false = detection.false_detections(truth, detected_plays(timeline, game))
    path = (plays[0].get("path") if plays else "") or timeline["video"]
    game_id = (plays[0].get("game_id") if plays else "") or game_id_of(timeline["video"])
    no_play_label = timeline.get("no_play_label") or segments_lib.NO_PLAY
    return [[f"{game_id}-false-{k:04d}", no_play_label, path, game_id, f"{d.start:.3f}",
             f"{d.end:.3f}", f"{d.score:.4f}", d.label] for k, d in enumerate(false)]


def score_detections(timeline: Dict[str, Any], plays: Sequence[Dict[str, Any]],
                     game: str) -> Dict[str, Any]:
    """The detection report (mAP at tIoU, precision/recall/F1 at tIoU 0.5, intervals over
    games: one game here) with `play_majority_accuracy` and its n."""
    truth = true_segments(plays, game)
    found = detected_plays(timeline, game)
    report = detection.detection_report(truth, found)
    report["num_false_plays"] = len(detection.false_detections(truth, found))
    majority = score_plays(timeline, plays)
    report["play_majority_accuracy"] = majority["play_majority_accuracy"]
    report["play_majority_n"] = majority["n"]
    return report


def _write_csv(path: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(rows)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text.getvalue())


def write_outputs(timeline: Dict[str, Any], output_dir: str,
                  plays: Optional[Sequence[Dict[str, Any]]] = None, png: bool = True) -> None:
    """timeline.json, timeline.csv, plays.csv and timeline.png (unless `png` is False; and
    eval.json and false_plays.csv when scored against `plays`) into `output_dir` (local or gs://)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from trainer.serving import timeline_plot  # pylint: disable=g-import-not-at-top
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(posixpath.join(output_dir, JSON_NAME), "w") as f:
        f.write(json.dumps(timeline, indent=1))
    _write_csv(posixpath.join(output_dir, CSV_NAME),
               ("start", "end", "label", "confidence", "first_window", "last_window"),
               [[f"{s['start']:.3f}", f"{s['end']:.3f}", s["label"], f"{s['confidence']:.4f}",
                 s["first_window"], s["last_window"]] for s in timeline["segments"]])
    _write_csv(posixpath.join(output_dir, PLAYS_NAME), PLAYS_COLUMNS, plays_rows(timeline))
    if png:
        with tf.io.gfile.GFile(posixpath.join(output_dir, PNG_NAME), "wb") as f:
            f.write(timeline_plot.render_png(timeline, plays))
    if "detection" in timeline:
        with tf.io.gfile.GFile(posixpath.join(output_dir, EVAL_NAME), "w") as f:
            f.write(json.dumps(timeline["detection"], indent=1, sort_keys=True))
    if plays:
        _write_csv(posixpath.join(output_dir, FALSE_PLAYS_NAME), FALSE_PLAYS_COLUMNS,
                   false_plays_rows(timeline, plays))
