"""Where a run's records are: the dataset card, the shards of each split, their counts.

`resolve_inputs(config)` turns the trainer's flags (a records-job folder, or
shard globs plus the clip settings) into `Inputs`, checks every file once at
start-up, and gives `strategy.distribute_datasets_from_function` its dataset
functions (`Inputs.dataset_fn`): the local pipeline, or with --data_service
the training pipeline run by a tf.data service (`trainer.data_service`).
Problems a user can fix raise UsageError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import tensorflow as tf
from google.protobuf import message

from schemas import dataset_card, feature_record, features_card, play_record
from schemas.errors import UsageError, one_line
from trainer import data, data_service as data_service_lib, filesystems

SPLITS = ("train", "val", "test")


def load_card(data_dir: str) -> dataset_card.DatasetCard:
    """Reads `dataset.json` from a records-job output folder."""
    filesystems.ensure_filesystem(data_dir)
    path = os.path.join(data_dir, dataset_card.CARD_NAME)
    if not tf.io.gfile.exists(path):
        raise UsageError(
            f"no {dataset_card.CARD_NAME} in {data_dir!r}: --data_dir must be the records job's "
            f"--output_dir, and a records job that did not finish has none (the card is its "
            f"last file); or pass --train_files/--eval_files globs")
    with tf.io.gfile.GFile(path, "r") as f:
        return dataset_card.DatasetCard.from_json(f.read())


def match_files(patterns: Union[str, Sequence[str]]) -> List[str]:
    """Expands comma-separated (or listed) globs into a sorted, de-duplicated file list."""
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",")]
    patterns = [p for p in patterns if p]
    if not patterns:
        raise UsageError("no file pattern given")
    files = set()
    for pattern in patterns:
        filesystems.ensure_filesystem(pattern)
        matched = tf.io.gfile.glob(pattern)
        if not matched:
            raise UsageError(f"no file matches {pattern!r}")
        files.update(matched)
    return sorted(files)


def split_files(data_dir: str, split: str,
                card: Optional[dataset_card.DatasetCard] = None) -> List[str]:
    """The shards of one split of a records-job output folder."""
    card = card or load_card(data_dir)
    pattern = os.path.join(data_dir, card.shard_glob(split))
    filesystems.ensure_filesystem(pattern)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise UsageError(
            f"no shard of split {split!r} matches {pattern!r} (dataset.json counts: {card.counts})")
    return files


def check_files(files: Sequence[str], compression: Optional[str],
                max_files: Optional[int] = None) -> None:
    """Reads the first record of each file eagerly and checks it is a play record.

    Run before training so that a wrong file (a text file, another compression,
    a tf.train.Example of another layout, another schema version) fails with
    a message naming the file instead of an error deep in a tf.data iterator.
    Empty shards are allowed. Raises UsageError (SchemaError for a record
    that is not a play record of this schema version).
    """
    files = list(files)
    if not files:
        raise UsageError("no input files to check")
    ctype = data.compression_type(compression)
    for path in files[:max_files]:
        filesystems.ensure_filesystem(path)
        if not tf.io.gfile.exists(path):
            raise UsageError(f"input file {path!r} does not exist")
        try:
            first = next(iter(tf.data.TFRecordDataset(path, compression_type=ctype).take(1)), None)
        except tf.errors.OpError as err:
            raise UsageError(
                f"{path!r} is not a TFRecord file readable with compression={compression or 'none'!r} "
                f"({type(err).__name__}: {err.message.strip()}). Pass the compression the records "
                f"were written with (dataset.json 'compression') and only the records job's shards"
            ) from None
        if first is None:
            continue
        try:
            record = play_record.decode_play(first.numpy())
        except play_record.SchemaError as err:
            raise play_record.SchemaError(
                f"{path!r}: {err} — not a playclips play record of schema version "
                f"{play_record.SCHEMA_VERSION} (a tf.train.Example of another layout, or written by "
                f"another version of the records job: re-run it)") from None
        except message.DecodeError as err:
            raise play_record.SchemaError(
                f"{path!r}: the first record is not a tf.train.SequenceExample ({err})") from None
        if not record.frames:
            raise play_record.SchemaError(
                f"{path!r}: the first record has no '{play_record.IMAGE_ENCODED}' frames: not a "
                f"playclips play record")
        _check_frame_size(path, record)


def _check_frame_size(path: str, record: play_record.PlayRecord) -> None:
    """The first frame is a JPEG of the size the record states (training crops by that size)."""
    try:
        shape = tf.io.extract_jpeg_shape(record.frames[0]).numpy().tolist()
    except tf.errors.InvalidArgumentError:
        raise play_record.SchemaError(
            f"{path!r}: the first frame of the first record is not a JPEG, as "
            f"'{play_record.IMAGE_ENCODED}' must be") from None
    if shape[:2] != [record.height, record.width]:
        raise play_record.SchemaError(
            f"{path!r}: the first record states {record.height}x{record.width} frames "
            f"('{play_record.IMAGE_HEIGHT}', '{play_record.IMAGE_WIDTH}') but its first frame is "
            f"{shape[0]}x{shape[1]}: the record was not written by the records job")




def count_records(files: Sequence[str], compression: Optional[str]) -> int:
    """The number of records in `files` (reads them all; CorruptRecordError for a corrupt one)."""
    with corrupt_records_named([(path, compression) for path in files]):
        ds = tf.data.TFRecordDataset(list(files),
                                     compression_type=data.compression_type(compression))
        return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


# ---------------------------------------------------------------- corrupt records

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
    ctype = data.compression_type(compression)
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

    Prints a warning per corrupt file.
    """
    scans = [scan_file(path, compression) for path in files]
    corrupt = [scan for scan in scans if scan.corrupt]
    for scan in corrupt:
        print(f"warning: {split}: corrupt record in {scan.path!r} at offset {scan.offset} "
              f"({scan.problem}): skipped with --skip_corrupt_records (with the rest of the "
              f"file: {scan.records} records read)", flush=True)
    return sum(scan.records for scan in scans), corrupt


