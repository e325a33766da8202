"""What the Beam jobs write into --output_dir, and how they prepare and report it.

    WriteSplitShards     (split, label, record bytes) -> <split>-SSSSS-of-NNNNN.tfrecord[.gz]
    WriteRejected        rejections -> rejected-SSSSS-of-NNNNN.jsonl (one JSON object per line)
    WriteCard            the card (dataset.json, features.json, predictions.json), once every file above is written
                         (the find-plays job writes its find_plays.json itself, last too)
    prepare_output_dir   the output folder rule, at launch
    read_card, summary   the card a run wrote, and the job's closing lines

A rejection (`rejection`) has the same fields in every job: `play_id`, `path`,
`reason` (for people), `kind` (a short category, counted in the card), `row`
(1-based manifest row, 0 when there is none) and `split` ("" when not known).
Written + rejected = input, in each job's card.

The output folder rule: a job writes into a new or empty folder; a non-empty
folder needs --overwrite, which deletes what any of the jobs writes there (the cards
first, so that a folder never holds a card beside another run's shards) and
leaves other files alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from typing import Any, Callable, Dict, Iterable, List, Sequence, Tuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from schemas import dataset_card, features_card, predictions_card
from schemas.errors import UsageError

PLAYS = "plays"  # the main output of the jobs' transforms
REJECTED = "rejected"  # their tagged output of rejections
METRICS_NAMESPACE = "playclips"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
CARD_NAMES = (dataset_card.CARD_NAME, features_card.CARD_NAME, predictions_card.CARD_NAME,
              "find_plays.json")
# What a run of any job writes into --output_dir (--overwrite deletes these, the cards first).
OUTPUT_FILE_RE = re.compile(r"^(dataset\.json|features\.json|predictions\.json|eval\.json|"
                            r"find_plays\.json|base\.keras|preview\.png|"
                            r"[\w.-]+-\d{5}-of-\d{5}\.(tfrecord(\.gz)?|jsonl|csv))$")


def count(name: str, n: int = 1) -> None:
    """Adds `n` to the job counter `name` (Beam metrics: every runner shows them)."""
    Metrics.counter(METRICS_NAMESPACE, name).inc(n)


def rejection(play_id: str, path: str, reason: str, kind: str, row: int = 0,
              split: str = "") -> Dict[str, Any]:
    """A dead-letter entry: `reason` is for people, `kind` a short category for counts."""
    return {"play_id": play_id or "", "path": path or "", "reason": reason, "kind": kind,
            "row": row, "split": split or ""}


def rejected(entry: Dict[str, Any]) -> pvalue.TaggedOutput:
    """`entry` on a DoFn's REJECTED output."""
    return pvalue.TaggedOutput(REJECTED, entry)


# ----------------------------------------------------------------------------- sinks


class WriteSplitShards(beam.PTransform):
    """(split, label, record bytes) -> `<split>-SSSSS-of-NNNNN.tfrecord[.gz]`; returns the file names."""

    def __init__(self, output_dir: str, splits: Sequence[str], num_shards: int = 0,
                 compression: str = "none"):
        super().__init__()
        self._output_dir = output_dir
        self._splits = list(splits)
        self._num_shards = num_shards
        self._compression = compression

    def expand(self, records):
        names = self._splits
        parts = records | "BySplit" >> beam.Partition(lambda rec, n: names.index(rec[0]), len(names))
        gzip = self._compression == "gzip"
        written = []
        for name, part in zip(names, parts):
            written.append(
                part
                | f"Bytes_{name}" >> beam.Map(lambda rec: rec[-1])
                | f"Write_{name}" >> beam.io.WriteToTFRecord(
                    FileSystems.join(self._output_dir, name),
                    file_name_suffix=".tfrecord.gz" if gzip else ".tfrecord",
                    num_shards=self._num_shards, shard_name_template=SHARD_TEMPLATE,
                    compression_type=(CompressionTypes.GZIP if gzip
                                      else CompressionTypes.UNCOMPRESSED)))
        return written | "AllShards" >> beam.Flatten()


def _count_rejected(entry: Dict[str, Any]) -> Dict[str, Any]:
    count("plays_rejected")
    count(f"rejected_{entry['kind']}")
    return entry


