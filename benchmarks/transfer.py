"""The transfer table: which VGG16 cut, frozen or fine-tuned, pretrained or from scratch, at what cost.

On the user's play records, one run trains the same head (the Makefile's DEMO_TRAIN_FLAGS:
GRU 64, 8 frames, batch 8) with the same splits and the same epoch budget, six ways:

  frozen block3_pool / block4_pool / block5_pool
        the embed job caches the base's features once (--weights), the head trains on them
        for --epochs;
  fine-tune top block
        the block5_pool head above, then --epochs more with block5 unfrozen on the JPEG
        records (the trainer's --fine_tune_epochs, --fine_tune_from=block5_conv1);
  all trainable (weights)
        the whole network trainable from --weights on the JPEG records (--trainable_from=all),
        --epochs at --all_learning_rate;
  from scratch
        the same with --weights=none.

    python benchmarks/transfer.py --records_dir=runs/demo/records --weights=imagenet \\
        --output_dir=runs/transfer --epochs=10

Writes OUTPUT_DIR/transfer.md (play-level accuracy with its n and Wilson 95% interval,
macro-F1 with its bootstrap interval, embed and training seconds) and OUTPUT_DIR/transfer.png
(accuracy against seconds), and prints one key=value line per row and column. With
--weights=imagenet and no weights file in the Keras cache it stops with one `error:` line
saying where the file goes (exit 2). A rerun with the same OUTPUT_DIR keeps the steps that
finished (their seconds are kept beside them) and runs the rest.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import quality  # noqa: E402  (benchmarks/quality.py: the jobs' steps)
from schemas import features_card  # noqa: E402
from schemas.errors import UsageError  # noqa: E402

CUTS = ("block3_pool", "block4_pool", "block5_pool")
COLUMNS = ("row", "play accuracy (n, 95% CI)", "macro-F1 (95% CI)", "embed s", "train s", "total s")


def check_weights(weights: str) -> None:
    """imagenet without the Keras cache's file, or a missing PATH: UsageError saying what to do."""
    from backbone import vgg16  # pylint: disable=g-import-not-at-top
    if weights.lower() == "imagenet":
        path = features_card.imagenet_weights_path()
        if not os.path.exists(path):
            raise vgg16.imagenet_unavailable(f"no {path}")
    elif weights.lower() != "none" and not os.path.exists(weights):
        raise UsageError(f"--weights={weights!r}: no such file. Give a VGG16 notop weights file "
                         f"(.h5 or .weights.h5), 'imagenet' or 'none'")


def _row(key: str, name: str, report: Dict, embed_s: float, train_s: float) -> Dict:
    play = report["play"]
    return {"key": key, "row": name, "n": play["n"], "accuracy": play["accuracy"],
            "ci_low": play["accuracy_ci_low"], "ci_high": play["accuracy_ci_high"],
            "macro_f1": play["macro_f1"], "f1_low": play["macro_f1_ci_low"],
            "f1_high": play["macro_f1_ci_high"], "embed_s": embed_s, "train_s": train_s}


