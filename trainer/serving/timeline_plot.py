"""The timeline picture: the found plays as coloured bars over the game, and each label's probability.

Top: one bar per segment, coloured by label and named when wide enough
(uncertain segments hatched grey), above the true plays when they are known.
Bottom: the probability of each label that some window picked, at each
window's centre, with the `min_confidence` line. One colour per label in both,
and time in minutes:seconds, so that a coach can read off where each play is.
"""

from __future__ import annotations

import io
import os
from typing import Any, Dict, Optional, Sequence

from trainer.serving.segments import UNCERTAIN

_UNCERTAIN_COLOR = "#bbbbbb"


def _colors(labels: Sequence[str]) -> Dict[str, Any]:
    from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
    palette = colormaps["tab20"].colors
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))  # the strong colours first
    return {label: palette[order[i % 20]] for i, label in enumerate(labels)}


def _clock(seconds: float, _=None) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}" if seconds < 600 else \
        f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _bars(ax, y: float, items, colors, duration: float) -> None:
    """Segments or plays as bars on row y, named inside when there is room."""
    for item in items:
        label, start, end = item["label"], item["start"], item["end"]
        uncertain = label == UNCERTAIN
        ax.broken_barh([(start, end - start)], (y - 0.38, 0.76),
                       facecolors=_UNCERTAIN_COLOR if uncertain else colors.get(label, "k"),
                       edgecolor="white", linewidth=0.8, hatch="//" if uncertain else None)
        if not uncertain and (end - start) > duration / 60:
            ax.text((start + end) / 2, y, short_name(label), ha="center", va="center",
                    fontsize=7, rotation=90 if (end - start) < duration / 12 else 0,
                    clip_on=True)


def short_name(label: str) -> str:
    """A label short enough to stand inside a bar: pick_and_roll_roll_man -> p&r roll man."""
    return label.replace("pick_and_roll_", "p&r ").replace("ball_handler", "handler").replace(
        "_", " ")


def render_png(timeline: Dict[str, Any], plays: Optional[Sequence[Dict[str, Any]]] = None,
               dpi: int = 110) -> bytes:
    """The PNG bytes of the timeline picture (matplotlib, Agg backend)."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top
    from matplotlib.ticker import FuncFormatter  # pylint: disable=g-import-not-at-top

    labels = list(timeline["labels"])
    colors = _colors(labels)
    duration = max(float(timeline["duration"]), 1e-3)
    windows = timeline["windows"]
    rows = [("found", timeline["segments"])] + ([("true plays", plays)] if plays else [])
    width = min(24.0, max(11.0, duration / 6))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(width, 1.6 + 0.9 * len(rows) + 3.0), sharex=True,
        gridspec_kw={"height_ratios": [0.9 * len(rows) + 0.3, 3.0]})
    for y, (_, items) in enumerate(reversed(rows)):
        _bars(top, y, items, colors, duration)
    top.set_yticks(range(len(rows)), [name for name, _ in reversed(rows)])
    top.set_ylim(-0.6, len(rows) - 0.4)
    top.set_title(f"{os.path.basename(timeline['video'])}: plays found by the model "
                  f"({timeline['window_seconds']:g} s windows every {timeline['hop_seconds']:g} s)",
                  fontsize=10, loc="left")
    for side in ("top", "right", "left"):
        top.spines[side].set_visible(False)

    picked = sorted({w["label"] for w in windows}, key=labels.index)
    centres = [(w["start"] + w["end"]) / 2 for w in windows]
    for label in picked:
        i = labels.index(label)
        bottom.plot(centres, [w["probabilities"][i] for w in windows], color=colors[label],
                    linewidth=1.6, label=label.replace("_", " "))
    bottom.axhline(timeline["min_confidence"], color="0.4", linestyle="--", linewidth=0.9)
    bottom.text(0, timeline["min_confidence"], " min confidence", va="bottom", fontsize=7,
                color="0.3")
    bottom.set_ylim(0, 1.02)
    bottom.set_xlim(0, duration)
    bottom.set_ylabel("probability")
    bottom.set_xlabel("game time (m:ss)")
    bottom.xaxis.set_major_formatter(FuncFormatter(_clock))
    bottom.grid(axis="y", color="0.9")
    handles, names = bottom.get_legend_handles_labels()
    handles.append(Patch(facecolor=_UNCERTAIN_COLOR, hatch="//", label=UNCERTAIN))
    bottom.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
                  frameon=False, title="label", title_fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    plt.close(fig)
    return out.getvalue()


__all__ = ["render_png"]