class WriteRejected(beam.PTransform):
    """Rejections -> `rejected-SSSSS-of-NNNNN.jsonl` (one JSON object per line)."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._output_dir = output_dir

    def expand(self, entries):
        return (entries
                | "Count" >> beam.Map(_count_rejected)
                | "ToJson" >> beam.Map(lambda entry: json.dumps(entry, sort_keys=True))
                | "Write" >> beam.io.WriteToText(
                    FileSystems.join(self._output_dir, "rejected"), file_name_suffix=".jsonl",
                    num_shards=1, shard_name_template=SHARD_TEMPLATE))


@dataclasses.dataclass
class JobCounts:
    """What a run wrote and rejected, for its card."""

    written: Dict[str, int]  # split -> records written
    by_label: Dict[str, Dict[str, int]]  # split -> label -> records written
    rejected: Dict[str, int]  # kind -> rejections, sorted by kind
    num_input: int

    @property
    def num_rejected(self) -> int:
        return sum(self.rejected.values())

    @classmethod
    def from_events(cls, events: Iterable[Tuple[Tuple[str, str, str], int]],
                    num_input: int) -> "JobCounts":
        written: Dict[str, int] = {}
        by_label: Dict[str, Dict[str, int]] = {}
        reasons: Dict[str, int] = {}
        for (event, a, b), n in events:
            if event == "written":
                written[a] = written.get(a, 0) + n
                labels = by_label.setdefault(a, {})
                labels[b] = labels.get(b, 0) + n
            else:
                reasons[a] = reasons.get(a, 0) + n
        return cls(written, by_label, dict(sorted(reasons.items())), num_input)


def _written_event(rec: Tuple[str, str, bytes]) -> Tuple[str, str, str]:
    return ("written", rec[0], rec[1])


def _rejected_event(entry: Dict[str, Any]) -> Tuple[str, str, str]:
    return ("rejected", entry["kind"], "")


class _WriteCardFn(beam.DoFn):
    """Writes `make_card(counts, **singletons)` as OUTPUT_DIR/card_name; yields its path."""

    def __init__(self, output_dir: str, card_name: str, make_card: Callable[..., Any]):
        self._path = FileSystems.join(output_dir, card_name)
        self._make_card = make_card

    def process(self, unused, events, files, num_input, **singletons):
        del unused, files  # `files` only orders this step after every write
        card = self._make_card(JobCounts.from_events(events, num_input), **singletons)
        with FileSystems.create(self._path) as f:
            f.write(card.to_json().encode("utf-8"))
        yield self._path


class WriteCard(beam.PTransform):
    """(written records, rejections) -> the card, written once after every file of `files`.

    `make_card(counts: JobCounts, **singletons)` returns the card (a
    `schemas.dataset_card.Card`); `singletons` are one-element PCollections it
    gets as side inputs (`num_input` always). The card is the last file a run
    writes: its presence marks a complete output.
    """

    def __init__(self, output_dir: str, card_name: str, make_card: Callable[..., Any], files,
                 num_input, **singletons):
        super().__init__()
        self._write_fn = _WriteCardFn(output_dir, card_name, make_card)
        self._files = files
        self._singletons = dict(singletons, num_input=num_input)

    def expand(self, streams):
        written, rejections = streams
        events = ((written | "WrittenEvents" >> beam.Map(_written_event),
                   rejections | "RejectedEvents" >> beam.Map(_rejected_event))
                  | "AllEvents" >> beam.Flatten()
                  | "CountEvents" >> beam.combiners.Count.PerElement())
        singletons = {name: pvalue.AsSingleton(pcoll) for name, pcoll in self._singletons.items()}
        return (written.pipeline
                | "Once" >> beam.Create([None])
                | "Write" >> beam.ParDo(self._write_fn, events=pvalue.AsList(events),
                                        files=pvalue.AsList(self._files), **singletons))


# ----------------------------------------------------------------------------- launch


def listing(output_dir: str) -> List[str]:
    """The paths in `output_dir` (none when it does not exist)."""
    if "://" not in output_dir:
        if not os.path.isdir(output_dir):
            return []
        return sorted(os.path.join(output_dir, name) for name in os.listdir(output_dir))
    try:
        matched = FileSystems.match([FileSystems.join(output_dir, "*")])[0].metadata_list
    except OSError:
        return []
    return sorted(m.path for m in matched)


def check_output_dir(output_dir: str) -> None:
    """Creates `output_dir` and writes (then deletes) a probe file; UsageError if it cannot."""
    if not output_dir:
        raise UsageError("--output_dir is empty")
    probe = FileSystems.join(output_dir, f".playclips-write-check-{uuid.uuid4().hex}")
    try:
        if "://" not in output_dir:
            os.makedirs(output_dir, exist_ok=True)
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except OSError as err:
        raise UsageError(f"output dir {output_dir} is not writable: {err}") from None


def prepare_output_dir(output_dir: str, overwrite: bool) -> None:
    """The one output folder rule (module docstring); UsageError when it refuses the folder."""
    existing = listing(output_dir)
    names = [os.path.basename(p.rstrip("/")) for p in existing]
    if existing and not overwrite:
        card = next((name for name in CARD_NAMES if name in names), "")
        holds = f"; it already holds {card}, a complete earlier run" if card else ""
        raise UsageError(f"--output_dir={output_dir} is not empty ({len(existing)} entries, e.g. "
                         f"{names[0]}{holds}): pass --overwrite to replace an earlier run's "
                         f"output, or choose an empty folder")
    ours = [p for p, name in zip(existing, names) if OUTPUT_FILE_RE.match(name)]
    ours.sort(key=lambda p: os.path.basename(p) not in CARD_NAMES)  # the cards first
    for path in ours:
        FileSystems.delete([path])
    check_output_dir(output_dir)


def read_card(output_dir: str, card_type: type, card_name: str):
    """The `card_type` card at OUTPUT_DIR/card_name."""
    path = FileSystems.join(output_dir, card_name)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return card_type.from_json(f.read().decode("utf-8"))


def summary(head: str, card, output_dir: str) -> str:
    """A job's closing lines: `head`, then the rejection counts by kind, if any."""
    lines = [head]
    if card.rejected_reasons:
        reasons = ", ".join(f"{k}={v}" for k, v in card.rejected_reasons.items())
        lines.append(f"rejected: {reasons} (see {output_dir}/rejected-*.jsonl)")
    return "\n".join(lines)