class _SplitDatasets:
    """`dataset_fn` for inputs with `files`, `compression`, `data_service`, `service_job_dir`,
    `kind` and a `dataset(split, ...)` method.

    With --skip_corrupt_records (`corrupt_files` set), `counters` maps "train"
    and "val" to the int64 variables that count the corrupt records their
    repeated datasets skip (`PlayClassificationTask.corrupt_counters`).
    """

    corrupt_files: Optional[Dict[str, List[str]]] = None
    counters: Optional[Dict[str, tf.Variable]] = None

    def corrupt_records(self, split: str, repeat: bool) -> Optional[data.CorruptRecords]:
        """How a dataset of `split` skips corrupt records (None: it does not)."""
        if self.corrupt_files is None:
            return None
        counter = (self.counters or {}).get(split) if repeat else None
        return data.CorruptRecords(tuple(self.corrupt_files.get(split, ())), counter)

    def dataset_fn(self, split: str, *, training: bool, batch_size: int,
                   seed: Optional[int] = None
                   ) -> Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]:
        """A repeated dataset of one split, for `strategy.distribute_datasets_from_function`.

        Training with --data_service: every worker registers the same unsharded
        pipeline, batched per replica, with the service (`trainer.data_service`).
        Otherwise each worker reads its share of the shards (`data.shard_files`),
        and a share without a record fails here (`check_shares`).
        """
        def fn(input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
            if training and self.data_service:
                per_replica = (input_context.get_per_replica_batch_size(batch_size)
                               if input_context else batch_size)
                local = self.dataset(split, training=True, batch_size=per_replica, seed=seed,
                                     repeat=True)
                name = data_service_lib.job_name(self.service_job_dir, split, self.kind)
                print(f"{split} input pipeline: tf.data service {self.data_service} (job {name})",
                      flush=True)
                return data_service_lib.distribute(local, self.data_service, name)
            self.check_shares(split, input_context)
            return self.dataset(split, training=training, batch_size=batch_size, seed=seed,
                                repeat=True, input_context=input_context)
        return fn

    def check_shares(self, split: str,
                     input_context: Optional[tf.distribute.InputContext]) -> None:
        """UsageError when an input pipeline's share of `split`'s shards holds no record.

        Shards go to input pipelines (workers) by file, and a repeated empty
        dataset never yields: such a worker would wait forever, and the others
        with it. Every worker checks every share, so all of them stop with the
        same message. Fewer files than pipelines is `data.shard_files`' error.
        """
        num = input_context.num_input_pipelines if input_context else 1
        files = self.files[split]
        if num <= 1 or len(files) < num:
            return
        with tf.init_scope():
            has_records = {path: _has_records(path, self.compression) for path in files}
        idle = [i for i in range(num) if not any(has_records[f] for f in files[i::num])]
        if idle:
            share = files[idle[0]::num]
            full = sum(has_records.values())
            raise UsageError(
                f"worker {idle[0]} of {num} would read no {split} records: its share of the "
                f"shards ({', '.join(os.path.basename(f) for f in share)}) is empty. Only {full} "
                f"of the {len(files)} {split} shard(s) hold records, fewer than the {num} workers "
                f"(input pipelines), and shards go to workers by file. Fix: write more shards "
                f"(the records job's --num_shards, several per worker), or shard dynamically "
                f"with the tf.data service (--data_service=grpc://HOST:PORT, docs/clusters.md)")


def _has_records(path: str, compression: Optional[str]) -> bool:
    """Whether the TFRecord file at `path` holds at least one record (reads one)."""
    ds = tf.data.TFRecordDataset(path, compression_type=data.compression_type(compression))
    return next(iter(ds.take(1)), None) is not None


@dataclasses.dataclass
class Inputs(_SplitDatasets):
    """A run's resolved input side: clip settings, shard files and play counts per split."""

    num_frames: int
    height: int
    width: int
    compression: str
    labels: List[str]
    files: dict  # split -> shard paths ([] when the split is absent)
    counts: dict  # split -> plays
    card: Optional[dataset_card.DatasetCard] = None
    shuffle_buffer: int = data.DEFAULT_SHUFFLE_BUFFER
    # --skip_corrupt_records: split -> the shards found corrupt at start-up (None: not skipping).
    corrupt_files: Optional[Dict[str, List[str]]] = None
    data_service: str = ""  # grpc://HOST:PORT: training batches come from the tf.data service
    service_job_dir: str = ""  # names the service job (one per run)
    kind = "clips"

    @property
    def image_size(self):
        return (self.height, self.width)

    def dataset(self, split: str, *, training: bool, batch_size: int, seed: Optional[int] = None,
                repeat: bool = False,
                input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        """`data.make_dataset` over one split's shards with this run's clip settings."""
        return data.make_dataset(
            self.files[split], training=training, global_batch_size=batch_size,
            num_frames=self.num_frames, image_size=self.image_size, compression=self.compression,
            input_context=input_context, seed=seed, shuffle_buffer=self.shuffle_buffer,
            repeat=repeat, corrupt=self.corrupt_records(split, repeat))


@dataclasses.dataclass
class FeatureInputs(_SplitDatasets):
    """Cached frozen-base features (the embed job's output): card, shards and counts per split."""

    card: features_card.FeaturesCard
    features_dir: str
    num_frames: int
    files: dict  # split -> shard paths ([] when the split is absent)
    counts: dict  # split -> plays
    shuffle_buffer: int = data.DEFAULT_SHUFFLE_BUFFER
    corrupt_files: Optional[Dict[str, List[str]]] = None  # as Inputs.corrupt_files
    data_service: str = ""
    service_job_dir: str = ""
    compression = "none"
    kind = "features"

    def dataset(self, split: str, *, training: bool, batch_size: int, seed: Optional[int] = None,
                repeat: bool = False,
                input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        """`data.make_feature_dataset` over one split's feature shards."""
        return data.make_feature_dataset(
            self.files[split], training=training, global_batch_size=batch_size,
            num_frames=self.num_frames, feature_dim=self.card.feature_dim,
            parse_fn=functools.partial(feature_record.parse_features, dtype=self.card.dtype),
            input_context=input_context, seed=seed, shuffle_buffer=self.shuffle_buffer,
            repeat=repeat, corrupt=self.corrupt_records(split, repeat))

    @property
    def base_path(self) -> str:
        """The saved base that computed the features (the exported model's base)."""
        return os.path.join(self.features_dir, self.card.base_model)


def load_features_card(features_dir: str) -> features_card.FeaturesCard:
    """Reads `features.json` from an embed-job output folder (UsageError when missing)."""
    filesystems.ensure_filesystem(features_dir)
    path = os.path.join(features_dir, features_card.CARD_NAME)
    if not tf.io.gfile.exists(path):
        raise UsageError(f"no {features_card.CARD_NAME} in {features_dir!r}: --features_dir must "
                         f"be the embed job's --output_dir (a run that did not finish has none)")
    with tf.io.gfile.GFile(path, "r") as f:
        return features_card.FeaturesCard.from_json(f.read())


def resolve_feature_inputs(config, records: Inputs) -> FeatureInputs:
    """The cached features of `config.features_dir`, checked against the play records' card."""
    card = load_features_card(config.features_dir)
    if list(card.labels) != list(records.labels):
        raise UsageError(f"the features' labels {card.labels} differ from the records' "
                         f"{records.labels}: give the --data_dir the features were computed from "
                         f"({card.records_dir})")
    num_frames = config.num_frames or card.num_frames
    if num_frames > card.num_frames:
        raise UsageError(f"--num_frames={num_frames} but the features hold {card.num_frames} "
                         f"frames per play")
    files, counts = {}, {}
    corrupt_files = {} if config.skip_corrupt_records else None
    for split in SPLITS:
        pattern = os.path.join(config.features_dir, card.shard_glob(split))
        files[split] = sorted(tf.io.gfile.glob(pattern)) if card.counts.get(split) else []
        counts[split] = int(card.counts.get(split, 0)) if files[split] else 0
        if corrupt_files is not None and files[split]:
            counts[split], corrupt = scan_for_corrupt_records(split, files[split], "none")
            corrupt_files[split] = [scan.path for scan in corrupt]
    if not counts["train"]:
        raise UsageError(f"no training features in {config.features_dir!r} (features.json counts: "
                         f"{card.counts})")
    return FeatureInputs(card=card, features_dir=config.features_dir, num_frames=num_frames,
                         files=files, counts=counts, shuffle_buffer=config.shuffle_buffer,
                         corrupt_files=corrupt_files, **_service_settings(config))


def _service_settings(config) -> dict:
    """The Inputs fields of --data_service (checked) and the run it names the job after."""
    address = getattr(config, "data_service", "")
    return dict(data_service=data_service_lib.parse_address(address) if address else "",
                service_job_dir=config.job_dir)


def _clip_settings(config, card: Optional[dataset_card.DatasetCard]) -> dict:
    """Frame count, size, compression and labels: the flags, else the card."""
    if card is not None and config.num_frames and config.num_frames > card.num_frames:
        raise UsageError(
            f"--num_frames={config.num_frames} but the records hold {card.num_frames} frames "
            f"per play (re-run the records job with more frames, or ask for fewer)")
    settings = dict(num_frames=config.num_frames, height=config.height, width=config.width,
                    compression=config.compression, labels=config.labels)
    if card is not None:
        defaults = dict(num_frames=card.num_frames, height=card.height, width=card.width,
                        compression=card.compression, labels=list(card.labels))
        settings = {k: v or defaults[k] for k, v in settings.items()}
    missing = [name for name in ("height", "width") if not settings[name]]
    if missing:
        raise UsageError(f"without --data_dir, give --{' and --'.join(missing)} explicitly")
    if not settings["labels"]:
        raise UsageError("no label vocabulary: give --data_dir, put dataset.json beside the "
                         "--train_files, or pass --labels")
    if not settings["num_frames"]:
        raise UsageError("no frame count: give --data_dir or --num_frames")
    settings["compression"] = settings["compression"] or "none"
    return settings


def _split_files(config, card: Optional[dataset_card.DatasetCard]) -> dict:
    """split -> shard paths: the globs given, else the card's shards of that split."""
    globs = {"train": config.train_files, "val": config.eval_files, "test": config.test_files}
    files = {}
    for split in SPLITS:
        if globs[split]:
            files[split] = match_files(globs[split])
        elif config.data_dir and card is not None and (split == "train" or card.counts.get(split)):
            files[split] = split_files(config.data_dir, split, card)
        else:
            files[split] = []
    return files


def resolve_inputs(config, data_dir: Optional[str] = None) -> Inputs:
    """The `Inputs` of a TrainConfig; every shard file is checked once (UsageError).

    `data_dir` overrides `config.data_dir` (the records folder a features card names).
    """
    data_dir = data_dir or config.data_dir
    config = dataclasses.replace(config, data_dir=data_dir)
    card = load_card(config.data_dir) if config.data_dir else None
    files = _split_files(config, card)
    if not files["train"]:
        raise UsageError("no training data: give --data_dir or --train_files")
    if card is None:
        card = _card_beside(files["train"])
    settings = _clip_settings(config, card)
    counts = {}
    corrupt_files = {} if config.skip_corrupt_records else None
    globs = {"train": config.train_files, "val": config.eval_files, "test": config.test_files}
    for split, split_files_ in files.items():
        if not split_files_:
            counts[split] = 0
            continue
        if corrupt_files is not None:
            # Every shard read once: the readable records, and the files to read with care.
            counts[split], corrupt = scan_for_corrupt_records(split, split_files_,
                                                              settings["compression"])
            corrupt_files[split] = [scan.path for scan in corrupt]
            unreadable = {scan.path for scan in corrupt if not scan.records}
            readable = [path for path in split_files_ if path not in unreadable]
            if readable:
                check_files(readable, settings["compression"])
        else:
            check_files(split_files_, settings["compression"])
            from_card = card is not None and not globs[split] and split in card.counts
            counts[split] = (int(card.counts[split]) if from_card
                             else count_records(split_files_, settings["compression"]))
        if not counts[split]:
            # A repeated empty dataset never yields: training would hang, not fail.
            raise UsageError(f"no play records in the {split} files ({len(split_files_)} file(s), "
                             f"e.g. {split_files_[0]!r}): every file is empty or not a complete "
                             f"TFRecord file")
    return Inputs(files=files, counts=counts, card=card, shuffle_buffer=config.shuffle_buffer,
                  corrupt_files=corrupt_files, **settings, **_service_settings(config))


def _card_beside(files: Sequence[str]) -> Optional[dataset_card.DatasetCard]:
    """The dataset card in the folder of the first file, if there is one."""
    folder = os.path.dirname(files[0])
    if tf.io.gfile.exists(os.path.join(folder, dataset_card.CARD_NAME)):
        return load_card(folder)
    return None
