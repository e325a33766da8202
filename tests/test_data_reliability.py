"""Data reliability: corrupt and truncated shards, outputs that are never half-written, label
files, a records job that writes nothing, and exports that load with Keras' safe_mode."""
import csv
import glob
import json
import os
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from beam_jobs import make_records  # noqa: E402
from demo_data import plays as demo_plays, synthetic_records as record_fixtures  # noqa: E402
from schemas import dataset_card, labels as labels_lib  # noqa: E402
from schemas.errors import UsageError  # noqa: E402
from trainer.data import corrupt, parsers, reader, sources  # noqa: E402
from trainer.data.config import ReaderConfig  # noqa: E402
from trainer.serving import export  # noqa: E402
from trainer import task  # noqa: E402
from trainer.modeling import model as model_lib  # noqa: E402

TINY = ["--cut_layer=block1_pool", "--weights=none", "--rnn_units=4", "--num_frames=2",
        "--dropout=0", "--strategy=default", "--batch_size=2", "--shuffle_buffer=0"]


def _record_offsets(path):
    """Byte offsets of the records of an uncompressed TFRecord file."""
    offsets, offset = [], 0
    for record in tf.data.TFRecordDataset(path):
        offsets.append(offset)
        offset += 16 + len(record.numpy())
    return offsets


def _flip_byte(path, record_index):
    """Flips a byte inside a record's data; returns the offset of that data, which TensorFlow
    names (the record's 12-byte header precedes it)."""
    offset = _record_offsets(path)[record_index] + 12
    data_ = bytearray(open(path, "rb").read())
    data_[offset + 20] ^= 0xFF
    open(path, "wb").write(bytes(data_))
    return offset


def _truncate(path, keep_bytes_of_last_record):
    """Cuts the file inside its last record; returns that record's offset."""
    offset = _record_offsets(path)[-1]
    with open(path, "r+b") as f:
        f.truncate(offset + keep_bytes_of_last_record)
    return offset


@pytest.fixture()
def records(tmp_path):
    """Train and val, 6 plays each in 2 shards of 3 records."""
    out = tmp_path / "records"
    record_fixtures.write_dataset(out, num_plays=6, num_frames=2, size=32,
                                  splits=("train", "val"), num_shards=2)
    return str(out)


# ------------------------------------------------------------------ corrupt shards


def test_scan_names_flipped_and_truncated_records(tmp_path, records):
    train = sorted(glob.glob(os.path.join(records, "train-*")))
    val = sorted(glob.glob(os.path.join(records, "val-*")))
    assert corrupt.scan_file(train[0], "none") == corrupt.FileScan(train[0], 3)
    flipped = _flip_byte(train[0], 1)
    assert corrupt.scan_file(train[0], "none") == corrupt.FileScan(
        train[0], 1, flipped, f"corrupted record at {flipped}")
    cut = _truncate(val[0], 100)  # cut inside the last record's data
    assert corrupt.scan_file(val[0], "none").offset == cut
    cut = _truncate(val[1], 5)  # inside its 12-byte header: TensorFlow reads it as the end
    assert len(list(tf.data.TFRecordDataset(val[1]))) == 2
    scan = corrupt.scan_file(val[1], "none")
    assert scan.records == 2 and scan.offset == cut and "truncated record" in scan.problem
    files = [(path, "none") for path in train + val]
    assert corrupt.find_corrupt_file(files).path == train[0]
    assert corrupt.find_corrupt_file(files, offset=cut).path == val[1]
    with pytest.raises(corrupt.CorruptRecordError, match="train-00000-of-00002.tfrecord' at offset"):
        sources.count_records(train, "none")