def table(rows: List[Dict], header: str) -> str:
    """The markdown table of the rows."""
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['accuracy']:.3f} ({r['n']}, {r['ci_low']:.3f}-{r['ci_high']:.3f}) "
            f"| {r['macro_f1']:.3f} ({r['f1_low']:.3f}-{r['f1_high']:.3f}) | {r['embed_s']:.1f} "
            f"| {r['train_s']:.1f} | {r['embed_s'] + r['train_s']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: List[Dict], path: str, title: str) -> None:
    """Play-level accuracy (Wilson 95% bars) against embed + training seconds."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        cost = r["embed_s"] + r["train_s"]
        ax.errorbar([cost], [r["accuracy"]], yerr=[[r["accuracy"] - r["ci_low"]], [r["ci_high"] - r["accuracy"]]],
                    fmt="o", capsize=3)
        ax.annotate(r["row"], (cost, r["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("embed + training seconds (log)")
    ax.set_ylabel("test play accuracy (Wilson 95%)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args) -> List[Dict]:
    from beam_jobs import make_records  # pylint: disable=g-import-not-at-top
    card = make_records.read_card(args.records_dir)
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    head = [f"--num_frames={args.num_frames}", "--rnn=gru", f"--rnn_units={args.rnn_units}",
            f"--batch_size={args.batch_size}", f"--epochs={args.epochs}",
            f"--eval_views={args.eval_views}", "--seed=0"]
    frozen = ["--trainable_from=none", f"--learning_rate={args.learning_rate}"]
    rows, embed_s = [], {}
    for cut in CUTS:
        features = os.path.join(out, "features", cut)
        embed_s[cut] = quality.timed(features, lambda: quality.embed(
            args.records_dir, features, cut, args.weights, args.workers))
        report, seconds = quality.timed_train(os.path.join(out, "jobs", f"frozen_{cut}"), [
            f"--features_dir={features}", f"--data_dir={args.records_dir}", f"--cut_layer={cut}",
            f"--weights={args.weights}", *head, *frozen])
        rows.append(_row(f"frozen_{cut}", f"frozen {cut}", report, embed_s[cut], seconds))
    report, seconds = quality.timed_train(os.path.join(out, "jobs", "fine_tune_block5"), [
        f"--features_dir={os.path.join(out, 'features', 'block5_pool')}",
        f"--data_dir={args.records_dir}", "--cut_layer=block5_pool", f"--weights={args.weights}",
        *head, *frozen, f"--fine_tune_epochs={args.epochs}", "--fine_tune_from=block5_conv1"])
    rows.append(_row("fine_tune_block5", "fine-tune block5 (from the block5_pool head)", report,
                     embed_s["block5_pool"], seconds))
    for key, name, weights in (("all_trainable", "all trainable from --weights", args.weights),
                               ("scratch", "from scratch (none)", "none")):
        report, seconds = quality.timed_train(os.path.join(out, "jobs", key), [
            f"--data_dir={args.records_dir}", "--cut_layer=block5_pool", f"--weights={weights}",
            *head, "--trainable_from=all", f"--learning_rate={args.all_learning_rate}"])
        rows.append(_row(key, name, report, 0.0, seconds))
    header = (f"Transfer table: {sum(card.counts.values())} plays ({card.counts.get('train', 0)} train / "
              f"{card.counts.get('val', 0)} val / {card.counts.get('test', 0)} test), "
              f"--weights={args.weights}, {args.epochs} epochs per phase, GRU {args.rnn_units}, "
              f"{args.num_frames} frames, --eval_views={args.eval_views}; cpu {quality.cpu_name()}, "
              f"load {quality.load_average()}")
    with open(os.path.join(out, "transfer.md"), "w") as f:
        f.write(table(rows, header))
    plot(rows, os.path.join(out, "transfer.png"), header[:110])
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records_dir", required=True, help="the records job's --output_dir")
    parser.add_argument("--weights", default="imagenet", help="imagenet | PATH | none")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every phase")
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--rnn_units", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=3e-3, help="of the heads on frozen bases")
    parser.add_argument("--all_learning_rate", type=float, default=1e-4,
                        help="of the all-trainable rows (the whole VGG16)")
    parser.add_argument("--eval_views", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2,
                        help="DirectRunner worker processes of the embed job (1: in-memory, in this process)")
    args = parser.parse_args(argv)
    try:
        check_weights(args.weights)
        from trainer.training import compat  # pylint: disable=g-import-not-at-top
        compat.apply_all()
        start = time.perf_counter()
        rows = run(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for r in rows:
        for column in ("accuracy", "n", "ci_low", "ci_high", "macro_f1", "embed_s", "train_s"):
            value = r[column]
            print(f"{r['key']}_{column}={round(value, 4) if isinstance(value, float) else value}")
    print(f"transfer_s={time.perf_counter() - start:.1f}")
    print(f"wrote {os.path.join(args.output_dir, 'transfer.md')} and transfer.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
