"""Model quality on large demo test splits: play-level accuracy, head baselines, class imbalance.

One run per preset, each a real pipeline: the records job (demo plays at 32 px, split by
game with a large test fraction), the embed job (VGG16 cut at block2_pool, --weights=none),
then heads trained from the cached features with the Makefile's DEMO_TRAIN_FLAGS (GRU 64,
8 frames, lr 3e-3, batch 8) and evaluated at play level (--eval_views). The records and
features are shared by the heads of a preset.

    python benchmarks/quality.py --preset=demo        # default profile: rnn, mean_pool, single_frame
    python benchmarks/quality.py --preset=hard        # hard profile: the same keys with hard_, plus a BiGRU 128
    python benchmarks/quality.py --preset=imbalanced  # hard profile, 20:1 training labels: long-tail methods
    python benchmarks/quality.py --preset=all

The imbalanced preset trains on the 20:1 split with --class_weight=none, --class_weight=balanced,
--balanced_sampling (`sampling`) and --class_weight=logit_adjusted, and scores each exported
classifier on a separate balanced test set (--balanced_test_plays, default 100 per label: equal
label weights, another --demo_seed) with the trainer's evaluation (`finalize.evaluate_model` on
the play records, the run's --eval_views).

The demo and hard presets also search the settings with `python -m trainer.tune`
(--tune_trials trials of --tune_epochs epochs over the preset's train and val splits, Bayesian
optimization, the first trial the default settings) and train its best trial as its best_flags.txt says, scored on the same test plays:
tuned_play_accuracy (+ci), tuned_flags, tune_s, tune_trials and whether the tuned interval's low
end clears the default settings' high end (tuned_ci_low_above_default_ci_high).

Prints `key=value` lines: test_plays, clip_accuracy, play_accuracy (+ _ci_low/_ci_high),
macro_f1 (+ci), mean_pool_play_accuracy, single_frame_play_accuracy, misc_transition_rnn,
misc_transition_mean_pool (accuracy on the test plays labelled misc or transition), each
head's interval; `hard_` keys for the hard profile; for the imbalanced one minority_labels,
minority_test_plays, per method M minority_recall_M (+ _ci_low/_ci_high, Wilson over the
minority labels' balanced test plays), mean_per_class_recall_M, macro_f1_M, play_accuracy_M
and skewed_minority_recall_M (on the 20:1 split's own test plays), then minority_recall_best
(+ _method, _ci_low, _ci_high); every step's wall seconds, the load average and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from schemas.errors import UsageError  # noqa: E402
from trainer.tuning import space as space_lib  # noqa: E402  (the tuned flags)

PAIR = ("misc", "transition")  # misc is transition played backwards: only an ordered head tells them apart
SPLITS = "train=0.45,val=0.07,test=0.48"
# The Makefile's DEMO_TRAIN_FLAGS, --epochs and --num_frames (8) apart.
HEAD_FLAGS = ["--trainable_from=none", "--rnn=gru", "--rnn_units=64",
              "--batch_size=8", "--learning_rate=3e-3"]

PRESETS: Dict[str, Dict] = {
    "demo": dict(profile="default", label_weights="balanced", prefix="",
                 heads={"rnn": [], "mean_pool": ["--head=mean_pool"],
                        "single_frame": ["--head=single_frame"]}),
    "hard": dict(profile="hard", label_weights="balanced", prefix="hard_",
                 heads={"rnn": [], "mean_pool": ["--head=mean_pool"],
                        "single_frame": ["--head=single_frame"],
                        "bigru128": ["--bidirectional", "--rnn_units=128"]}),
    "imbalanced": dict(profile="hard", label_weights="imbalanced", prefix="",
                       heads={"none": ["--class_weight=none"],
                              "balanced": ["--class_weight=balanced"],
                              "sampling": ["--balanced_sampling"],
                              "logit_adjusted": ["--class_weight=logit_adjusted"]}),
}
# Flags every tuning trial shares (the tuned ones, head to batch size, are the search's) and
# HEAD_FLAGS' tuned ones as its first trial (with --num_frames; the trainer's dropout, 0.3).
TUNED_NAMES = tuple(f"--{name}" for name in space_lib.TUNED)
TUNE_FIXED_FLAGS = ["--strategy=default", "--seed=1"] + [
    f for f in HEAD_FLAGS if f.split("=")[0] not in TUNED_NAMES]
DEFAULT_TUNED_FLAGS = ["--head=rnn", "--dropout=0.3"] + [
    f for f in HEAD_FLAGS if f.split("=")[0] in TUNED_NAMES]
BALANCED_TEST_SEED = 1  # the balanced test set's --demo_seed (the preset's records use 0)


def cpu_name() -> str:
    """The CPU model and core count, for quoting absolute times."""
    from backbone import precision  # pylint: disable=g-import-not-at-top
    return f"{precision.cpu_model()} x{os.cpu_count()}"


def load_average() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def timed(path: str, step: Callable[[], float]) -> float:
    """Runs `step` (which returns its seconds) unless an earlier run finished it (PATH.seconds
    holds them): a rerun with the same --work_dir keeps the finished steps."""
    done = path + ".seconds"
    if os.path.exists(done):
        with open(done) as f:
            return float(f.read())
    seconds = step()
    with open(done, "w") as f:
        f.write(f"{seconds:.3f}")
    return seconds


def timed_train(job_dir: str, flags: Sequence[str]) -> tuple:
    """`train`, or the eval.json of an earlier finished run in `job_dir`; (eval.json, seconds)."""
    result = {}

    def step() -> float:
        result["report"], seconds = train(job_dir, flags)
        return seconds

    seconds = timed(job_dir, step)
    if "report" not in result:
        with open(os.path.join(job_dir, "eval.json")) as f:
            result["report"] = json.load(f)
    return result["report"], seconds


def make_records(out: str, plays: int, frames: int, profile: str, label_weights: str,
                 splits: str = SPLITS, workers: int = 2, seed: int = 0) -> float:
    """Runs the records job on demo plays (`workers` DirectRunner processes, 1: in this
    process); its wall seconds."""
    from beam_jobs import make_records as job  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    mode = (["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
            if workers > 1 else [])
    job.run([f"--output_dir={out}", "--overwrite", "--frame_size=32", f"--demo_plays={plays}",
             f"--num_frames={frames}", f"--splits={splits}", f"--demo_profile={profile}",
             f"--demo_label_weights={label_weights}", f"--demo_seed={seed}", "--num_shards=2",
             *mode])
    return time.perf_counter() - start


def embed(records: str, out: str, cut_layer: str = "block2_pool", weights: str = "none",
          workers: int = 2) -> float:
    """Runs the embed job (frozen VGG16 cut at `cut_layer`; `workers` DirectRunner processes,
    1: in this process); its wall seconds."""
    from beam_jobs import embed_records as job  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    mode = (["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
            if workers > 1 else [])
    job.run([f"--records_dir={records}", f"--output_dir={out}", "--overwrite",
             f"--weights={weights}", f"--cut_layer={cut_layer}", "--num_shards=2", *mode])
    return time.perf_counter() - start


def train(job_dir: str, flags: Sequence[str]) -> tuple:
    """One trainer run (train, evaluate, export) in this process; (eval.json, wall seconds)."""
    import keras  # pylint: disable=g-import-not-at-top
    from trainer import task  # pylint: disable=g-import-not-at-top
    keras.backend.clear_session()
    start = time.perf_counter()
    code = task.run([f"--job_dir={job_dir}", "--strategy=default", *flags])
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(code)
    with open(os.path.join(job_dir, "eval.json")) as f:
        return json.load(f), seconds


def tune(features: str, out: str, trials: int, epochs: int, first_trial: Sequence[str]) -> float:
    """`python -m trainer.tune` over the preset's features (train and val splits only), in this
    process, its first trial the default settings: a rerun with the same --work_dir resumes the
    search; its wall seconds."""
    import keras  # pylint: disable=g-import-not-at-top
    from trainer import tune as tune_cli  # pylint: disable=g-import-not-at-top
    keras.backend.clear_session()
    start = time.perf_counter()
    code = tune_cli.run([f"--features_dir={features}", f"--output_dir={out}",
                         f"--max_trials={trials}", f"--epochs={epochs}", *TUNE_FIXED_FLAGS,
                         f"--first_trial={' '.join(first_trial)}"])
    if code:
        raise SystemExit(code)
    return time.perf_counter() - start


def best_trial_flags(tune_dir: str) -> list:
    """The trainer flags of the search's best trial (best_flags.txt without its --job_dir)."""
    from trainer.tuning import outputs  # pylint: disable=g-import-not-at-top
    with open(os.path.join(tune_dir, outputs.BEST_FLAGS)) as f:
        words = shlex.split(f.read())
    flags = words[words.index("trainer.task") + 1:]
    return [flag for flag in flags if not flag.startswith("--job_dir=")]


