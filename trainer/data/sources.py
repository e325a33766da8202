"""Sources: where a run's records are, and what they hold.

A `Source` is one kind of records a run reads (`record_kind`: "plays", the
records job's output, or "features", the embed job's cached base features):
its card, the shards of each split and their record counts, found and
checked once at start-up. `resolve_play_source` turns the run's data settings
(`trainer.data.config.DataConfig`: a records-job folder, or shard globs plus
the clip settings) into one; `resolve_feature_source` adds the features of
--features_dir. With --skip_corrupt_records every shard is scanned here and
the corrupt ones are named in `Source.corrupt_files`: the rest of the run
learns of the flag from there. A split in `skip` (the test split of a run that
does not evaluate it: a tuning trial) is left out unread, as if it had no
files. Problems a user can fix raise UsageError.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf
from google.protobuf import message

from schemas import dataset_card, features_card, play_record
from schemas.errors import UsageError
from trainer.data import corrupt as corrupt_lib
from trainer.data import filesystems
from trainer.data.config import DataConfig

RECORD_KINDS = ("plays", "features")


@dataclasses.dataclass
class Source:
    """One kind of records of a run: card, shard files and record counts per split."""

    record_kind: str  # one of RECORD_KINDS
    root: str  # the folder of the card ("" for shard globs without one)
    card: Union[dataset_card.DatasetCard, features_card.FeaturesCard, None]
    num_frames: int  # frames per clip the model sees
    labels: List[str]
    files: Dict[str, List[str]]  # split -> shard paths ([] when the split is absent)
    counts: Dict[str, int]  # split -> records
    compression: str = "none"
    image_size: Tuple[int, int] = (0, 0)  # the frames' (height, width)
    # --skip_corrupt_records: split -> the shards found corrupt at start-up (None: not skipping).
    corrupt_files: Optional[Dict[str, List[str]]] = None

    @property
    def base_path(self) -> str:
        """Features: the saved base that computed them (the exported model's base)."""
        return os.path.join(self.root, self.card.base_model)

    def file_compressions(self) -> List[Tuple[str, str]]:
        """(path, compression) of every shard, to name a corrupt one."""
        return [(path, self.compression) for split in dataset_card.SPLITS
                for path in self.files[split]]


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
    ctype = filesystems.compression_type(compression)
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
    with corrupt_lib.corrupt_records_named([(path, compression) for path in files]):
        ds = tf.data.TFRecordDataset(list(files),
                                     compression_type=filesystems.compression_type(compression))
        return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def check_shares(source: Source, split: str,
                 input_context: Optional[tf.distribute.InputContext]) -> None:
    """UsageError when an input pipeline's share of `split`'s shards holds no record.

    Shards go to input pipelines (workers) by file, and a repeated empty
    dataset never yields: such a worker would wait forever, and the others
    with it. Every worker checks every share, so all of them stop with the
    same message. Fewer files than pipelines is `reader.shard_files`' error.
    """
    num = input_context.num_input_pipelines if input_context else 1
    files = source.files[split]
    if num <= 1 or len(files) < num:
        return
    with tf.init_scope():
        has_records = {path: _has_records(path, source.compression) for path in files}
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
    ds = tf.data.TFRecordDataset(path, compression_type=filesystems.compression_type(compression))
    return next(iter(ds.take(1)), None) is not None


def load_features_card(features_dir: str) -> features_card.FeaturesCard:
    """Reads `features.json` from an embed-job output folder (UsageError when missing)."""
    filesystems.ensure_filesystem(features_dir)
    path = os.path.join(features_dir, features_card.CARD_NAME)
    if not tf.io.gfile.exists(path):
        raise UsageError(f"no {features_card.CARD_NAME} in {features_dir!r}: --features_dir must "
                         f"be the embed job's --output_dir (a run that did not finish has none)")
    with tf.io.gfile.GFile(path, "r") as f:
        return features_card.FeaturesCard.from_json(f.read())


def resolve_feature_source(data: DataConfig, plays: Source, skip: Sequence[str] = ()) -> Source:
    """The cached features of `data.features_dir`, checked against the play records' card
    (the splits in `skip` left out)."""
    card = load_features_card(data.features_dir)
    if list(card.labels) != list(plays.labels):
        raise UsageError(f"the features' labels {card.labels} differ from the records' "
                         f"{plays.labels}: give the --data_dir the features were computed from "
                         f"({card.records_dir})")
    num_frames = data.num_frames or card.num_frames
    if num_frames > card.num_frames:
        raise UsageError(f"--num_frames={num_frames} but the features hold {card.num_frames} "
                         f"frames per play")
    files, counts = {}, {}
    corrupt_files = {} if data.skip_corrupt_records else None
    for split in dataset_card.SPLITS:
        pattern = os.path.join(data.features_dir, card.shard_glob(split))
        files[split] = (sorted(tf.io.gfile.glob(pattern))
                        if card.counts.get(split) and split not in skip else [])
        counts[split] = int(card.counts.get(split, 0)) if files[split] else 0
        if corrupt_files is not None and files[split]:
            counts[split], bad = corrupt_lib.scan_for_corrupt_records(split, files[split], "none")
            corrupt_files[split] = [scan.path for scan in bad]
    if not counts["train"]:
        raise UsageError(f"no training features in {data.features_dir!r} (features.json counts: "
                         f"{card.counts})")
    return Source(record_kind="features", root=data.features_dir, card=card,
                  num_frames=num_frames, labels=list(card.labels), files=files, counts=counts,
                  image_size=plays.image_size, corrupt_files=corrupt_files)


def _clip_settings(data: DataConfig, card: Optional[dataset_card.DatasetCard]) -> dict:
    """Frame count, size, compression and labels: the flags, else the card."""
    if card is not None and data.num_frames and data.num_frames > card.num_frames:
        raise UsageError(
            f"--num_frames={data.num_frames} but the records hold {card.num_frames} frames "
            f"per play (re-run the records job with more frames, or ask for fewer)")
    settings = dict(num_frames=data.num_frames, height=data.height, width=data.width,
                    compression=data.compression, labels=data.labels)
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


def _split_files(data: DataConfig, data_dir: str,
                 card: Optional[dataset_card.DatasetCard]) -> dict:
    """split -> shard paths: the globs given, else the card's shards of that split."""
    globs = data.split_globs()
    files = {}
    for split in dataset_card.SPLITS:
        if globs[split]:
            files[split] = match_files(globs[split])
        elif data_dir and card is not None and (split == "train" or card.counts.get(split)):
            files[split] = split_files(data_dir, split, card)
        else:
            files[split] = []
    return files


def resolve_play_source(data: DataConfig, data_dir: Optional[str] = None,
                        skip: Sequence[str] = ()) -> Source:
    """The play records of a run's data settings; every shard file is checked once (UsageError).

    `data_dir` overrides `data.data_dir` (the records folder a features card names); the
    splits in `skip` are left out (no files, not read).
    """
    data_dir = data_dir or data.data_dir
    card = load_card(data_dir) if data_dir else None
    files = {split: ([] if split in skip else split_files_)
             for split, split_files_ in _split_files(data, data_dir, card).items()}
    if not files["train"]:
        raise UsageError("no training data: give --data_dir or --train_files")
    if card is None:
        card = _card_beside(files["train"])
    settings = _clip_settings(data, card)
    counts = {}
    corrupt_files = {} if data.skip_corrupt_records else None
    globs = data.split_globs()
    for split, split_files_ in files.items():
        if not split_files_:
            counts[split] = 0
            continue
        if corrupt_files is not None:
            # Every shard read once: the readable records, and the files to read with care.
            counts[split], bad = corrupt_lib.scan_for_corrupt_records(split, split_files_,
                                                                      settings["compression"])
            corrupt_files[split] = [scan.path for scan in bad]
            unreadable = {scan.path for scan in bad if not scan.records}
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
    return Source(record_kind="plays", root=data_dir or "", card=card,
                  num_frames=settings["num_frames"], labels=settings["labels"], files=files,
                  counts=counts, compression=settings["compression"],
                  image_size=(settings["height"], settings["width"]), corrupt_files=corrupt_files)


def _card_beside(files: Sequence[str]) -> Optional[dataset_card.DatasetCard]:
    """The dataset card in the folder of the first file, if there is one."""
    folder = os.path.dirname(files[0])
    if tf.io.gfile.exists(os.path.join(folder, dataset_card.CARD_NAME)):
        return load_card(folder)
    return None
