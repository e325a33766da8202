"""Corrupt records: find them at start-up, name them in errors, skip them when asked.

Without --skip_corrupt_records a corrupt record stops the run with one line
naming the file and offset (`corrupt_records_named`). With it, every shard is
scanned once at start-up (`scan_for_corrupt_records`) and the reader wraps its
per-file reads in a `SkipCorrupt`: the only place of the input side that knows
about the option. The reader's record stream has one element shape either way,
(serialized record, records skipped just before it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import tensorflow as tf

from schemas.errors import UsageError, one_line
from trainer.data import filesystems

logger = logging.getLogger(__name__)

_OFFSET_RE = re.compile(r"(corrupted|truncated) record at (\d+)")


class CorruptRecordError(UsageError):
    """A shard holds a record that fails its checksum or is cut short (`path`, `offset`)."""

    def __init__(self, message: str, path: str = "", offset: Optional[int] = None):
        super().__init__(message)
        self.path = path
        self.offset = offset


@dataclasses.dataclass(frozen=True)
class FileScan:
    """What reading one shard to its end found."""

    path: str
    records: int  # the records read before the corrupt one (all of them when none)
    offset: Optional[int] = None  # byte offset of the corrupt record (None: the file is sound)
    problem: str = ""  # TensorFlow's words for it ("corrupted record at 1234")

    @property
    def corrupt(self) -> bool:
        return self.offset is not None


def _problem_of(err: tf.errors.OpError) -> Tuple[Optional[int], str]:
    """(offset, "corrupted record at N") from a DataLossError's message."""
    match = _OFFSET_RE.search(one_line(err))
    if not match:
        return None, one_line(err)
    return int(match.group(2)), match.group(0)


def scan_file(path: str, compression: Optional[str]) -> FileScan:
    """Reads `path` to its end and reports its first corrupt record, if any.

    TFRecord readers stop at a record whose length or data fails its CRC, or
    that the file's end cuts (`DataLossError`); a file cut inside a record's
    12-byte header reads as if it ended there, so for uncompressed files the
    bytes read are also compared with the file's size.
    """
    ctype = filesystems.compression_type(compression)
    ds = tf.data.TFRecordDataset(path, compression_type=ctype)

    def add(totals, record):
        return totals[0] + 1, totals[1] + 16 + tf.cast(tf.strings.length(record), tf.int64)

    zero = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    try:
        count, size = (int(v) for v in ds.reduce(zero, add))
    except tf.errors.DataLossError as err:
        offset, problem = _problem_of(err)
        good = int(ds.ignore_errors().reduce(zero, add)[0])
        return FileScan(path, good, offset if offset is not None else -1, problem)
    if not ctype:
        length = tf.io.gfile.stat(path).length
        if length != size:
            return FileScan(path, count, size, f"truncated record at {size} ({length - size} "
                                               f"bytes after the last whole record)")
    return FileScan(path, count)


def find_corrupt_file(files: Sequence[Tuple[str, Optional[str]]],
                      offset: Optional[int] = None) -> Optional[FileScan]:
    """The first of (path, compression) `files` with a corrupt record (at `offset`, if given)."""
    first = None
    for path, compression in files:
        scan = scan_file(path, compression)
        if scan.corrupt:
            if offset is None or scan.offset == offset:
                return scan
            first = first or scan
    return first


def corrupt_record_error(scan: FileScan, hint: str = "") -> CorruptRecordError:
    """The one-line error for a corrupt record that stops the run."""
    hint = hint or ("re-run the records job for that file, or pass --skip_corrupt_records to skip "
                    "corrupt records")
    return CorruptRecordError(f"corrupt record in {scan.path!r} at offset {scan.offset} "
                              f"({scan.problem}): {hint}", scan.path, scan.offset)


@contextlib.contextmanager
def corrupt_records_named(files: Sequence[Tuple[str, Optional[str]]]) -> Iterator[None]:
    """Turns a DataLossError from reading (path, compression) `files` into a CorruptRecordError.

    TensorFlow's message gives the offset but not the file: the files are
    scanned one by one (only after the error) to name it.
    """
    try:
        yield
    except tf.errors.DataLossError as err:
        offset, problem = _problem_of(err)
        scan = find_corrupt_file(files, offset)
        if scan is None:
            raise CorruptRecordError(
                f"corrupt data while reading the input files ({problem}), but no file of "
                f"{len(files)} is corrupt when read again") from None
        raise corrupt_record_error(scan) from None