def _emit_tuned(results, p: str, features: str, reports: Dict, args, work: str) -> None:
    """The tuner's best trial, trained as best_flags.txt says and scored on the same test plays
    as the default settings (`<p>tuned_*`), and whether its interval clears theirs."""
    tune_dir = os.path.join(work, "tune")
    _emit(results, f"{p}tune_s", round(timed(tune_dir, lambda: tune(
        features, tune_dir, args.tune_trials, args.tune_epochs or args.epochs,
        DEFAULT_TUNED_FLAGS + [f"--num_frames={args.num_frames}"])), 1))
    with open(os.path.join(tune_dir, "trials.csv")) as f:
        _emit(results, f"{p}tune_trials", sum(1 for _ in f) - 1)
    flags = best_trial_flags(tune_dir)
    _emit(results, f"{p}tuned_flags", " ".join(f for f in flags
                                               if not f.startswith("--features_dir=")))
    report, seconds = timed_train(os.path.join(work, "job_tuned"),
                                  [*flags, f"--eval_views={args.eval_views}"])
    reports["tuned"] = report
    _emit(results, f"{p}train_s_tuned", round(seconds, 1))
    _emit_level(results, f"{p}tuned_play_accuracy", report["play"])
    _emit(results, f"{p}tuned_macro_f1", report["play"]["macro_f1"])
    _emit(results, f"{p}tuned_ci_low_above_default_ci_high",
          report["play"]["accuracy_ci_low"] > reports["rnn"]["play"]["accuracy_ci_high"])


