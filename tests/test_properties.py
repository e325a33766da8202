"""Property-based tests (hypothesis) of the manifest reader and the record parser.

Whatever a manifest file or a serialized record holds, the reader and the parser
give a play (a PlaySpec, a PlayRecord), a dead-letter entry or a clear error
(UsageError, SchemaError), never another exception, and return within seconds.
What comes out means what went in: one play or one dead letter per row, a play's
label and ids are the strings given (never the text of a list or a number), and a
value of the wrong JSON type is a dead letter that names its column.
"""
import contextlib
import csv
import io
import json
import math
import os
import signal

import pytest
from apache_beam import pvalue
from hypothesis import given, settings, strategies as st

from beam_jobs import plays
from beam_jobs.embed_pipeline import _ParsePlayFn
from beam_jobs.outputs import REJECTED
from demo_data.synthetic_records import encode_jpeg
from schemas import example_proto, play_record
from schemas.errors import SchemaError, UsageError

# Modest counts keep the file at a few seconds; no example database in the repo.
PROPERTY = settings(max_examples=80, deadline=None, database=None)


@contextlib.contextmanager
def no_hang(seconds: int = 10):
    """Fails the example (TimeoutError) when the body runs longer than `seconds`."""
    def alarm(signum, frame):
        raise TimeoutError(f"no result after {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------ manifests

COLUMNS = list(plays.REQUIRED_COLUMNS + plays.OPTIONAL_COLUMNS) + ["extra", ""]
TRICKY = ["", " ", "0", "30", "-3", "1e400", "nan", "inf", "-inf", "True", "clip/a", "../x",
          "gs://b/x", '"', ",", "\n", "\r", "\r\n", "\x00", "\ufeff", "#", "{", "a b"]
cells = st.one_of(st.sampled_from(TRICKY), st.text(max_size=8))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(TRICKY),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)


@st.composite
def csv_manifests(draw) -> bytes:
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=7))
    rows = draw(st.lists(st.lists(cells, max_size=len(header) + 2), max_size=6))
    if draw(st.booleans()):  # well-formed CSV, quoting included
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        text = buffer.getvalue()
    else:  # plain joins: stray quotes, ragged rows, odd line ends
        end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        text = end.join(",".join(row) for row in [header] + rows)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def jsonl_manifests(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["row", "value", "garbage"]))
        if kind == "row":
            row = {key: draw(json_values) for key in draw(st.lists(st.sampled_from(COLUMNS)))}
            lines.append(json.dumps(row))
        elif kind == "value":
            lines.append(json.dumps(draw(json_values)))
        else:
            lines.append(draw(st.text(max_size=20)))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


manifests = st.one_of(csv_manifests(), jsonl_manifests(), st.binary(max_size=200))


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("manifests")


def _check_spec(spec: plays.PlaySpec) -> None:
    assert spec.play_id and spec.label and spec.path and spec.row >= 1
    assert spec.frame_rate is None or (spec.frame_rate > 0 and math.isfinite(spec.frame_rate))
    assert (spec.start is None) == (spec.end is None)
    assert spec.start is None or (math.isfinite(spec.start) and math.isfinite(spec.end)
                                  and 0 <= spec.start < spec.end)
    assert all(isinstance(v, str) for v in (spec.play_id, spec.label, spec.path, spec.game_id,
                                            spec.split))


def _check_rejection(entry) -> None:
    assert set(entry) == {"play_id", "path", "reason", "kind", "row", "split"}
    assert entry["reason"] and entry["kind"] and isinstance(entry["row"], int)


def _wrong_type(key, value) -> str:
    """The JSON type name the reader must report for `value` in column `key`, "" when it fits."""
    if value is None or isinstance(value, str):
        return ""
    if key in plays.ID_COLUMNS and isinstance(value, int) and not isinstance(value, bool):
        return ""
    if key in plays.NUMBER_COLUMNS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return ""
    if key not in plays.STRING_COLUMNS + plays.NUMBER_COLUMNS:
        return ""  # other keys are not read
    return {bool: "a boolean", int: "an integer", float: "a number", list: "a list",
            dict: "an object"}[type(value)]