def scan_for_corrupt_records(split: str, files: Sequence[str], compression: Optional[str]
                             ) -> Tuple[int, List[FileScan]]:
    """--skip_corrupt_records at start-up: (readable records, scans of the corrupt files).

    Logs a warning per corrupt file.
    """
    scans = [scan_file(path, compression) for path in files]
    corrupt = [scan for scan in scans if scan.corrupt]
    for scan in corrupt:
        logger.warning("%s: corrupt record in %r at offset %s (%s): skipped with "
                       "--skip_corrupt_records (with the rest of the file: %d records read)",
                       split, scan.path, scan.offset, scan.problem, scan.records)
    return sum(scan.records for scan in scans), corrupt


def skip_counters(splits: Sequence[str]) -> Dict[str, tf.Variable]:
    """split -> an int64 host variable that a split's input pipelines add its skipped records to.

    Created outside any strategy scope, on the CPU: the input pipelines (on
    the host) write them, and `callbacks.CorruptRecordCount` reads them.
    """
    with tf.device("/cpu:0"):
        return {split: tf.Variable(0, dtype=tf.int64, trainable=False,
                                   name=f"corrupt_{split}_records") for split in splits}


@dataclasses.dataclass(frozen=True)
class SkipCorrupt:
    """How the reader skips corrupt records (the trainer's --skip_corrupt_records).

    Every file is read until its first record that fails its checksum or is
    cut short (TFRecord cannot resynchronize after a bad length, so the rest of
    that file is lost for the pass).

    Attributes:
      files: the files that the start-up scan found corrupt (`scan_file`).
        Reaching the end of one puts an empty marker record in the stream,
        which rides (after the shuffle) with the next record to the end of the
        pipeline, where `counter` adds it up as the batch leaves. The count
        therefore follows the batches consumed, not the reader running ahead.
      counter: an int64 variable (host) or None: not counted.
    """

    files: Tuple[str, ...] = ()
    counter: Optional[tf.Variable] = None

    @property
    def counting(self) -> bool:
        return self.counter is not None and bool(self.files)

    def read_file(self, path: tf.Tensor, compression_type: str) -> tf.data.Dataset:
        """One file's serialized records up to a corrupt one, then a marker (b"") if counting."""
        records = tf.data.TFRecordDataset(path, compression_type=compression_type).ignore_errors()
        if not self.counting:
            return records
        is_corrupt = tf.reduce_any(tf.equal(path, tf.constant(self.files, tf.string)))
        marker = tf.data.Dataset.from_tensors(tf.constant(b""))
        return records.concatenate(marker.take(tf.cast(is_corrupt, tf.int64)))

    def fold_markers(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """serialized -> (serialized, markers just before it): markers ride on records."""
        if not self.counting:
            return with_nothing_skipped(ds)

        def step(pending, serialized):
            is_marker = tf.equal(tf.strings.length(serialized), 0)
            total = pending + tf.cast(is_marker, tf.int64)
            return tf.where(is_marker, total, 0), (serialized, total, is_marker)

        return (ds.scan(tf.constant(0, tf.int64), step)
                .filter(lambda serialized, skipped, is_marker: tf.logical_not(is_marker))
                .map(lambda serialized, skipped, is_marker: (serialized, skipped)))

    def count(self, skipped: tf.Tensor) -> tf.Operation:
        """Adds a batch's skipped records to `counter` (a no-op when not counting)."""
        if not self.counting:
            return tf.no_op()
        return self.counter.assign_add(tf.reduce_sum(skipped))


def with_nothing_skipped(ds: tf.data.Dataset) -> tf.data.Dataset:
    """serialized -> (serialized, 0): the record stream's element shape without skipping."""
    return ds.map(lambda serialized: (serialized, tf.constant(0, tf.int64)))