def score_on_records(job_dir: str, records: str, test_records: str, args) -> Dict:
    """The exported classifier of `job_dir` scored on `test_records`' test plays by the trainer's
    evaluation (the clips of the play records, the run's views); eval.json's "play" level. The
    result is kept in JOB_DIR/balanced_test/eval.json: a rerun reads it."""
    out = os.path.join(job_dir, "balanced_test")
    path = os.path.join(out, "eval.json")
    if not os.path.exists(path):
        import keras  # pylint: disable=g-import-not-at-top
        from trainer.config import parse_flags  # pylint: disable=g-import-not-at-top
        from trainer.data import sources  # pylint: disable=g-import-not-at-top
        from trainer.training import finalize, play_task  # pylint: disable=g-import-not-at-top
        card = sources.load_card(test_records)
        files = sources.split_files(test_records, "test", card)
        config = parse_flags([f"--data_dir={records}", f"--test_files={','.join(files)}",
                              f"--job_dir={out}", f"--num_frames={args.num_frames}",
                              f"--eval_views={args.eval_views}", "--batch_size=8"])
        task = play_task.PlayClassificationTask.from_config(config.validate())
        if list(card.labels) != list(task.plays.labels):
            raise UsageError(f"the balanced test labels {card.labels} differ from the "
                             f"training records' {task.plays.labels}")
        keras.backend.clear_session()
        model = keras.saving.load_model(os.path.join(job_dir, "model.keras"), safe_mode=True,
                                        compile=False)
        finalize.evaluate_model(task, model, {"source": "model.keras"}, out, "test")
    with open(path) as f:
        return json.load(f)["play"]


def subset_accuracy(level: Dict, labels: Sequence[str], subset: Sequence[str]) -> tuple:
    """(correct, n) of the plays whose true label is in `subset`, from a level's confusion matrix."""
    matrix = level["confusion_matrix"]
    rows = [labels.index(name) for name in subset if name in labels]
    correct = sum(matrix[i][i] for i in rows)
    return int(correct), int(sum(sum(matrix[i]) for i in rows))


def _interval(correct: int, n: int) -> tuple:
    from trainer.evaluation import metrics  # pylint: disable=g-import-not-at-top
    return metrics.wilson_interval(correct, n)