def _given(row, key) -> str:
    value = row.get(key)
    return "" if value is None else (value if isinstance(value, str) else str(value)).strip()


def _check_meaning(row, item) -> None:
    """`item` (what the reader made of the JSON object `row`) means what `row` says."""
    wrong = {key: _wrong_type(key, row.get(key)) for key in plays.STRING_COLUMNS + plays.NUMBER_COLUMNS}
    wrong = {key: name for key, name in wrong.items() if name}
    if wrong:
        assert not isinstance(item, plays.PlaySpec), (row, item)
        assert item["kind"] == "bad_type", (row, item)
        for key, name in wrong.items():
            assert f"{key}: expected a " in item["reason"] and f", got {name}" in item["reason"]
        return
    if isinstance(item, plays.PlaySpec):
        # The label is the string given: a label of the vocabulary exactly as written.
        assert isinstance(row["label"], str) and item.label == row["label"].strip()
        assert item.play_id == _given(row, "play_id") and item.game_id == _given(row, "game_id")
        assert item.split == _given(row, "split")
    else:
        assert item["kind"] != "bad_type", (row, item)


def _json_rows(data: bytes):
    """The JSON objects of a JSON Lines manifest, in row order (None for other lines)."""
    rows = []
    for line in data.decode("utf-8-sig").splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            rows.append(row if isinstance(row, dict) else None)
    return rows


@PROPERTY
@given(data=manifests, extension=st.sampled_from([".csv", ".jsonl", ".json", ".txt", ""]))
def test_any_manifest_gives_plays_dead_letters_or_a_clear_error(manifest_dir, data, extension):
    path = os.path.join(manifest_dir, "manifest" + extension)
    with open(path, "wb") as f:
        f.write(data)
    with no_hang():
        try:
            count = plays.check_input(path)
        except UsageError as err:
            assert str(err)
            count = None
        try:
            items = list(plays.read_plays(path))
        except UsageError:
            assert count is None  # the launch check refuses what the reader cannot read
            return
    for item in items:
        if isinstance(item, plays.PlaySpec):
            _check_spec(item)
        else:
            _check_rejection(item)
    if count is not None:
        assert len(items) == count  # every row: one play or one dead letter
    if extension in (".jsonl", ".json") and items:
        rows = _json_rows(data)
        assert len(rows) == len(items)
        for row, item in zip(rows, items):
            if row is None:
                assert item["kind"] == "bad_row"
            else:
                _check_meaning(row, item)


LABELS = ["shot", "pass", " cut ", "post_up"]
good_values = {
    "play_id": st.text(min_size=1, max_size=5) | st.integers(),
    "label": st.sampled_from(LABELS),
    "path": st.sampled_from(["clips/a", "/abs/b.mp4"]),
    "game_id": st.none() | st.text(max_size=4) | st.integers(),
    "split": st.none() | st.sampled_from(["train", "val", ""]),
    "frame_rate": st.none() | st.floats(0.5, 240) | st.sampled_from(["25", "29.97", " 30 "]),
}
wrong_values = st.one_of(st.booleans(), st.lists(st.sampled_from(LABELS), max_size=2),
                         st.dictionaries(st.sampled_from(LABELS), st.integers(), max_size=2),
                         st.integers(), st.floats(allow_nan=False))


@st.composite
def typed_rows(draw):
    row = {}
    for key, good in good_values.items():
        if draw(st.integers(0, 5)) == 0:
            row[key] = draw(wrong_values)
        elif draw(st.integers(0, 5)) or key in plays.REQUIRED_COLUMNS:
            row[key] = draw(good)
    return row


@PROPERTY
@given(rows=st.lists(typed_rows(), min_size=1, max_size=6))
def test_typed_jsonl_rows_give_their_values_or_a_dead_letter_naming_the_column(manifest_dir, rows):
    path = os.path.join(manifest_dir, "typed.jsonl")
    with open(path, "w") as f:
        f.write("".join(json.dumps(row) + "\n" for row in rows))
    items = list(plays.read_plays(path))
    assert len(items) == len(rows) == plays.check_input(path)  # written + rejected = input
    for row, item in zip(rows, items):
        _check_meaning(row, item)
    vocabulary = {label.strip() for label in LABELS}
    assert {i.label for i in items if isinstance(i, plays.PlaySpec)} <= vocabulary


