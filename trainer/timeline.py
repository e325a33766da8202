"""Plays found and labelled over a whole game video: a timeline.

    python -m trainer.timeline --model=JOB_DIR VIDEO [--output_dir=DIR] [--hop_seconds=0.5]
        [--window_seconds=S] [--min_confidence=0.5] [--min_play_seconds=S] [--plays=plays.csv]
        [--compute_dtype=auto|float32|bfloat16|float16]

The video is decoded once, forward, and resampled at the rate the model's
records were made at (the export card's `frame_rate`; with `--window_seconds`,
`record_num_frames / window_seconds`), each frame resized and JPEG-encoded as
the records job stores it. A window is one record's worth of sampled frames
(`record_num_frames`), every `--hop_seconds`; the base runs once per sampled
frame that some window uses and the head once per window, so memory stays the
same for any length of video (`trainer.serving.timeline`).

How windows map to time and merge into segments (`trainer.serving.segments`): each
window owns the time nearest its centre, so the owned spans tile the video from
0 s to its end; consecutive windows with the same top label make one segment. A
window whose best probability is below `--min_confidence` is marked
`"uncertain": true` in `windows`, and uncertain windows form segments labelled
`"uncertain"`. A video shorter than one window gets one window over all its
frames, one segment, and a note.

Outputs in DIR (default: VIDEO's name without extension + `_timeline/`):
`timeline.json` (video, model, labels, window and hop seconds, sampling rate,
compute_dtype, segments, windows with their probabilities in label order, notes, counts),
`timeline.csv` (one row per segment) and `timeline.png` (`trainer.serving.timeline_plot`).
With `--plays` (a records-job manifest with start/end, e.g. the demo games'
`plays.csv`; rows of other videos are ignored) the true plays are drawn too and
`play_majority_accuracy=` is printed: the share of true plays whose most
overlapping segment has their label, with the detection report (`eval.json`:
mAP at tIoU, precision, recall and F1) and `false_plays.csv`: the detected plays
that overlap no true play at tIoU 0.3 or more, as rows of the records job's
manifest labelled `--no_play_label` (hard-negative mining: append them to the
training manifest and remake the records, docs/timeline.md). On stdout: `real_time_factor=` (video
seconds per wall-clock second, model loading excluded) and `frames_per_s=`
(sampled frames per wall-clock second), after `compute_dtype=` (the dtype the model
computed in: `--compute_dtype`, auto resolved by `backbone.precision`'s probe; the
exported float32 model is rebuilt in it, `trainer.serving.compute_dtype`).

Exit status 0; 2 with one `error:` line for an unreadable or empty video, a
model folder without an export, or a hop or window that does not fit the model.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from backbone import precision  # noqa: E402
from schemas.errors import EXIT_USAGE, UsageError, one_line  # noqa: E402
from trainer.serving import compute_dtype as dtype_lib  # noqa: E402
from trainer.serving import segments as segments_lib  # noqa: E402
from trainer.serving.timeline import (  # noqa: E402
    DEFAULT_BATCH_SIZE, DEFAULT_HOP_SECONDS, DEFAULT_MIN_CONFIDENCE, TimelineStats,
    compute_timeline)
from trainer.serving.timeline_model import TimelineModel  # noqa: E402
from trainer.serving.timeline_outputs import (  # noqa: E402
    FALSE_PLAYS_NAME, read_plays, score_detections, score_plays, write_outputs)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.timeline",
        description="Find and label the plays of a whole game video with an exported model.")
    parser.add_argument("--model", required=True, help="the training JOB_DIR (local or gs://)")
    parser.add_argument("video", metavar="VIDEO", help="the game video (mp4, mkv, mov, ...)")
    parser.add_argument("--output_dir", default=None,
                        help="where timeline.json/.csv/.png go (default: VIDEO without its "
                             "extension + _timeline/)")
    parser.add_argument("--hop_seconds", type=float, default=DEFAULT_HOP_SECONDS,
                        help=f"seconds between window starts (default {DEFAULT_HOP_SECONDS})")
    parser.add_argument("--window_seconds", type=float, default=None,
                        help="window length (default: the model's record_num_frames / frame_rate)")
    parser.add_argument("--min_confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                        help="windows whose best probability is below this are 'uncertain' "
                             f"(default {DEFAULT_MIN_CONFIDENCE})")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"frames per base call (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--no_play_label", default=segments_lib.NO_PLAY,
                        help="the model's label for time that is no play: its windows separate "
                             "plays and are not detected plays (default %(default)s)")
    parser.add_argument("--min_play_seconds", type=float, default=None,
                        help="detected plays (runs of one play label) shorter than this are "
                             "dropped from plays and plays.csv; they stay in the segments "
                             "(default: half a window)")
    parser.add_argument("--plays", default=None,
                        help="a manifest with the video's true plays (label,path,start,end; e.g. "
                             "the demo games' plays.csv): drawn, and scored")
    parser.add_argument("--compute_dtype", choices=precision.COMPUTE_DTYPES, default="auto",
                        help=precision.compute_dtype_help(
                            "the model", "recorded in timeline.json (compute_dtype)"))
    return parser.parse_args(argv)


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status."""
    args = parse_args(argv)
    try:
        model = TimelineModel(args.model, dtype_lib.resolve(args.compute_dtype))
        plays = read_plays(args.plays, args.video) if args.plays else None
        stats = TimelineStats()
        timeline = compute_timeline(model, args.video, hop_seconds=args.hop_seconds,
                                    window_seconds=args.window_seconds,
                                    min_confidence=args.min_confidence,
                                    batch_size=args.batch_size, stats=stats,
                                    no_play_label=args.no_play_label,
                                    min_play_seconds=args.min_play_seconds)
        output_dir = args.output_dir or os.path.splitext(args.video)[0] + "_timeline"
        if plays is not None:
            timeline["truth"] = score_plays(timeline, plays)
            timeline["detection"] = score_detections(timeline, plays,
                                                     os.path.basename(args.video))
        write_outputs(timeline, output_dir, plays)
    except UsageError as err:
        print(f"timeline: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    for note in timeline["notes"]:
        print(f"note: {note}")
    print(f"{len(timeline['plays'])} plays in {len(timeline['segments'])} segments from "
          f"{stats.windows} windows over {stats.duration:.1f} s -> {output_dir}")
    print(f"windows={stats.windows} frames_sampled={stats.frames_sampled} "
          f"frames_embedded={stats.frames_embedded}")
    if plays is not None:
        truth = timeline["truth"]
        print(f"play_majority_accuracy={truth['play_majority_accuracy']:.4f} "
              f"(n={truth['n']})")
        report = timeline["detection"]
        for key in ("map_tiou_0_3", "map_tiou_0_5", "map_tiou_0_7", "map_tiou_avg",
                    "precision_tiou_0_5", "recall_tiou_0_5", "f1_tiou_0_5"):
            print(f"{key}={report[key]:.4f}")
        print(f"num_true_plays={report['num_true_plays']} "
              f"num_detections={report['num_detections']}")
        print(f"false_plays={report['num_false_plays']} (overlapping no true play: "
              f"{FALSE_PLAYS_NAME}, background rows for the records job)")
    print(f"compute_dtype={model.compute_dtype}")
    print(f"real_time_factor={stats.real_time_factor:.2f}")
    print(f"frames_per_s={stats.frames_per_s:.1f}")
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