def _emit(results: Dict[str, object], key: str, value) -> None:
    results[key] = round(value, 4) if isinstance(value, float) else value
    print(f"{key}={results[key]}", flush=True)


def _emit_level(results, key: str, level: Dict) -> None:
    _emit(results, key, level["accuracy"])
    _emit(results, f"{key}_ci_low", level["accuracy_ci_low"])
    _emit(results, f"{key}_ci_high", level["accuracy_ci_high"])


def _emit_subset(results, key: str, level: Dict, labels, subset) -> None:
    correct, n = subset_accuracy(level, labels, subset)
    low, high = _interval(correct, n)
    _emit(results, key, correct / n if n else float("nan"))
    _emit(results, f"{key}_n", n)
    _emit(results, f"{key}_ci_low", low)
    _emit(results, f"{key}_ci_high", high)


def _emit_long_tail(results, preset: Dict, reports: Dict, labels, card, args, work: str,
                    name: str, records: str) -> None:
    """The imbalanced preset's keys: each method's exported classifier on the balanced test set
    (rendered here: equal label weights, another seed), and on the 20:1 split's own test plays."""
    from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
    weights = demo_plays.parse_label_weights(preset["label_weights"])
    least = min(weights.get(label, 1) for label in labels)
    minority = [label for label in labels if weights.get(label, 1) == least]
    _emit(results, "minority_labels", ",".join(minority))
    _emit(results, "train_label_counts", ",".join(
        f"{k}:{v}" for k, v in sorted(card.label_counts.get("train", {}).items())))
    _emit(results, "test_label_counts", ",".join(
        f"{k}:{v}" for k, v in sorted(card.label_counts.get("test", {}).items())))
    balanced = os.path.join(work, name, "balanced_test_records")
    _emit(results, "balanced_test_records_s", round(timed(balanced, lambda: make_records(
        balanced, args.balanced_test_plays, args.record_frames, preset["profile"], "balanced",
        "test=1.0", args.workers, seed=BALANCED_TEST_SEED)), 1))
    best = None
    for head in preset["heads"]:
        _emit_subset(results, f"skewed_minority_recall_{head}", reports[head]["play"], labels,
                     minority)
        start = time.perf_counter()
        play = score_on_records(os.path.join(work, name, f"job_{head}"), records, balanced, args)
        _emit(results, f"balanced_test_s_{head}", round(time.perf_counter() - start, 1))
        if head == next(iter(preset["heads"])):
            _emit(results, "balanced_test_plays", play["n"])
            _emit(results, "minority_test_plays", subset_accuracy(play, labels, minority)[1])
        correct, n = subset_accuracy(play, labels, minority)
        _emit_subset(results, f"minority_recall_{head}", play, labels, minority)
        for key in ("mean_per_class_recall", "macro_f1", "macro_f1_ci_low", "macro_f1_ci_high"):
            _emit(results, f"{key}_{head}", play[key])
        _emit_level(results, f"play_accuracy_{head}", play)
        if n and (best is None or correct / n > best[1]):
            best = (head, correct / n, correct, n)
    if best is not None:
        low, high = _interval(best[2], best[3])
        _emit(results, "minority_recall_best_method", best[0])
        _emit(results, "minority_recall_best", best[1])
        _emit(results, "minority_recall_best_ci_low", low)
        _emit(results, "minority_recall_best_ci_high", high)