# ------------------------------------------------------------------ records

JPEG_16 = encode_jpeg(__import__("numpy").full((16, 16, 3), 100))
FRAMES = [JPEG_16, JPEG_16[:40], encode_jpeg(__import__("numpy").zeros((8, 16, 3))), b"",
          b"\x89PNG\r\n\x1a\n", b"not an image"]


@st.composite
def play_records(draw) -> play_record.PlayRecord:
    frames = draw(st.lists(st.sampled_from(FRAMES), max_size=3))
    return play_record.PlayRecord(
        play_id=draw(st.text(max_size=6)), label=draw(st.sampled_from(["a", "b", "c", ""])),
        label_index=draw(st.integers(-2, 3)), frames=frames,
        timestamps_us=draw(st.lists(st.integers(0, 2**40), min_size=len(frames),
                                    max_size=len(frames))),
        height=draw(st.sampled_from([16, 8, 0])), width=16,
        frame_rate=draw(st.none() | st.floats(allow_nan=True)))


@st.composite
def mutated_records(draw) -> bytes:
    data = bytearray(play_record.encode_play(draw(play_records())))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        where = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[where] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[where:]
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


KINDS = ("bytes_list", "int64_list", "float_list")


@st.composite
def odd_records(draw) -> bytes:
    """SequenceExamples with the schema's keys holding values of any kind and count."""
    seq = example_proto.SequenceExample()
    keys = [play_record.SCHEMA_VERSION_KEY, play_record.EXAMPLE_ID, play_record.LABEL_STRING,
            play_record.LABEL_INDEX, play_record.IMAGE_HEIGHT, play_record.IMAGE_FRAME_RATE,
            play_record.PAD_MODE]
    for key in draw(st.lists(st.sampled_from(keys), max_size=5)):
        _fill(draw, seq.context.feature[key])
    if draw(st.booleans()):
        seq.context.feature[play_record.SCHEMA_VERSION_KEY].int64_list.value[:] = [
            play_record.SCHEMA_VERSION]
    for key in draw(st.lists(st.sampled_from([play_record.IMAGE_ENCODED,
                                              play_record.IMAGE_TIMESTAMP]), max_size=2)):
        for _ in range(draw(st.integers(0, 3))):
            _fill(draw, seq.feature_lists.feature_list[key].feature.add())
    return seq.SerializeToString()


def _fill(draw, feature) -> None:
    kind = draw(st.sampled_from(KINDS))
    values = {"bytes_list": st.binary(max_size=6) | st.sampled_from(FRAMES),
              "int64_list": st.integers(-2**63, 2**63 - 1),
              "float_list": st.floats(width=32)}[kind]
    getattr(feature, kind).value.extend(draw(st.lists(values, max_size=2)))


records = st.one_of(mutated_records(), odd_records(), st.binary(max_size=120))


@PROPERTY
@given(data=records)
def test_any_record_decodes_or_is_a_schema_error(data):
    with no_hang():
        try:
            record = play_record.decode_play(data)
        except SchemaError as err:
            assert str(err)
            return
    assert isinstance(record, play_record.PlayRecord)
    assert len(record.frames) == len(record.timestamps_us)


@pytest.fixture(scope="module")
def parse_fn():
    fn = _ParsePlayFn(num_frames=2, height=16, width=16, labels=["a", "b"])
    fn.setup()
    return fn


@PROPERTY
@given(data=records)
def test_embed_job_parser_gives_a_play_or_a_dead_letter(parse_fn, data):
    with no_hang():
        out = list(parse_fn.process(("train", data)))
    assert len(out) == 1
    if isinstance(out[0], pvalue.TaggedOutput):
        assert out[0].tag == REJECTED and out[0].value["reason"] and out[0].value["kind"]
    else:
        split, record = out[0]
        assert split == "train" and len(record.frames) == 2
