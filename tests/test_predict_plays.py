"""beam_jobs/predict_plays.py: batch prediction with RunInference over a model trained here.

A tiny model is trained with `trainer.task` on tiny demo records; the job's
predictions on the test split must give the trainer's own evaluation, a
manifest must be sampled as the records job samples it, and bad plays (a
missing path, frames the model cannot decode) go to the dead letter.
"""
import glob
import json
import os
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from beam_jobs import make_records, predict_plays  # noqa: E402
from schemas import play_record  # noqa: E402
from tests import media_fixtures as mf  # noqa: E402
from trainer import task  # noqa: E402
from trainer.serving.predictor import Predictor  # noqa: E402
from trainer.data import sources  # noqa: E402

TINY = ["--cut_layer=block1_pool", "--weights=none", "--rnn=gru", "--rnn_units=8",
        "--num_frames=4", "--dropout=0", "--batch_size=4", "--epochs=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny demo records (50 plays: games 0-4, game 4 in test, 8 frames of 32 px) and a model trained on them for 1 epoch."""
    root = tmp_path_factory.mktemp("predict")
    records, job = str(root / "records"), str(root / "job")
    card = make_records.run([f"--output_dir={records}", "--demo_plays=50", "--num_frames=8",
                             "--frame_size=32", "--num_shards=1"])
    assert card.counts["test"] > 0
    assert task.run([f"--data_dir={records}", f"--job_dir={job}", "--strategy=default",
                     *TINY]) == 0
    return records, job


def _lines(output_dir, prefix):
    files = sorted(glob.glob(os.path.join(output_dir, f"{prefix}-*-of-*.jsonl")))
    return [json.loads(line) for f in files for line in open(f) if line.strip()]


def _run(*argv):
    """The job on the DirectRunner; in float32 (as the trainer evaluated) unless argv says."""
    dtype = [] if any(a.startswith("--compute_dtype") for a in argv) else ["--compute_dtype=float32"]
    return predict_plays.run([*argv, *dtype, "--runner=DirectRunner"])


def test_test_split_predictions_equal_the_trainers_evaluation(trained, tmp_path):
    records, job = trained
    out = str(tmp_path / "predictions")
    card = _run(f"--model={job}", f"--records_dir={records}", "--split=test",
                f"--output_dir={out}", "--batch_size=3", "--top_k=2")
    trainer_eval = json.load(open(os.path.join(job, "eval.json")))
    ours = json.load(open(os.path.join(out, "eval.json")))
    assert ours["accuracy"] == trainer_eval["accuracy"]
    for key in ("accuracy_n", "accuracy_ci_low", "accuracy_ci_high", "macro_f1"):
        assert ours[key] == trainer_eval[key], key  # trainer.evaluation.metrics.headline_metrics
    assert ours["num_examples"] == trainer_eval["num_examples"] == card.num_written
    assert ours["confusion_matrix"] == trainer_eval["confusion_matrix"]
    assert ours["labels"] == trainer_eval["labels"] and ours["split"] == "test"
    assert card.num_input == card.num_written == card.num_labelled and card.num_rejected == 0
    assert card.eval_file == "eval.json" and _lines(out, "rejected") == []

    # Each play's line is what the one-clip client says of the record's frames.
    lines = {line["play_id"]: line for line in _lines(out, "predictions")}
    predictor = Predictor(job)
    shards = sources.split_files(records, "test")
    records_seen = 0
    for serialized in tf.data.TFRecordDataset(shards):
        record = play_record.decode_play(serialized.numpy())
        probabilities = np.array(predictor.classify_frames(record.frames))
        line = lines[record.play_id]
        assert line["label"] == record.label and line["model"] == card.model
        assert line["predicted"] == predictor.labels[int(np.argmax(probabilities))]
        assert line["confidence"] == pytest.approx(float(probabilities.max()), abs=1e-5)
        assert len(line["top_k"]) == 2 and line["top_k"][0]["label"] == line["predicted"]
        records_seen += 1
    assert records_seen == len(lines) == card.num_written


def test_bfloat16_predictions_match_float32_without_re_export(trained, tmp_path, capsys):
    """The float32 export, rebuilt in bfloat16 on the workers: each play's top label and
    probabilities as the float32 client's (within 0.05), the card and summary say bfloat16."""
    records, job = trained
    out = str(tmp_path / "predictions")
    card = _run(f"--model={job}", f"--records_dir={records}", "--split=test",
                f"--output_dir={out}", "--top_k=3", "--compute_dtype=bfloat16")
    assert card.compute_dtype == "bfloat16" and card.args["compute_dtype"] == "bfloat16"
    assert predict_plays.read_card(out).compute_dtype == "bfloat16"
    assert "(computed in bfloat16)" in capsys.readouterr().out
    lines = {line["play_id"]: line for line in _lines(out, "predictions")}
    predictor = Predictor(job)  # float32: the SavedModel
    clear = 0
    for serialized in tf.data.TFRecordDataset(sources.split_files(records, "test")):
        record = play_record.decode_play(serialized.numpy())
        expected = np.array(predictor.classify_frames(record.frames))
        got = {t["label"]: t["probability"] for t in lines[record.play_id]["top_k"]}
        for label, probability in got.items():
            assert probability == pytest.approx(expected[predictor.labels.index(label)], abs=0.05)
        top2 = np.sort(expected)[-2:]
        if top2[1] - top2[0] > 0.01:  # not a near tie: the same top label
            clear += 1
            assert lines[record.play_id]["predicted"] == predictor.labels[int(expected.argmax())]
    assert clear > 0 and len(lines) == card.num_written


def _manifest(tmp_path, labels):
    """Two frame folders, a video, a play cut from a game video, a play whose label the model
    does not know, a row with a missing path."""
    clips = tmp_path / "clips"
    mf.write_frame_folder(str(clips / "folder_a"), 10)
    mf.write_frame_folder(str(clips / "folder_b"), 12, height=40, width=40)
    mf.write_video(str(clips / "play.mp4"), 12)
    mf.write_video(str(clips / "game.mp4"), 60)
    rows = [
        {"play_id": "a", "label": labels[0], "path": "clips/folder_a"},
        {"play_id": "b", "label": labels[1], "path": "clips/folder_b"},
        {"play_id": "v", "label": labels[0], "path": "clips/play.mp4"},
        {"play_id": "g", "label": labels[2], "path": "clips/game.mp4", "start": "0.4",
         "end": "1.6"},
        {"play_id": "new", "label": "not_a_model_label", "path": "clips/folder_a"},
        {"play_id": "missing", "label": labels[0], "path": "clips/does_not_exist"},
    ]
    return mf.write_manifest(str(tmp_path / "plays.csv"), rows,
                             ["play_id", "label", "path", "start", "end"])


def test_manifest_plays_are_sampled_as_the_records_job_and_a_bad_row_is_rejected(
        trained, tmp_path, capsys):
    _, job = trained
    predictor = Predictor(job)
    manifest = _manifest(tmp_path, predictor.labels)
    out = str(tmp_path / "predictions")
    card = _run(f"--model={job}", f"--input={manifest}", f"--output_dir={out}")
    assert (card.num_input, card.num_written, card.num_rejected) == (6, 5, 1)
    assert card.num_labelled == 4  # "new": predicted, its label not scored
    assert card.rejected_reasons == {"missing_path": 1}
    [rejected] = _lines(out, "rejected")
    assert rejected["play_id"] == "missing" and rejected["row"] == 6
    assert rejected["path"] == str(tmp_path / "clips" / "does_not_exist")
    assert "5 plays predicted, 4 with true labels" in capsys.readouterr().out

    lines = {line["play_id"]: line for line in _lines(out, "predictions")}
    assert sorted(lines) == ["a", "b", "g", "new", "v"]
    assert lines["new"]["label"] == "not_a_model_label"
    assert lines["new"]["predicted"] == lines["a"]["predicted"]  # the same frames
    assert lines["new"]["confidence"] == pytest.approx(lines["a"]["confidence"], abs=1e-5)
    clips = tmp_path / "clips"
    expected = {"a": predictor.classify(str(clips / "folder_a"), top_k=3),
                "b": predictor.classify(str(clips / "folder_b"), top_k=3),
                "v": predictor.classify(str(clips / "play.mp4"), top_k=3),
                "g": predictor.classify(str(clips / "game.mp4"), top_k=3, start=0.4, end=1.6)}
    for play_id, result in expected.items():
        line = lines[play_id]
        assert [t["label"] for t in line["top_k"]] == [t["label"] for t in result["top"]]
        np.testing.assert_allclose([t["probability"] for t in line["top_k"]],
                                   [t["probability"] for t in result["top"]], atol=1e-5)
    report = json.load(open(os.path.join(out, "eval.json")))
    truth = {"a": 0, "b": 1, "v": 0, "g": 2}
    correct = sum(predictor.labels.index(lines[p]["predicted"]) == i for p, i in truth.items())
    assert report["num_examples"] == 4 and report["accuracy"] == correct / 4


def _records_with_corrupt_play(records, out_dir):
    """A copy of the test split where one play's JPEGs stop just after their headers."""
    os.makedirs(out_dir)
    shutil.copy(os.path.join(records, "dataset.json"), out_dir)
    plays = [play_record.decode_play(s.numpy())
             for s in tf.data.TFRecordDataset(sources.split_files(records, "test"))]
    bad = plays[len(plays) // 2]
    # Past the start-of-scan header: the records' frame check (PIL reads headers) passes it,
    # the signature's decode fails.
    bad.frames = [jpeg[:jpeg.index(b"\xff\xda") + 16] for jpeg in bad.frames]
    with tf.io.TFRecordWriter(os.path.join(out_dir, "test-00000-of-00001.tfrecord")) as writer:
        for play in plays:
            writer.write(play_record.encode_play(play))
    return bad.play_id, len(plays)


def test_a_play_that_fails_inside_run_inference_is_dead_lettered(trained, tmp_path):
    records, job = trained
    bad_id, num_plays = _records_with_corrupt_play(records, str(tmp_path / "records"))
    out = str(tmp_path / "predictions")
    card = _run(f"--model={job}", f"--records_dir={tmp_path / 'records'}", "--split=test",
                f"--output_dir={out}", "--batch_size=4")
    assert (card.num_input, card.num_written, card.num_rejected) == (num_plays, num_plays - 1, 1)
    assert card.rejected_reasons == {"inference_failed": 1}
    [rejected] = _lines(out, "rejected")
    assert rejected["play_id"] == bad_id and rejected["split"] == "test"
    assert rejected["reason"].startswith("inference failed: InvalidArgumentError")
    predicted = {line["play_id"] for line in _lines(out, "predictions")}
    assert bad_id not in predicted and len(predicted) == num_plays - 1
    assert json.load(open(os.path.join(out, "eval.json")))["num_examples"] == num_plays - 1


def test_multi_processing_runner(trained, tmp_path):
    records, job = trained
    out = str(tmp_path / "predictions")
    card = predict_plays.run([f"--model={job}", f"--records_dir={records}", "--split=all",
                              f"--output_dir={out}", "--runner=DirectRunner",
                              "--direct_running_mode=multi_processing",
                              "--direct_num_workers=2"])
    total = sum(make_records.read_card(records).counts.values())
    assert card.num_written == card.num_input == total and card.split == "all"
    assert len(_lines(out, "predictions")) == total


@pytest.mark.parametrize("argv, message", [
    (["--records_dir={records}"], "--model is required"),
    (["--model={records}", "--records_dir={records}"], "no saved_model.pb"),
    (["--model={job}"], "give --records_dir"),
    (["--model={job}", "--records_dir={records}", "--input=x.csv"], "give --records_dir"),
    (["--model={job}", "--records_dir={records}", "--demo_plays=3"],
     "--demo_plays is not a flag of predict_plays.py"),
    (["--model={job}", "--records_dir={records}", "--output_dir={records}"],
     "is the records dir"),
    (["--model={job}", "--input={tmp}/none.csv"], "manifest"),
    (["--model={job}", "--records_dir={records}", "--compute_dtype=bf16"],
     "--compute_dtype=bf16: use one of auto, float32, bfloat16, float16"),
])
def test_usage_errors(trained, tmp_path, capsys, argv, message):
    records, job = trained
    filled = [a.format(records=records, job=job, tmp=tmp_path) for a in argv]
    if not any(a.startswith("--output_dir") for a in filled):
        filled.append(f"--output_dir={tmp_path / 'out'}")
    assert predict_plays.main(filled) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_portable_runner_with_an_external_worker_pool(trained, tmp_path):
    """Beam's job service + an external SDK worker pool (how Flink and Spark run Python), as
    tests/test_cluster.py runs the other jobs: the same predictions and eval as the DirectRunner."""
    from tests.cluster_processes import Cluster, free_port  # pylint: disable=g-import-not-at-top
    records, job = trained
    cluster = Cluster()
    try:
        pool_port, port_file = free_port(), tmp_path / "job_service.port"
        cluster.python("worker pool", ["-m", "apache_beam.runners.worker.worker_pool_main",
                                       f"--service_port={pool_port}"])
        service = cluster.python("job service", [
            "-m", "apache_beam.runners.portability.local_job_service_main", "--port=0",
            f"--port_file={port_file}"])
        for _ in range(600):
            if port_file.exists() and port_file.read_text().strip():
                break
            assert service.popen.poll() is None, service.output
            time.sleep(0.1)
        flags = ["beam_jobs/predict_plays.py", f"--model={job}", f"--records_dir={records}",
                 "--split=test", "--compute_dtype=float32"]
        portable = cluster.python("prediction job (portable)", [
            *flags, f"--output_dir={tmp_path / 'portable'}", "--runner=PortableRunner",
            f"--job_endpoint=localhost:{port_file.read_text().strip()}",
            "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"])
        assert portable.wait(timeout=240) == 0, portable.output[-3000:]
    finally:
        cluster.close()
    direct = str(tmp_path / "direct")
    _run(*flags[1:], f"--output_dir={direct}")
    by_run = [{line["play_id"]: line for line in _lines(out, "predictions")}
              for out in (direct, str(tmp_path / "portable"))]
    assert sorted(by_run[0]) == sorted(by_run[1])
    for play_id, line in by_run[0].items():
        assert by_run[1][play_id]["predicted"] == line["predicted"]
        assert by_run[1][play_id]["confidence"] == pytest.approx(line["confidence"], abs=1e-5)
    reports = [json.load(open(os.path.join(out, "eval.json")))
               for out in (direct, str(tmp_path / "portable"))]
    assert reports[0]["accuracy"] == reports[1]["accuracy"]
    assert reports[0]["confusion_matrix"] == reports[1]["confusion_matrix"]