def run_preset(name: str, args, work: str) -> Dict[str, object]:
    """Records -> features -> the preset's heads; prints and returns its key=value results."""
    from beam_jobs import make_records as records_job  # pylint: disable=g-import-not-at-top
    preset = PRESETS[name]
    p = preset["prefix"]
    results: Dict[str, object] = {}
    print(f"# preset {name}: {args.plays} demo plays ({preset['profile']} profile, "
          f"{preset['label_weights']} labels), {args.record_frames} stored frames at 32 px, "
          f"splits {args.splits}, {args.epochs} epochs, --eval_views={args.eval_views}; "
          f"cpu {cpu_name()}", flush=True)
    _emit(results, f"{p}load_avg_start", load_average())
    records, features = os.path.join(work, name, "records"), os.path.join(work, name, "features")
    _emit(results, f"{p}records_s", round(timed(records, lambda: make_records(
        records, args.plays, args.record_frames, preset["profile"], preset["label_weights"],
        args.splits, args.workers)), 1))
    _emit(results, f"{p}embed_s", round(timed(features, lambda: embed(
        records, features, workers=args.workers)), 1))
    card = records_job.read_card(records)
    labels = list(card.labels)
    _emit(results, f"{p}train_plays", card.counts.get("train", 0))
    _emit(results, f"{p}val_plays", card.counts.get("val", 0))
    _emit(results, f"{p}test_plays", card.counts.get("test", 0))
    test_counts = card.label_counts.get("test", {})
    _emit(results, f"{p}test_plays_per_label_min", min(test_counts.values()) if test_counts else 0)
    reports = {}
    for head, flags in preset["heads"].items():
        report, seconds = timed_train(os.path.join(work, name, f"job_{head}"), [
            f"--features_dir={features}", *HEAD_FLAGS, *flags, f"--epochs={args.epochs}",
            f"--num_frames={args.num_frames}",
            f"--eval_views={args.eval_views}"])
        reports[head] = report
        _emit(results, f"{p}train_s_{head}", round(seconds, 1))
    if name in ("demo", "hard"):
        rnn = reports["rnn"]
        _emit_level(results, f"{p}clip_accuracy", rnn["clip"])
        _emit_level(results, f"{p}play_accuracy", rnn["play"])
        for key in ("macro_f1", "macro_f1_ci_low", "macro_f1_ci_high", "mean_per_class_recall"):
            _emit(results, f"{p}{key}", rnn["play"][key])
        for head in [h for h in preset["heads"] if h != "rnn"]:
            _emit_level(results, f"{p}{head}_play_accuracy", reports[head]["play"])
            _emit(results, f"{p}{head}_macro_f1", reports[head]["play"]["macro_f1"])
        for head in [h for h in preset["heads"] if h != "single_frame"]:
            _emit_subset(results, f"{p}misc_transition_{head}", reports[head]["play"], labels, PAIR)
        worst = min(rnn["play"]["per_class_recall"].items(), key=lambda kv: (kv[1] is None, kv[1] or 0))
        _emit(results, f"{p}rnn_lowest_recall", f"{worst[0]}:{worst[1]:.3f}")
        if args.tune_trials:
            _emit_tuned(results, p, features, reports, args, os.path.join(work, name))
    else:
        _emit_long_tail(results, preset, reports, labels, card, args, work, name, records)
    _emit(results, f"{p}load_avg_end", load_average())
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS) + ["all"], default="demo")
    parser.add_argument("--plays", type=int, default=2200, help="demo plays per preset (10 per game)")
    parser.add_argument("--splits", default=SPLITS)
    parser.add_argument("--record_frames", type=int, default=40, help="frames stored per play")
    parser.add_argument("--num_frames", type=int, default=8, help="frames per clip of the heads")
    parser.add_argument("--epochs", type=int, default=60, help="epochs of every head")
    parser.add_argument("--eval_views", type=int, default=3)
    parser.add_argument("--balanced_test_plays", type=int, default=1100,
                        help="plays of the imbalanced preset's balanced test set (equal label "
                             "weights: 100 per label of 11)")
    parser.add_argument("--tune_trials", type=int, default=12,
                        help="demo and hard presets: trials of `python -m trainer.tune` over the "
                             "features (0: no tuned settings)")
    parser.add_argument("--tune_epochs", type=int, default=0,
                        help="epochs per tuning trial (default: --epochs)")
    parser.add_argument("--workers", type=int, default=2,
                        help="DirectRunner worker processes of the jobs (1: in-memory, in this process)")
    parser.add_argument("--work_dir", default="",
                        help="keep the records, features and jobs here; a rerun keeps the steps "
                             "that finished (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    from trainer.training import compat  # pylint: disable=g-import-not-at-top
    compat.apply_all()
    work = args.work_dir or tempfile.mkdtemp(prefix="quality_")
    names = ["demo", "hard", "imbalanced"] if args.preset == "all" else [args.preset]
    try:
        for name in names:
            start = time.perf_counter()
            run_preset(name, args, work)
            print(f"{PRESETS[name]['prefix']}preset_{name}_s={time.perf_counter() - start:.1f}", flush=True)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
