"""The records job end to end on the DirectRunner: demo plays, manifests, folder trees,
dead letters, shard layout, the dataset card and launch errors."""

import glob
import json
import os
import re
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import make_records, options as beam_options, outputs, records_pipeline, splits
from beam_jobs.plays import PlaySpec
from media import frames
from schemas import dataset_card, play_record
from schemas.sampling import FrameSampling
from schemas.errors import UsageError
from tests import media_fixtures as mf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARD_RE = re.compile(r"^(?P<split>\w+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.tfrecord(\.gz)?$")


def _records(path_pattern: str, compression: str = "none"):
    """Decoded PlayRecords of the shards matching `path_pattern` (TFRecord read by TensorFlow)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    out = []
    for path in sorted(glob.glob(path_pattern)):
        ds = tf.data.TFRecordDataset(path, compression_type="GZIP" if compression == "gzip" else "")
        out.extend(play_record.decode_play(r.numpy()) for r in ds)
    return out


def _rejected(output_dir: str):
    files = glob.glob(os.path.join(output_dir, "rejected-*-of-*.jsonl"))
    assert len(files) == 1 and SHARD_RE.match(os.path.basename(files[0]).replace(".jsonl", ".tfrecord"))
    with open(files[0]) as f:
        return [json.loads(line) for line in f if line.strip()]


def _shards(output_dir: str):
    return sorted(n for n in os.listdir(output_dir) if ".tfrecord" in n)



def test_demo_profile_and_label_weights(tmp_path):
    """--demo_profile and --demo_label_weights reach the plays: labels by weight, hard frames."""
    from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
    out = str(tmp_path / "recs")
    card = make_records.run([f"--output_dir={out}", "--demo_plays=12", "--num_frames=4",
                             "--frame_size=32", "--splits=train=1", "--demo_profile=hard",
                             "--demo_label_weights=cut=5,misc=2"])
    weights = demo_plays.parse_label_weights("cut=5,misc=2")
    expected = [demo_plays.label_of(i, weights) for i in range(12)]
    assert card.label_counts["train"] == {label: expected.count(label) for label in set(expected)}
    assert card.label_counts["train"]["cut"] == 4
    records = sorted(_records(os.path.join(out, card.shard_glob("train"))), key=lambda r: r.play_id)
    assert [r.label for r in records] == expected
    first = records[0]
    assert first.data_path == f"demo://0/0?profile=hard&label={expected[0]}"
    hard = frames.read_play(first.data_path, FrameSampling.of(4, 32))
    default = frames.read_play("demo://0/0", FrameSampling.of(4, 32))
    assert list(first.frames) == list(hard.frames) != list(default.frames)
    with pytest.raises(UsageError, match="--demo_profile='harder'"):
        make_records.run([f"--output_dir={tmp_path / 'bad'}", "--demo_profile=harder"])
    with pytest.raises(UsageError, match="--demo_label_weights"):
        make_records.run([f"--output_dir={tmp_path / 'bad'}", "--demo_label_weights=dunk=2"])


def test_demo_job_round_trip(tmp_path):
    out = str(tmp_path / "recs")
    card = make_records.run([f"--output_dir={out}", "--demo_plays=33", "--num_frames=8",
                             "--frame_size=32", "--num_shards=2", "--splits=train=0.6,val=0.2,test=0.2"])
    assert card == make_records.read_card(out)
    assert card.num_input == 33 and card.num_rejected == 0 and sum(card.counts.values()) == 33
    assert card.height == card.width == 32 and card.num_frames == 8
    from demo_data import plays as demo_plays  # pylint: disable=g-import-not-at-top
    assert card.labels == sorted(demo_plays.DEMO_LABELS)
    assert card.shard_pattern == "{split}-*-of-*.tfrecord"
    for name in _shards(out):
        match = SHARD_RE.match(name)
        assert match and match["n"] == "00002" and match["split"] in card.counts, name
    games = {}
    for split in ("train", "val", "test"):
        records = _records(os.path.join(out, card.shard_glob(split)))
        assert len(records) == card.counts[split]
        for rec in records:
            assert len(rec.frames) == 8 and rec.height == rec.width == 32
            assert card.labels[rec.label_index] == rec.label
            assert card.label_counts[split][rec.label] >= 1
            assert rec.frame_rate == demo_plays.DEMO_FRAME_RATE and rec.source_num_frames == 40
            assert rec.timestamps_us == [round(i * 1e6 / 25) for i in frames.sample_indices(40, 8)]
            assert rec.data_path.startswith("demo://0/")
            # The split is the stable hash of the game: grouped, and the same on a re-run.
            assert split == splits.assign_split(rec.game_id, card_splits(card))
            games.setdefault(rec.game_id, set()).add(split)
    assert all(len(s) == 1 for s in games.values()) and len(games) == 4
    assert _rejected(out) == []


def card_splits(card):
    return splits.parse_splits(card.args["splits"])


def _bad_input_manifest(tmp_path):
    """One row per kind of bad input, plus good plays; returns (manifest, expected kinds)."""
    clips = tmp_path / "clips"
    mf.write_frame_folder(str(clips / "good_jpg"), 10, height=32, width=32, ext="jpg")
    mf.write_frame_folder(str(clips / "good_png"), 12)
    mf.write_video(str(clips / "good.webm"), 20)
    mf.write_frame_folder(str(clips / "short"), 3)
    mf.write_frame_folder(str(clips / "corrupt"), 6)
    mf.write_corrupt_file(str(clips / "corrupt" / "frame_1.png"))
    mf.write_corrupt_file(str(clips / "broken.mp4"))
    mf.write_frame_folder(str(clips / "unknown_label"), 6)
    rows = [
        {"play_id": "good_jpg", "label": "cut", "path": "clips/good_jpg", "game_id": "g1"},
        {"play_id": "good_png", "label": "post_up", "path": "clips/good_png", "game_id": "g1",
         "frame_rate": "10"},
        {"play_id": "good_video", "label": "cut", "path": "clips/good.webm", "split": "val"},
        {"play_id": "good_jpg", "label": "post_up", "path": "clips/good_png"},  # duplicate id
        {"play_id": "missing", "label": "cut", "path": "clips/does_not_exist"},
        {"play_id": "short", "label": "cut", "path": "clips/short"},
        {"play_id": "corrupt", "label": "cut", "path": "clips/corrupt"},
        {"play_id": "broken", "label": "cut", "path": "clips/broken.mp4"},
        {"play_id": "unknown_label", "label": "dunk", "path": "clips/unknown_label"},
        {"play_id": "no_path", "label": "cut", "path": ""},
        {"play_id": "bad_split", "label": "cut", "path": "clips/good_png", "split": "holdout"},
    ]
    manifest = mf.write_manifest(str(tmp_path / "plays.csv"), rows,
                                 ["play_id", "label", "path", "game_id", "split", "frame_rate"])
    expected = {
        "good_jpg": "duplicate_play_id", "missing": "missing_path", "short": "too_few_frames",
        "corrupt": "corrupt_image", "broken": "undecodable_video", "unknown_label": "unknown_label",
        "no_path": "missing_value", "bad_split": "unknown_split",
    }
    return manifest, len(rows), expected


def test_bad_inputs_go_to_dead_letter_and_counts_add_up(tmp_path):
    manifest, num_rows, expected = _bad_input_manifest(tmp_path)
    out = str(tmp_path / "recs")
    args = make_records.build_parser().parse_args([
        f"--input={manifest}", f"--output_dir={out}", "--num_frames=5", "--frame_size=32",
        "--label_vocabulary=post_up,cut", "--num_shards=1"])
    config = make_records.config_from_args(args)
    p = test_pipeline.TestPipeline()
    records_pipeline.build(p, config)
    result = p.run()
    result.wait_until_finish()

    rejected = _rejected(out)
    assert {r["play_id"]: r["kind"] for r in rejected} == expected
    for entry in rejected:
        assert entry["reason"] and "path" in entry and "Traceback" not in entry["reason"]
    by_id = {r["play_id"]: r for r in rejected}
    assert "too few frames: 3, need 5" in by_id["short"]["reason"]
    assert "holdout" in by_id["bad_split"]["reason"] and "dunk" in by_id["unknown_label"]["reason"]
    assert by_id["good_jpg"]["path"].endswith("good_png")  # the later row is the one dropped
    assert by_id["missing"]["path"] == str(tmp_path / "clips" / "does_not_exist")

    card = make_records.read_card(out)
    written = [r for s in card.counts for r in _records(os.path.join(out, card.shard_glob(s)))]
    assert sorted(r.play_id for r in written) == ["good_jpg", "good_png", "good_video"]
    assert card.labels == ["post_up", "cut"]  # --labels fixes the order
    assert card.num_input == num_rows
    assert len(written) + len(rejected) == num_rows == sum(card.counts.values()) + card.num_rejected
    assert card.rejected_reasons == {kind: 1 for kind in expected.values()}

    recs = {r.play_id: r for r in written}
    assert recs["good_video"].label_index == 1 and recs["good_png"].label_index == 0
    assert card.counts["val"] >= 1 and recs["good_video"].frame_rate == pytest.approx(25.0)
    assert recs["good_png"].timestamps_us == [i * 100_000 for i in frames.sample_indices(12, 5)]
    # JPEG frames already at the target size are copied byte for byte.
    originals = [(tmp_path / "clips" / "good_jpg" / f"frame_{i}.jpg").read_bytes()
                 for i in frames.sample_indices(10, 5)]
    assert recs["good_jpg"].frames == originals

    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("playclips"))["counters"]}
    assert counters["plays_written"] == 3 and counters["plays_rejected"] == len(expected)
    assert counters["rejected_too_few_frames"] == 1 and counters["rejected_duplicate_play_id"] == 1


def test_folder_tree_gzip_padding(tmp_path):
    root = tmp_path / "tree"
    mf.write_frame_folder(str(root / "cut" / "p1"), 10)
    mf.write_frame_folder(str(root / "cut" / "p2"), 3)  # short: padded
    mf.write_video(str(root / "iso" / "p3.mp4"), 12)
    mf.write_video(str(root / "iso" / "p4.mkv"), 12)
    out = str(tmp_path / "recs")
    card = make_records.run([f"--input={root}/", f"--output_dir={out}", "--num_frames=6",
                             "--frame_size=24x40", "--resize_mode=pad", "--pad_short=loop",
                             "--compression=gzip", "--num_shards=2", "--splits=train=0.5,val=0.5"])
    assert card.shard_pattern == "{split}-*-of-*.tfrecord.gz" and card.compression == "gzip"
    assert card.labels == ["cut", "iso"] and card.num_rejected == 0
    names = _shards(out)
    assert len(names) == 4 and all(SHARD_RE.match(n) and n.endswith(".tfrecord.gz") for n in names)
    recs = {r.play_id: r for s in card.counts
            for r in _records(os.path.join(out, card.shard_glob(s)), "gzip")}
    assert sorted(recs) == ["p1", "p2", "p3", "p4"]
    assert recs["p2"].pad_mode == "loop" and recs["p2"].source_num_frames == 3
    assert recs["p1"].pad_mode == "" and recs["p3"].source_num_frames == 12
    assert (recs["p1"].height, recs["p1"].width) == (24, 40)
    # The trainer's graph-mode parser reads what the job wrote.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    ds = tf.data.TFRecordDataset(sorted(glob.glob(os.path.join(out, "*.tfrecord.gz"))),
                                 compression_type="GZIP").map(play_record.parse_play)
    parsed = list(ds)
    assert len(parsed) == 4 and all(int(x["frames"].shape[0]) == 6 for x in parsed)


def test_a_label_of_the_wrong_json_type_is_a_dead_letter_not_a_new_class(tmp_path):
    for name in ("a", "b", "c"):
        mf.write_frame_folder(str(tmp_path / "clips" / name), 4, height=16, width=16)
    manifest = tmp_path / "plays.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in [
        {"play_id": "a", "label": "shot", "path": "clips/a", "game_id": 12345},
        {"play_id": "b", "label": ["shot"], "path": "clips/b"},
        {"play_id": 7, "label": "pass", "path": "clips/c", "frame_rate": 25},
    ]))
    out = str(tmp_path / "recs")
    card = make_records.run([f"--input={manifest}", f"--output_dir={out}", "--num_frames=2",
                             "--frame_size=16", "--num_shards=1", "--splits=train=1"])
    assert card.labels == ["pass", "shot"]  # not "['shot']": one class per label
    assert card.num_input == 3 and card.num_rejected == 1 and card.counts == {"train": 2}
    [entry] = _rejected(out)
    assert (entry["play_id"], entry["kind"], entry["row"]) == ("b", "bad_type", 2)
    assert entry["reason"] == "manifest row 2: label: expected a string, got a list"
    recs = {r.play_id: r for r in _records(os.path.join(out, card.shard_glob("train")))}
    assert sorted(recs) == ["7", "a"] and recs["7"].label == "pass"
    assert recs["7"].frame_rate == pytest.approx(25.0)


def test_drop_duplicates_and_assign_splits_transforms():
    specs = [PlaySpec("a", "x", "/a2", row=5), PlaySpec("a", "x", "/a1", row=2),
             PlaySpec("b", "y", "/b", game_id="g", row=3), PlaySpec("c", "y", "/c", game_id="g", row=4),
             PlaySpec("d", "y", "/d", split="test", row=6), PlaySpec("e", "y", "/e", split="nope", row=7)]
    fractions = splits.parse_splits("train=0.5,val=0.5,test=0")
    game_split = splits.assign_split("g", fractions)
    with test_pipeline.TestPipeline() as p:
        unique = (p | beam.Create(specs)
                  | records_pipeline.DropDuplicatePlays())
        checked = unique[outputs.PLAYS] | records_pipeline.AssignSplits(fractions)
        assert_that(unique[outputs.REJECTED] | "DupIds" >> beam.Map(lambda r: (r["play_id"], r["path"])),
                    equal_to([("a", "/a2")]), label="dups")
        assert_that(checked[outputs.PLAYS] | beam.Map(lambda s: (s.play_id, s.split)),
                    equal_to([("a", splits.assign_split("a", fractions)), ("b", game_split),
                              ("c", game_split), ("d", "test")]), label="splits")
        assert_that(checked[outputs.REJECTED] | "Bad" >> beam.Map(lambda r: (r["play_id"], r["kind"])),
                    equal_to([("e", "unknown_split")]), label="unknown")


def _main_error(capsys, argv):
    assert make_records.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_launch_errors(tmp_path, capsys):
    out = f"--output_dir={tmp_path / 'out'}"
    assert "does not exist" in _main_error(capsys, [f"--input={tmp_path / 'nope.csv'}", out])
    bad = mf.write_manifest(str(tmp_path / "bad.csv"), [{"clip": "x", "class": "y"}])
    assert "no 'play_id', 'label', 'path' column" in _main_error(capsys, [f"--input={bad}", out])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert "no 'play_id'" in _main_error(capsys, [f"--input={empty}", out])
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_text("play_id,label,path\n")
    assert "no rows" in _main_error(capsys, [f"--input={empty_csv}", out])
    (tmp_path / "emptytree").mkdir()
    assert "holds no plays" in _main_error(capsys, [f"--input={tmp_path / 'emptytree'}", out])
    assert "sum to 1" in _main_error(capsys, ["--splits=train=0.9,val=0.2", out])
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert "not writable" in _main_error(capsys, [f"--output_dir={blocker / 'out'}"])
    assert "--frame_size" in _main_error(capsys, ["--frame_size=big", out])
    typo = _main_error(capsys, ["--inputs=plays.csv", out])
    assert "unknown flag --inputs (did you mean --input?)" in typo
    assert not (tmp_path / "out").exists()  # nothing ran on the demo plays instead


def test_script_multiprocessing_and_usage_error(tmp_path):
    """`python beam_jobs/make_records.py` from another folder, with 2 worker processes."""
    script = os.path.join(ROOT, "beam_jobs", "make_records.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    bad = subprocess.run([sys.executable, script, "--input=missing.csv"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: manifest missing.csv does not exist"
    out = tmp_path / "recs"
    done = subprocess.run(
        [sys.executable, script, f"--output_dir={out}", "--demo_plays=6", "--num_frames=4",
         "--frame_size=32", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "records: 6 plays written" in done.stdout
    card = dataset_card.DatasetCard.from_json((out / "dataset.json").read_text())
    assert sum(card.counts.values()) == 6
    assert sum(len(_records(os.path.join(out, card.shard_glob(s)))) for s in card.counts) == 6


RUNNER_MODULE = '''
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import DirectRunner


class ClusterOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--cluster_address", default="")


class ClusterRunner(DirectRunner):
    """Like the Dask runner: its option class registers when its module is imported."""
'''


def test_flags_of_runner_modules_are_not_refused(tmp_path, monkeypatch):
    (tmp_path / "cluster_runner.py").write_text(RUNNER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = make_records.build_parser()
    flag = "--cluster_address=tcp://127.0.0.1:8786"
    # Not imported yet: no option class defines the flag, so it is a typo.
    with pytest.raises(UsageError, match="unknown flag --cluster_address"):
        beam_options.check_flags(PipelineOptions([flag]), parser)
    # Named as the runner, its module is imported first and its flags are known.
    beam_options.check_flags(PipelineOptions([flag, "--runner=cluster_runner.ClusterRunner"]),
                             parser)
    with pytest.raises(UsageError, match="--runner=nowhere.Runner is not available"):
        beam_options.check_flags(PipelineOptions(["--runner=nowhere.Runner"]), parser)


def test_dataflow_labels_flag_is_not_the_vocabulary(capsys):
    err = _main_error(capsys, ["--labels=post_up,cut"])
    assert "--label_vocabulary" in err and "Dataflow job labels" in err


def test_help_lists_the_job_flags(capsys):
    with pytest.raises(SystemExit) as info:
        make_records.run(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--label_vocabulary" in out and "--output_dir" in out and "--num_shards" in out
