"""The input side's settings: where a run's records are (DataConfig) and how they are read
(ReaderConfig). No TensorFlow import (the flags and --help stay quick)."""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

from schemas import labels as labels_lib
from schemas.errors import UsageError
from trainer.flags import flag, optional_int

SHUFFLE_BUFFER = 256  # records in the training shuffle buffer


def _read_label_file(path: str) -> Optional[str]:
    """A label file's text, local or on a TensorFlow file system (None when there is no such file)."""
    if "://" not in path:
        return labels_lib.read_local_file(path)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from trainer.data import filesystems  # pylint: disable=g-import-not-at-top
    filesystems.ensure_filesystem(path)
    try:
        if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
            return None
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read().decode("utf-8-sig")
    except (tf.errors.OpError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read label file {path}: {err}") from None


def label_list(text: str) -> Optional[List[str]]:
    """--labels: a comma-separated list or a file of one label per line (schemas.labels)."""
    return labels_lib.label_vocabulary(text, "--labels", _read_label_file)


@dataclasses.dataclass
class DataConfig:
    """The run's records: a records-job output folder, or globs (+ the card's values given
    explicitly); the cached features; how corrupt records are treated."""

    data_dir: str = flag("", "the records job's --output_dir (has dataset.json; with "
                         "--features_dir, default: the records the features were computed from)",
                         group="data")
    features_dir: str = flag("", "the embed job's --output_dir (has features.json): train the "
                             "head from cached frozen-base features; evaluation, export and "
                             "fine-tuning use the play records", group="data")
    train_files: str = flag("", "comma-separated globs of the training shards (instead of "
                            "--data_dir)", group="data")
    eval_files: str = flag("", "comma-separated globs of the validation shards", group="data")
    test_files: str = flag("", "comma-separated globs of the test shards", group="data")
    num_frames: Optional[int] = flag(None, "frames per clip (default: all the records hold)",
                                     group="data", parse=optional_int, minimum=1)
    height: Optional[int] = flag(None, "frame height (default: the card's)", group="data",
                                 parse=optional_int, minimum=1)
    width: Optional[int] = flag(None, "frame width (default: the card's)", group="data",
                                parse=optional_int, minimum=1)
    compression: Optional[str] = flag(None, "none|gzip (default: the card's)", group="data",
                                      parse=str)
    labels: Optional[List[str]] = flag(None, "label vocabulary: a comma-separated list or a file "
                                       "with one label per line, blank lines and # comments "
                                       "ignored (default: the card's)", group="data",
                                       parse=label_list)
    shuffle_buffer: int = flag(SHUFFLE_BUFFER, "record shuffle buffer (training)", group="data",
                               minimum=0)
    skip_corrupt_records: bool = flag(
        False, "skip records that fail their checksum (a corrupt or truncated shard; TFRecord "
        "cannot resynchronize, so one ends its file's reading) instead of stopping with an error "
        "naming the file; the shards are scanned at start-up and the records skipped are counted "
        "per epoch (history.csv's corrupt_records and val_corrupt_records)", group="data")

    def split_globs(self) -> dict:
        """split -> the comma-separated globs given for it ("" when none)."""
        return {"train": self.train_files, "val": self.eval_files, "test": self.test_files}


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    """How the reader reads a run's records (`trainer.data.reader.read`)."""

    global_batch_size: int
    seed: Optional[int] = None
    shuffle_buffer: int = SHUFFLE_BUFFER
    data_service: str = ""  # grpc://HOST:PORT: training batches come from the tf.data service
    service_job_dir: str = ""  # names the service job (one per run)
    # --balanced_sampling: the train split's label frequencies (resampled to uniform).
    label_frequencies: Optional[Tuple[float, ...]] = None
    # --class_weight: a weight per label, training batches then carry sample weights.
    class_weights: Optional[Tuple[float, ...]] = None
