"""beam_jobs.outputs: the output folder rule both jobs follow, and the rejection record."""
import os

import pytest

from beam_jobs import embed_records, make_records, outputs
from demo_data import synthetic_records
from schemas.errors import UsageError


def test_check_output_dir(tmp_path):
    outputs.check_output_dir(str(tmp_path / "out" / "deeper"))
    assert os.path.isdir(tmp_path / "out" / "deeper")
    assert os.listdir(tmp_path / "out" / "deeper") == []  # the probe is removed
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="not writable"):
        outputs.check_output_dir(str(blocker / "out"))


def test_output_folder_rule(tmp_path):
    out = tmp_path / "out"
    outputs.prepare_output_dir(str(out), overwrite=False)  # a new folder
    outputs.prepare_output_dir(str(out), overwrite=False)  # an empty one
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"is not empty \(1 entries, e.g. notes.txt\).*--overwrite"):
        outputs.prepare_output_dir(str(out), overwrite=False)
    ours = ["features.json", "base.keras", "train-00000-of-00002.tfrecord",
            "val-00001-of-00002.tfrecord.gz", "rejected-00000-of-00001.jsonl", "dataset.json"]
    for name in ours:
        (out / name).write_text("x")
    with pytest.raises(UsageError, match=r"is not empty \(7 entries.*already holds dataset\.json, "
                                         r"a complete earlier run\).*--overwrite"):
        outputs.prepare_output_dir(str(out), overwrite=False)
    assert sorted(os.listdir(out)) == sorted(ours + ["notes.txt"])  # a refusal deletes nothing
    outputs.prepare_output_dir(str(out), overwrite=True)
    assert os.listdir(out) == ["notes.txt"]  # either job's files go, other files stay


def test_both_jobs_refuse_a_non_empty_folder(tmp_path, capsys):
    records = tmp_path / "recs"
    synthetic_records.write_dataset(records, num_plays=2, num_frames=2, size=32)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert make_records.main([f"--output_dir={out}", "--demo_plays=2"]) == 2
    assert embed_records.main([f"--records_dir={records}", f"--output_dir={out}",
                               "--weights=none", "--cut_layer=block1_pool"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("is not empty" in e and "--overwrite" in e for e in errors)
    assert os.listdir(out) == ["notes.txt"]


def test_rejection_has_one_set_of_fields():
    entry = outputs.rejection("p1", "a/b", "no frames found", "no_frames", 3, "train")
    assert entry == {"play_id": "p1", "path": "a/b", "reason": "no frames found",
                     "kind": "no_frames", "row": 3, "split": "train"}
    assert set(outputs.rejection(None, None, "r", "k")) == set(entry)
