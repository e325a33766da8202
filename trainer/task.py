"""`python -m trainer.task`: parses flags into a TrainConfig and runs `train.train`.

Defaults follow Vertex AI custom training: AIP_MODEL_DIR (--job_dir),
AIP_CHECKPOINT_DIR (--checkpoint_dir), AIP_TENSORBOARD_LOG_DIR (--log_dir).

    python -m trainer.task --data_dir=runs/demo/records --job_dir=runs/demo/job \
        --strategy=mirrored --cpu_replicas=2 --weights=imagenet --epochs=5
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from schemas.errors import EXIT_USAGE, UsageError, one_line  # noqa: E402
from trainer import logs  # noqa: E402
from trainer.config import TrainConfig, parse_flags  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    """Flags -> TrainConfig (argparse exits 2 on a malformed flag)."""
    return parse_flags(argv, description=__doc__.splitlines()[0])


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Parses flags and trains; a UsageError prints `error: ...` and returns 2, a preemption
    (SIGTERM, backed up) returns 143."""
    logs.configure()
    try:
        config = parse_args(argv)
        # Imported after parsing so that --help is quick.
        from trainer.training import preemption, train  # pylint: disable=g-import-not-at-top
        try:
            train.train(config)
        except preemption.Preempted:  # backed up and logged: the same command resumes
            return preemption.EXIT_PREEMPTED
    except UsageError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
