"""`python -m trainer.task`: parses flags into a TrainConfig and runs `train.train`.

Defaults follow Vertex AI custom training: AIP_MODEL_DIR (--job_dir),
AIP_CHECKPOINT_DIR (--checkpoint_dir), AIP_TENSORBOARD_LOG_DIR (--log_dir).

    python -m trainer.task --data_dir=runs/demo/records --job_dir=runs/demo/job \
        --strategy=mirrored --cpu_replicas=2 --weights=imagenet --epochs=5
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .config import JIT_COMPILE, MIXED_PRECISION, RNN_TYPES, STRATEGIES, TrainConfig  # noqa: E402

EXIT_USAGE = 2


def _optional_int(text: str) -> Optional[int]:
    return None if text.lower() in ("", "none") else int(text)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Flags -> TrainConfig (argparse exits 2 on a malformed flag)."""
    env = os.environ
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data_dir", default="", help="the records job's --output_dir (has dataset.json)")
    g.add_argument("--train_files", default="", help="comma-separated globs (instead of --data_dir)")
    g.add_argument("--eval_files", default="", help="comma-separated globs of the validation shards")
    g.add_argument("--test_files", default="", help="comma-separated globs of the test shards")
    g.add_argument("--num_frames", type=_optional_int, default=None, help="frames per clip (default: card)")
    g.add_argument("--height", type=_optional_int, default=None, help="frame height (default: card)")
    g.add_argument("--width", type=_optional_int, default=None, help="frame width (default: card)")
    g.add_argument("--compression", default=None, help="none|gzip (default: card)")
    g.add_argument("--labels", default="", help="comma-separated vocabulary (default: card)")
    g.add_argument("--shuffle_buffer", type=int, default=d.shuffle_buffer)
    g = p.add_argument_group("outputs")
    g.add_argument("--job_dir", default=env.get("AIP_MODEL_DIR", ""),
                   help="checkpoints, logs, history, results (default: $AIP_MODEL_DIR)")
    g.add_argument("--checkpoint_dir", default=env.get("AIP_CHECKPOINT_DIR", ""),
                   help="default: $AIP_CHECKPOINT_DIR or JOB_DIR/checkpoints")
    g.add_argument("--log_dir", default=env.get("AIP_TENSORBOARD_LOG_DIR", ""),
                   help="TensorBoard logs (default: $AIP_TENSORBOARD_LOG_DIR or JOB_DIR/logs)")
    g = p.add_argument_group("model")
    g.add_argument("--cut_layer", default=d.cut_layer, help="last VGG16 layer kept, e.g. block4_pool")
    g.add_argument("--weights", default=d.weights, help="imagenet | none | PATH of VGG16 notop weights")
    g.add_argument("--trainable_from", default=d.trainable_from,
                   help="first trainable VGG16 layer | none (frozen base) | all")
    g.add_argument("--rnn", choices=RNN_TYPES, default=d.rnn)
    g.add_argument("--rnn_units", type=int, default=d.rnn_units)
    g.add_argument("--bidirectional", type=_bool, nargs="?", const=True, default=d.bidirectional)
    g.add_argument("--dropout", type=float, default=d.dropout)
    g.add_argument("--feature_norm", type=_bool, nargs="?", const=True, default=d.feature_norm,
                   help="layer-normalize the pooled frame features before the RNN")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs, help="epochs of the head phase")
    g.add_argument("--batch_size", type=int, default=d.batch_size, help="global batch size")
    g.add_argument("--learning_rate", type=float, default=d.learning_rate)
    g.add_argument("--steps_per_epoch", type=_optional_int, default=None,
                   help="default: train plays // batch_size")
    g.add_argument("--validation_steps", type=_optional_int, default=None,
                   help="default: all validation plays")
    g.add_argument("--fine_tune_epochs", type=int, default=d.fine_tune_epochs,
                   help="epochs of a second phase with the top VGG16 blocks unfrozen")
    g.add_argument("--fine_tune_from", default=d.fine_tune_from,
                   help="first layer unfrozen in the fine-tune phase (default: first conv of the "
                        "last block kept by the cut)")
    g.add_argument("--fine_tune_learning_rate", type=float, default=d.fine_tune_learning_rate)
    g.add_argument("--seed", type=_optional_int, default=d.seed)
    g.add_argument("--mixed_precision", choices=MIXED_PRECISION, default=d.mixed_precision)
    g.add_argument("--jit_compile", choices=JIT_COMPILE, default=d.jit_compile,
                   help="XLA; auto = on with GPUs, off on CPU")
    g = p.add_argument_group("distribution")
    g.add_argument("--strategy", default=d.strategy, help="|".join(STRATEGIES))
    g.add_argument("--cpu_replicas", type=int, default=d.cpu_replicas,
                   help="without GPUs, split the CPU into N devices for --strategy=mirrored")
    g.add_argument("--tpu", default=d.tpu, help="TPU name or address for --strategy=tpu")
    args = p.parse_args(argv)
    values = vars(args)
    values["labels"] = [s.strip() for s in args.labels.split(",") if s.strip()] or None
    return TrainConfig.from_dict(values)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Parses flags and trains; problems the user can fix print `error: ...` and return 2."""
    config = parse_args(argv)
    # Imported after parsing so that --help is quick.
    from schemas.play_record import SchemaError  # pylint: disable=g-import-not-at-top
    from .config import UsageError  # pylint: disable=g-import-not-at-top
    from . import train  # pylint: disable=g-import-not-at-top
    try:
        train.train(config)
    except (UsageError, SchemaError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
