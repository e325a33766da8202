"""Classify plays with an exported model.

    python -m trainer.predict --model JOB_DIR PLAY [PLAY ...] [--top_k 3] [--json]
    python -m trainer.predict --model JOB_DIR game.mp4 --start 754.2 --end 761.0
    python -m trainer.predict --model JOB_DIR PLAY --compute_dtype=bfloat16

A PLAY is a folder of frame images or a video file; with `--start` and `--end`
(seconds) the play is that range of the video, as a manifest row with start
and end is in the records job. `trainer.serving.predictor.Predictor` samples
each play the way the records job samples it (`media.sample_plays`, with the
frame sampling of the export card) and sends its JPEG bytes to the SavedModel's
`serving_default` signature, which picks and decodes the frames itself and
averages the views the training run evaluated (`--eval_views`, `--eval_flip`, in
the export card), so a play gets the probabilities that the run's `eval.json`
scored at play level (up to the float16 rounding of cached features, when the
run evaluated those). JOB_DIR may also be the `saved_model/` folder.

`--compute_dtype` (auto | float32 | bfloat16 | float16; auto: bfloat16 where the
hardware has it, `backbone.precision`) is the dtype the model computes in: float32
runs the SavedModel as exported; another dtype runs the export's `model.keras`
rebuilt in it behind the same serving function (`trainer.serving.compute_dtype`),
with float32 probabilities. The text output's first line says which.

Exit status: 0 when every play was classified, 2 on a usage error, a missing
or unreadable model, or when any play could not be read (one line per play on
stderr; the other plays are still classified).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from backbone import precision  # noqa: E402
from media import frames, video_clips  # noqa: E402
from schemas import sampling  # noqa: E402
from schemas.errors import EXIT_USAGE, UsageError, one_line  # noqa: E402
from trainer import logs  # noqa: E402
from trainer.serving import compute_dtype as dtype_lib, export  # noqa: E402
from trainer.serving.predictor import Predictor  # noqa: E402


def format_result(result: Dict[str, Any]) -> str:
    """One play as text: the path, then one `rank. label  probability` line per top label."""
    lines = [result["path"] + (f" {result['start']:.3f}-{result['end']:.3f} s"
                               if "start" in result else "")]
    width = max(len(t["label"]) for t in result["top"])
    for rank, top in enumerate(result["top"], 1):
        lines.append(f"  {rank}. {top['label']:<{width}}  {top['probability']:.4f}")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.predict",
        description="Classify plays (frame folders or video files) with an exported model.")
    parser.add_argument("--model", required=True,
                        help="the training JOB_DIR or its saved_model/ folder (local or gs://)")
    parser.add_argument("plays", nargs="+", metavar="PATH",
                        help="a folder of frame images or a video file")
    parser.add_argument("--top_k", type=int, default=3, help="labels to print per play (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--start", type=float, default=None,
                        help="seconds: classify the play that starts here in each video (with --end)")
    parser.add_argument("--end", type=float, default=None,
                        help="seconds: where that play ends (exclusive)")
    parser.add_argument("--pad_short", choices=sampling.PAD_SHORT_MODES, default=None,
                        help="pad plays with fewer frames than the records hold "
                             "(default: what the export card says, else reject them)")
    parser.add_argument("--compute_dtype", choices=precision.COMPUTE_DTYPES, default="auto",
                        help=precision.compute_dtype_help(
                            "the model", "float32 runs the SavedModel, another dtype the "
                            "model.keras beside it"))
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top_k must be >= 1, got {args.top_k}")
    if (args.start is None) != (args.end is None):
        parser.error("--start and --end go together")
    if args.start is not None and video_clips.range_problem(args.start, args.end):
        parser.error(f"--start/--end: {video_clips.range_problem(args.start, args.end)}")
    return args


def _error(message: str) -> None:
    print(f"predict: error: {message}", file=sys.stderr)


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status."""
    args = parse_args(argv)
    if args.json:  # stdout is the JSON alone: warnings on stderr, no info lines
        logs.configure(logging.WARNING, stderr=True)
    else:
        logs.configure()
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
        dtype = dtype_lib.resolve(args.compute_dtype, export.resolve_saved_model_dir(args.model))
        predictor = Predictor(args.model, pad_short=args.pad_short, compute_dtype=dtype)
    except (UsageError, OSError, tf.errors.OpError) as err:  # missing, unreadable or foreign model
        _error(f"cannot load model {args.model!r}: {one_line(err)}")
        return EXIT_USAGE

    results: List[Dict[str, Any]] = []
    failed = 0
    for path in args.plays:
        try:
            result = predictor.classify(path, top_k=args.top_k, start=args.start, end=args.end)
        except frames.PlayError as err:
            result = {"path": path, "error": one_line(err)}
        except tf.errors.InvalidArgumentError as err:  # a frame TensorFlow cannot decode
            result = {"path": path, "error": f"{type(err).__name__}: {one_line(err)}"}
        if "error" in result:
            failed += 1
            _error(f"{path}: {result['error']}")
        elif not args.json:
            print(format_result(result))
        results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
    return EXIT_USAGE if failed else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
