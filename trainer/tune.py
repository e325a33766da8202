"""`python -m trainer.tune`: a hyperparameter search over cached features (KerasTuner).

    python -m trainer.tune --features_dir=runs/demo/features --output_dir=runs/demo/tune \
        [--max_trials=N] [--epochs=10] [--tuner=bayesian|hyperband] [--search_seed=0] \
        [trainer flags shared by every trial, e.g. --seed=1 --strategy=default]

Searches the head and its width, the frames per clip, dropout, learning rate
and batch size (`trainer.tuning.space`). Each trial is `python -m trainer.task`
with its flags, trained through the trainer's code path with no test
evaluation and no export; it is scored by the best epoch's val_accuracy
(`trainer.tuning.runner`). The same command with the same OUTPUT_DIR resumes
the search: finished trials are not run again. Outputs in OUTPUT_DIR:
trials.csv, trials.png, best_flags.txt (`trainer.tuning.outputs`). On stdout:
`trials=`, `trials_finished=`, `trials_run=`, `best_trial=`,
`best_val_accuracy=`, `best_flags=`.

Exit status 0; 2 with one `error:` line for a usage error (no features, a bad
--max_trials, a trainer flag that the search sets or that does not parse);
143 after a SIGTERM (the trial in progress backed up: the same command resumes it).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from schemas.errors import EXIT_USAGE, UsageError, one_line  # noqa: E402
from trainer import flags, logs  # noqa: E402

TUNERS = ("bayesian", "hyperband")  # trainer.tuning.runner.TUNERS (no TensorFlow import here)


def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise UsageError(f"--{name} must be a whole number >= 1, got {text!r}")
        return value
    return flags.keeping_usage_errors(parse)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.tune", description=__doc__.splitlines()[0], allow_abbrev=False,
        epilog="Other --flags are trainer flags that every trial shares (python -m trainer.task "
               "--help).")
    parser.add_argument("--features_dir", default="",
                        help="the embed job's --output_dir (has features.json)")
    parser.add_argument("--output_dir", default="",
                        help="the search's folder: the tuner's state, one job folder per trial, "
                             "trials.csv, trials.png, best_flags.txt")
    parser.add_argument("--max_trials", type=_positive_int("max_trials"), default=None,
                        help="trials in all, those of a resumed search included (default: 10; "
                             "hyperband: as many as its brackets hold)")
    parser.add_argument("--epochs", type=_positive_int("epochs"), default=10,
                        help="epochs per trial (hyperband: the most a trial gets) "
                             "(default %(default)s)")
    parser.add_argument("--tuner", default="bayesian", help=f"{'|'.join(TUNERS)} "
                        "(default %(default)s)")
    parser.add_argument("--first_trial", default="",
                        help="the first trial's tuned flags, all six space-separated, e.g. "
                             "today's settings: '--head=rnn --rnn_units=64 --num_frames=8 "
                             "--dropout=0.3 --learning_rate=0.003 --batch_size=8' (bayesian; "
                             "the search then starts from them)")
    parser.add_argument("--search_seed", type=int, default=0,
                        help="seed of the tuner's choices (default %(default)s)")
    return parser


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status."""
    logs.configure()
    try:
        try:
            args, fixed = build_parser().parse_known_args(argv)
        except flags.FlagError as err:
            raise err.args[0] from None
        for name in ("features_dir", "output_dir"):
            if not getattr(args, name):
                raise UsageError(f"no --{name}")
        # Imported after parsing so that --help is quick.
        from trainer.training import preemption  # pylint: disable=g-import-not-at-top
        from trainer.tuning import outputs, runner  # pylint: disable=g-import-not-at-top
        options = runner.SearchOptions(
            features_dir=args.features_dir, output_dir=args.output_dir,
            max_trials=args.max_trials, epochs=args.epochs, tuner=args.tuner,
            seed=args.search_seed, fixed_flags=tuple(fixed),
            first_trial=tuple(args.first_trial.split()))
        try:
            result = runner.run_search(options)
        except preemption.Preempted:  # the trial backed up: the same command resumes it
            return preemption.EXIT_PREEMPTED
        outputs.write_all(result.rows, result.best, args.output_dir)
    except UsageError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    for line in outputs.summary_lines(result.rows, result.best, result.trials_run,
                                      args.output_dir):
        print(line)
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
