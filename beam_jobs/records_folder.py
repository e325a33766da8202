"""A records-job output folder as another job's input (the embed and prediction jobs).

Its card (`dataset.json`), the shard glob of each split that has shards, and
the rule that a job reading it does not write into it.
"""

from __future__ import annotations

import os
from typing import Dict

from apache_beam.io.filesystems import FileSystems

from beam_jobs import outputs
from schemas import dataset_card
from schemas.errors import UsageError


def absolute(path: str) -> str:
    """A local path made absolute (a URL as it is)."""
    return path if "://" in path else os.path.abspath(path)


def read_records_card(records_dir: str) -> dataset_card.DatasetCard:
    """The records' dataset.json; UsageError when there is none."""
    if not records_dir:
        raise UsageError("--records_dir is required (a records-job output folder)")
    path = FileSystems.join(records_dir, dataset_card.CARD_NAME)
    if not FileSystems.exists(path):
        raise UsageError(f"--records_dir={records_dir}: no {dataset_card.CARD_NAME} there (run "
                         f"the records job first, or point at its --output_dir)")
    return outputs.read_card(records_dir, dataset_card.DatasetCard, dataset_card.CARD_NAME)


def split_patterns(records_dir: str, records: dataset_card.DatasetCard) -> Dict[str, str]:
    """split -> absolute shard glob, for the card's splits that have shards."""
    patterns = {}
    for split in records.counts:
        pattern = FileSystems.join(absolute(records_dir), records.shard_glob(split))
        if FileSystems.match([pattern])[0].metadata_list:
            patterns[split] = pattern
    if not patterns:
        raise UsageError(f"--records_dir={records_dir}: no shards match "
                         f"{records.shard_pattern} for the splits {', '.join(records.counts)}")
    return patterns


def check_output_dir_is_not_records_dir(output_dir: str, records_dir: str) -> None:
    """UsageError when a job reading `records_dir` would write into it."""
    if not output_dir:
        raise UsageError("--output_dir is required")
    if absolute(output_dir).rstrip("/") == absolute(records_dir).rstrip("/"):
        raise UsageError(f"--output_dir={output_dir} is the records dir: this job's files would "
                         f"mix with the play shards; choose another folder")