def test_skipped_records_are_counted_as_batches_leave_the_pipeline(tmp_path, records):
    path = sorted(glob.glob(os.path.join(records, "train-*")))[0]
    _flip_byte(path, 2)  # records 0 and 1 are readable
    counter = tf.Variable(0, dtype=tf.int64)
    ds = reader.make_dataset([path], parsers.ClipParser(2, (32, 32)), ReaderConfig(1),
                             training=False, repeat=True,
                             corrupt=corrupt.SkipCorrupt((path,), counter))
    it = iter(ds)
    counts = []
    for _ in range(6):
        clips, labels = next(it)
        assert clips.shape == (1, 2, 32, 32, 3) and labels.shape == (1,)
        counts.append(int(counter.numpy()))
    # The marker of each pass rides on the next pass's first record.
    assert counts == [0, 0, 1, 1, 2, 2]
    # Without a counter the file is read to the corrupt record, pass after pass.
    ds = reader.make_dataset([path], parsers.ClipParser(2, (32, 32)), ReaderConfig(1),
                             training=False, corrupt=corrupt.SkipCorrupt((path,)))
    assert len(list(ds)) == 2


def test_corrupt_shard_ends_training_with_one_line_naming_file_and_offset(
        tmp_path, records, capsys):
    path = os.path.join(records, "train-00001-of-00002.tfrecord")
    offset = _flip_byte(path, 1)
    code = task.run([f"--data_dir={records}", f"--job_dir={tmp_path / 'job'}", "--epochs=1",
                     *TINY])
    err = capsys.readouterr().err.strip()
    # The last line (Keras may warn about shuffle=True above it), with no traceback.
    assert code == 2 and "Traceback" not in err and "DataLossError" not in err, err
    assert err.splitlines()[-1].startswith(
        f"error: corrupt record in '{path}' at offset {offset} (corrupted record at {offset})")
    assert "--skip_corrupt_records" in err.splitlines()[-1]


