"""What a search leaves in OUTPUT_DIR: trials.csv, trials.png and best_flags.txt.

trials.csv       one row per trial, in the order they started: trial_id, status, each tuned
                 flag, val_accuracy (the best epoch's), best_epoch, epochs, seconds
                 (empty for a trial that did not finish)
trials.png       each trial's val_accuracy, coloured by head; beside it val_accuracy against
                 each other tuned flag (one point per trial, the same colours)
best_flags.txt   one line: the `python -m trainer.task` command that trains the best trial
                 (its flags, with --job_dir=OUTPUT_DIR/best), evaluating test and exporting
"""

from __future__ import annotations

import csv
import io
import os
import shlex
from typing import Any, Dict, List, Optional, Sequence

import tensorflow as tf

from trainer.tuning import space as space_lib

TRIALS_CSV = "trials.csv"
TRIALS_PNG = "trials.png"
BEST_FLAGS = "best_flags.txt"
RESULT_COLUMNS = ("val_accuracy", "best_epoch", "epochs", "seconds")
COLUMNS = ("trial_id", "status", *space_lib.TUNED, *RESULT_COLUMNS)


def _write(path: str, data: bytes) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return space_lib.format_value(value) if isinstance(value, float) else str(value)


def write_csv(rows: Sequence[Dict[str, Any]], path: str) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in COLUMNS])
    _write(path, text.getvalue().encode("utf-8"))


def best_command(best: Dict[str, Any], output_dir: str) -> str:
    """The command line of the best trial (its flags, a job folder of its own)."""
    flags = [*best["flags"], f"--job_dir={os.path.join(output_dir, 'best')}"]
    return shlex.join(["python", "-m", "trainer.task", *flags])


def write_best_flags(best: Dict[str, Any], output_dir: str) -> str:
    """OUTPUT_DIR/best_flags.txt (one line); returns its path."""
    path = os.path.join(output_dir, BEST_FLAGS)
    _write(path, (best_command(best, output_dir) + "\n").encode("utf-8"))
    return path


def plot(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """trials.png (see the module docstring)."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top

    heads = sorted({str(row["head"]) for row in rows})
    palette = colormaps["tab10"].colors
    colors = {head: palette[i % 10] for i, head in enumerate(heads)}
    others = [flag for flag in space_lib.TUNED if flag != "head"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    try:
        bars, panels = axes[0][0], [ax for line in axes for ax in line][1:]
        ids = [str(row["trial_id"]) for row in rows]
        accuracy = [_accuracy(row) for row in rows]
        bars.bar(range(len(rows)), [a if a is not None else 0.0 for a in accuracy],
                 color=[colors[str(row["head"])] for row in rows],
                 edgecolor="white")
        for x, value in enumerate(accuracy):
            if value is None:
                bars.text(x, 0.02, "not\nfinished", ha="center", va="bottom", fontsize=7)
        bars.set_xticks(range(len(rows)), labels=ids, rotation=90 if len(rows) > 20 else 0,
                        fontsize=8)
        bars.set_xlabel("trial")
        bars.set_ylabel("val_accuracy (best epoch)")
        bars.set_ylim(0, 1.02)
        bars.set_title("val_accuracy per trial")
        for ax, flag in zip(panels, others):
            done = [row for row in rows if _accuracy(row) is not None]
            ax.scatter([row[flag] for row in done], [_accuracy(row) for row in done],
                       c=[colors[str(row["head"])] for row in done], s=36, edgecolors="k",
                       linewidths=0.4)
            if flag == "learning_rate":
                ax.set_xscale("log")
                ax.set_xlim(space_lib.LEARNING_RATE[0] / 1.2, space_lib.LEARNING_RATE[1] * 1.2)
            elif flag == "dropout":
                ax.set_xlim(space_lib.DROPOUT[0] - 0.02, space_lib.DROPOUT[1] + 0.02)
            else:
                values = sorted({row[flag] for row in rows if row[flag] is not None})
                ax.set_xscale("log", base=2)
                ax.set_xticks(values, labels=[str(v) for v in values])
                ax.minorticks_off()
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(flag)
            ax.grid(color="0.92")
        fig.legend(handles=[Patch(color=colors[head], label=head) for head in heads],
                   title="head", loc="upper right", fontsize=8, title_fontsize=8)
        fig.tight_layout(rect=(0, 0, 0.9, 1))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    _write(path, buffer.getvalue())


def _accuracy(row: Dict[str, Any]) -> Optional[float]:
    value = row.get("val_accuracy")
    return None if value is None else float(value)


def write_all(rows: Sequence[Dict[str, Any]], best: Optional[Dict[str, Any]],
              output_dir: str) -> List[str]:
    """trials.csv, trials.png and (when a trial finished) best_flags.txt; returns their paths."""
    paths = [os.path.join(output_dir, TRIALS_CSV), os.path.join(output_dir, TRIALS_PNG)]
    write_csv(rows, paths[0])
    plot(rows, paths[1])
    if best is not None:
        paths.append(write_best_flags(best, output_dir))
    return paths


def summary_lines(rows: Sequence[Dict[str, Any]], best: Optional[Dict[str, Any]],
                  trials_run: int, output_dir: str) -> List[str]:
    """The command's key=value lines."""
    finished = sum(1 for row in rows if row.get("val_accuracy") is not None)
    lines = [f"trials={len(rows)}", f"trials_finished={finished}", f"trials_run={trials_run}"]
    if best is None:
        return lines + ["best_val_accuracy=none"]
    return lines + [f"best_trial={best['trial_id']}",
                    f"best_val_accuracy={float(best['val_accuracy']):.4f}",
                    f"best_flags={os.path.join(output_dir, BEST_FLAGS)}"]