def test_skip_corrupt_records_counts_them_per_epoch_in_history(tmp_path, records, capsys):
    train = os.path.join(records, "train-00001-of-00002.tfrecord")
    _flip_byte(train, 1)
    val = os.path.join(records, "val-00000-of-00002.tfrecord")
    _truncate(val, 40)  # a truncated final record counts too
    job = tmp_path / "job"
    code = task.run([f"--data_dir={records}", f"--job_dir={job}", "--epochs=2",
                     "--skip_corrupt_records", *TINY])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert f"warning: train: corrupt record in '{train}'" in out
    assert f"warning: val: corrupt record in '{val}'" in out
    with open(job / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    train_counts = [int(row["corrupt_records"]) for row in rows]
    val_counts = [int(row["val_corrupt_records"]) for row in rows]
    # One corrupt record per pass over the files: train epochs are 4 of the 4 readable
    # plays, and validation reads the 5 readable val plays once per epoch.
    assert sum(train_counts) >= 1 and all(0 <= n <= 3 for n in train_counts), rows
    assert val_counts[0] == 1 and sum(val_counts) in (2, 3), rows
    assert "corrupt_records=" in [line for line in out.splitlines()
                                  if line.startswith("epoch 2/2")][0]
    config = json.loads((job / "config.json").read_text())
    assert config["resolved"]["num_train"] == 4 and config["resolved"]["num_eval"] == 5


# ------------------------------------------------------------------ labels


def test_label_vocabulary_from_a_file_or_a_list(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("# play types\npost_up\n\ncut  # back door\n")
    assert labels_lib.label_vocabulary(str(path), "--labels") == ["post_up", "cut"]
    assert labels_lib.label_vocabulary(" post_up, cut ,", "--labels") == ["post_up", "cut"]
    assert labels_lib.label_vocabulary("", "--labels") is None
    for value, message in ((str(tmp_path / "nope.txt"), "no such file"),
                           ("lists/labels", "no such file"),
                           ("a,b,a", "repeated labels: a")):
        with pytest.raises(UsageError, match=message):
            labels_lib.label_vocabulary(value, "--labels")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="holds no labels"):
        labels_lib.label_vocabulary(str(tmp_path / "empty.txt"), "--labels")


def test_trainer_labels_flag_takes_a_file(tmp_path, capsys):
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\n")
    config = task.parse_args(["--data_dir=/d", "--job_dir=/j", f"--labels={path}"])
    assert config.data.labels == ["a", "b"]
    code = task.run([f"--job_dir={tmp_path}", f"--labels={tmp_path / 'missing' / 'labels.txt'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "error: --labels=" in err[0] and "no such file" in err[0]


def _main(capsys, argv):
    code = make_records.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_records_job_label_file_overwrite_and_no_play_written(tmp_path, capsys):
    out = tmp_path / "recs"
    vocab = tmp_path / "labels.txt"
    vocab.write_text("# the demo's labels, in reverse\n" + "\n".join(sorted(demo_plays.DEMO_LABELS,
                                                                          reverse=True)))
    job = [f"--output_dir={out}", "--demo_plays=4", "--num_frames=2", "--frame_size=16"]
    code, stdout, err = _main(capsys, [*job, f"--label_vocabulary={vocab}", "--num_shards=2"])
    assert code == 0, err
    card = make_records.read_card(str(out))
    assert card.labels == sorted(demo_plays.DEMO_LABELS, reverse=True)
    assert glob.glob(str(out / "*-of-00002.tfrecord"))
    (out / "notes.md").write_text("mine")

    code, _, err = _main(capsys, job)  # the same folder again
    assert code == 2 and err.startswith(f"error: --output_dir={out} is not empty") and \
        "--overwrite" in err and "\n" not in err

    code, _, err = _main(capsys, [*job, f"--label_vocabulary={tmp_path / 'nope' / 'labels.txt'}"])
    assert code == 2 and "no such file" in err

    # --overwrite: the earlier shards go; a vocabulary that matches no play writes nothing,
    # which is an error with the rejection summary.
    code, stdout, err = _main(capsys, [*job, "--overwrite", "--label_vocabulary=dunk,alley_oop",
                                       "--num_shards=1"])
    assert code == 2 and "\n" not in err
    assert err == (f"error: no play written: 4 of 4 rejected (unknown_label=4; see {out}/"
                   f"rejected-*.jsonl)")
    assert "records: 0 plays written" in stdout
    assert not glob.glob(str(out / "*-of-00002.tfrecord"))
    assert (out / "notes.md").read_text() == "mine"
    card = make_records.read_card(str(out))
    assert card.rejected_reasons == {"unknown_label": 4} and card.labels == ["dunk", "alley_oop"]


def test_trainer_refuses_a_records_dir_without_its_card(tmp_path, records, capsys):
    os.remove(os.path.join(records, dataset_card.CARD_NAME))  # an unfinished records job
    code = task.run([f"--data_dir={records}", f"--job_dir={tmp_path / 'job'}", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: no dataset.json in {records!r}") and \
        "did not finish" in err


# ------------------------------------------------------------------ export


def _layers(layer):
    yield layer
    for child in getattr(layer, "layers", []):
        yield from _layers(child)
    inner = getattr(layer, "layer", None)  # TimeDistributed, Bidirectional
    if inner is not None:
        yield from _layers(inner)


def test_export_is_renamed_into_place_has_no_lambda_and_loads_in_safe_mode(tmp_path):
    model = model_lib.build_model(2, image_size=(32, 32), cut_layer="block1_pool",
                                  weights="none", rnn="gru", rnn_units=4)
    for _ in range(2):  # the second export replaces the first
        meta = export.export_model(model, str(tmp_path), labels=["a", "b"], image_size=32,
                                   num_frames=2)
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "saved_model"]
    assert os.path.exists(export.metadata_path(meta["saved_model_dir"]))
    with zipfile.ZipFile(meta["model_path"]) as archive:
        config = archive.read("config.json").decode("utf-8")
    assert '"Lambda"' not in config
    loaded = keras.models.load_model(meta["model_path"], safe_mode=True)
    names = [type(layer).__name__ for layer in _layers(loaded)]
    assert "TimeDistributed" in names and "Lambda" not in names
    assert all(type(layer).__module__.startswith("keras.") for layer in _layers(loaded))
