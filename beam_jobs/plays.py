"""What to read: `PlaySpec`s from a manifest (CSV / JSON Lines) or a folder tree.

Manifest columns: `play_id`, `label`, `path` (required), `game_id`, `split`,
`frame_rate`, `start` and `end` (optional). A relative `path` is relative to the
manifest's folder. A row with `start` and `end` (seconds, both or neither) is
the play between those times of the video at `path`; many rows may share a video.
Folder tree: `ROOT/<label>/<play_id>/<frames>` or `ROOT/<label>/<play_id>.<video>`.

Values are typed, never turned into strings: `label`, `path` and `split` are
strings; `play_id` and `game_id` are strings or JSON integers (`12345` is read
as `"12345"`, ids are often numbers; a float, a boolean, a list or an object is
not an id); `frame_rate`, `start` and `end` are JSON numbers or strings that
read as a finite decimal number (CSV cells are all strings). JSON `null` and an
empty cell mean the value is absent. A row with a value of the wrong JSON type
is rejected (kind `bad_type`) with a reason naming each such column and the
type it holds (`label: expected a string, got a list`).

Readers yield a `PlaySpec` per usable row and a rejection dict
(`beam_jobs.outputs.rejection`) per row that cannot be a play, so one bad row
never stops a job. `check_input` runs at launch and raises `UsageError` for an
input that cannot work at all.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import posixpath
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from beam_jobs.outputs import rejection
from media import frames, video_clips
from schemas.errors import UsageError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("play_id", "label", "path")
OPTIONAL_COLUMNS = ("game_id", "split", "frame_rate", "start", "end")
JSONL_EXTENSIONS = (".jsonl", ".json", ".ndjson")


@dataclasses.dataclass(frozen=True)
class PlaySpec:
    """One play to read: where it is and what it is."""

    play_id: str
    label: str
    path: str
    game_id: str = ""
    split: str = ""
    frame_rate: Optional[float] = None
    row: int = 0  # 1-based manifest row (or listing order); the lowest wins among duplicates
    start: Optional[float] = None  # seconds: the play is [start, end) of the video at `path`
    end: Optional[float] = None

    @property
    def has_range(self) -> bool:
        return self.start is not None

    @property
    def group_key(self) -> str:
        """The split grouping key: the game, else the game video a play is cut from, else the play."""
        return self.game_id or (self.path if self.has_range else self.play_id)


Item = Union[PlaySpec, Dict[str, Any]]


def _fs():
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
    return FileSystems


def _has_scheme(path: str) -> bool:
    return "://" in path


def _dirname(path: str) -> str:
    if _has_scheme(path):
        return posixpath.dirname(path)
    return os.path.dirname(os.path.abspath(path))


def resolve_path(path: str, base_dir: str) -> str:
    """`path` as written in a manifest, made absolute against the manifest's folder."""
    if _has_scheme(path) or os.path.isabs(path) or not base_dir:
        return path
    return _fs().join(base_dir, path)


def _is_jsonl(path: str, text: str) -> bool:
    ext = posixpath.splitext(path)[1].lower()
    if ext == ".csv":
        return False
    if ext in JSONL_EXTENSIONS:
        return True
    return text.lstrip().startswith("{")


def _read_text(path: str) -> str:
    fs = _fs()
    try:
        with fs.open(path) as f:
            data = f.read()
    except OSError as err:  # Beam's BeamIOError is one
        raise UsageError(f"cannot read manifest {path}: {err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"manifest {path} is not UTF-8 text") from None


def _parse_rows(path: str, text: str) -> Iterator[Union[Dict[str, Any], str]]:
    """Raw rows (dicts), or an error string for a line that cannot be parsed."""
    if _is_jsonl(path, text):
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield f"invalid JSON ({err.msg})"
                continue
            yield row if isinstance(row, dict) else "a JSON line that is not an object"
    else:
        # newline="": the csv module reads \r, \n and \r\n line ends (and ones inside quotes).
        reader = csv.DictReader(io.StringIO(text, newline=""))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # each error consumes its line: the loop ends
                yield f"unreadable CSV line ({err})"
                continue
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue  # blank line
            yield row


def manifest_columns(path: str, text: str) -> List[str]:
    """Column names of a manifest (CSV header, or every key seen in JSON Lines)."""
    if _is_jsonl(path, text):
        keys: Dict[str, None] = {}
        for row in _parse_rows(path, text):
            if isinstance(row, dict):
                keys.update(dict.fromkeys(row))
        return list(keys)
    try:
        first = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as err:
        raise UsageError(f"manifest {path}: its header line is not CSV ({err})") from None
    return [c.strip() for c in first]


STRING_COLUMNS = ("play_id", "label", "path", "game_id", "split")
ID_COLUMNS = ("play_id", "game_id")  # JSON integers are accepted, as their decimal string
NUMBER_COLUMNS = ("frame_rate", "start", "end")
# A decimal number as people write one: no `1_000`, no `0x10`, no non-ASCII digits.
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)

Value = Union[str, float, None]


def _json_type(value: Any) -> str:
    """`value`'s JSON type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _typed_value(key: str, value: Any) -> Tuple[Value, str]:
    """(the column's value, "") or (None, why its JSON type does not fit the column).

    String columns give a stripped string ("" when absent); number columns give
    a float, a string still to be read as a number, or None when absent.
    """
    if value is None:
        return ("" if key in STRING_COLUMNS else None), ""
    if key in STRING_COLUMNS:
        if isinstance(value, str):
            return value.strip(), ""
        if key in ID_COLUMNS and isinstance(value, int) and not isinstance(value, bool):
            return str(value), ""
        wanted = "a string or an integer" if key in ID_COLUMNS else "a string"
        return None, f"{key}: expected {wanted}, got {_json_type(value)}"
    if isinstance(value, str):
        return (value.strip() or None), ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value) if abs(value) < 1e308 else math.inf), ""  # huge ints: not finite
    return None, f"{key}: expected a number, got {_json_type(value)}"


def _typed_row(row: Dict[str, Any]) -> Tuple[Dict[str, Value], List[str]]:
    """The row's values by column, and one message per value of the wrong JSON type."""
    values: Dict[str, Value] = {}
    problems = []
    for key in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        values[key], problem = _typed_value(key, row.get(key))
        if problem:
            problems.append(problem)
    return values, problems


def _number(value: Value) -> Optional[float]:
    """A number column's value as a finite float, None when absent; ValueError otherwise."""
    if value is None or isinstance(value, float):
        number = value
    elif _NUMBER_RE.fullmatch(value):
        number = float(value)
    else:
        raise ValueError(value)
    if number is not None and not math.isfinite(number):
        raise ValueError(value)
    return number


def spec_from_row(row: Dict[str, Any], base_dir: str, number: int) -> Item:
    """A PlaySpec, or a rejection for a row with a wrong-typed, missing or unusable value."""
    values, problems = _typed_row(row)
    play_id, label, raw_path = (values[k] or "" for k in REQUIRED_COLUMNS)
    path = resolve_path(raw_path, base_dir) if raw_path else ""
    if problems:
        return rejection(play_id, path, f"manifest row {number}: {'; '.join(problems)}",
                         "bad_type", number)
    for key, value in zip(REQUIRED_COLUMNS, (play_id, label, raw_path)):
        if not value:
            return rejection(play_id, path, f"manifest row {number}: missing value for column {key!r}",
                             "missing_value", number)
    try:
        frame_rate = _number(values["frame_rate"])
    except ValueError:
        frame_rate = -1.0
    if frame_rate is not None and not frame_rate > 0:
        return rejection(play_id, path, f"manifest row {number}: frame_rate: expected a positive "
                         f"finite number, got {values['frame_rate']!r}", "bad_value", number)
    time_range = _time_range(values, path)
    if isinstance(time_range, str):
        return rejection(play_id, path, f"manifest row {number}: {time_range}", "bad_range", number)
    return PlaySpec(play_id=play_id, label=label, path=path, game_id=values["game_id"],
                    split=values["split"], frame_rate=frame_rate, row=number,
                    start=time_range[0], end=time_range[1])


def _time_range(values: Dict[str, Value], path: str):
    """(start, end) in seconds, (None, None) without them, or why they cannot be a play."""
    times = []
    for key in ("start", "end"):
        try:
            times.append(_number(values[key]))
        except ValueError:
            return f"{key}: expected a finite number of seconds, got {values[key]!r}"
    if times == [None, None]:
        return None, None
    if None in times:
        return "start and end go together (give both or neither)"
    start, end = times
    problem = video_clips.range_problem(start, end)
    if problem:
        return problem
    if not frames.is_video(path) or path.startswith(frames.DEMO_SCHEME):
        return f"start and end need a video file path ({', '.join(frames.VIDEO_EXTENSIONS)})"
    return start, end


def read_manifest(path: str) -> Iterator[Item]:
    """PlaySpecs and rejections of a CSV or JSON Lines manifest."""
    text = _read_text(path)
    base_dir = _dirname(path)
    logger.info("reading the manifest %s", path)
    for number, row in enumerate(_parse_rows(path, text), 1):
        if isinstance(row, str):
            yield rejection("", "", f"manifest row {number}: {row}", "bad_row", number)
        else:
            yield spec_from_row(row, base_dir, number)


def is_folder_tree(path: str) -> bool:
    """Whether `--input` names a folder tree rather than a manifest file."""
    if path.endswith("/"):
        return True
    if _has_scheme(path):  # object stores have no real folders: go by the name
        return posixpath.splitext(path)[1].lower() not in (".csv",) + JSONL_EXTENSIONS
    return os.path.isdir(path)


def read_folder_tree(root: str) -> Iterator[Item]:
    """PlaySpecs of `ROOT/<label>/<play_id>/<frames>` and `ROOT/<label>/<play_id>.<video>`."""
    fs = _fs()
    root = root.rstrip("/")
    try:
        matched = fs.match([fs.join(root, "**")])[0].metadata_list
    except OSError as err:  # Beam's BeamIOError is one
        raise UsageError(f"cannot list input folder {root}: {err}") from None
    plays: Dict[tuple, str] = {}
    for meta in matched:
        rel = meta.path[len(root):].lstrip("/\\").replace("\\", "/")
        parts = rel.split("/")
        ext = posixpath.splitext(parts[-1])[1].lower()
        if len(parts) == 2 and ext in frames.VIDEO_EXTENSIONS:
            plays[(parts[0], posixpath.splitext(parts[1])[0], parts[1])] = meta.path
        elif len(parts) == 3 and ext in frames.IMAGE_EXTENSIONS:
            plays.setdefault((parts[0], parts[1], parts[1]), fs.join(root, parts[0], parts[1]))
    for number, key in enumerate(sorted(plays), 1):
        label, play_id, _ = key
        yield PlaySpec(play_id=play_id, label=label, path=plays[key], row=number)


def read_plays(input_path: str) -> Iterator[Item]:
    """A manifest or a folder tree, by what `input_path` is."""
    if is_folder_tree(input_path):
        return read_folder_tree(input_path)
    return read_manifest(input_path)


def check_input(input_path: str) -> int:
    """Launch-time check of `--input`; returns the number of input rows/plays.

    Raises UsageError for a missing manifest, a manifest without the required
    columns, or an input with no plays.
    """
    fs = _fs()
    if is_folder_tree(input_path):
        if not _has_scheme(input_path) and not os.path.isdir(input_path):
            raise UsageError(f"input folder {input_path} does not exist")
        count = sum(1 for _ in read_folder_tree(input_path))
        if not count:
            raise UsageError(f"input folder {input_path} holds no plays (expected "
                             f"ROOT/<label>/<play_id>/<frames> or ROOT/<label>/<play_id>.mp4)")
        return count
    try:
        exists = fs.exists(input_path)
    except OSError as err:
        raise UsageError(f"cannot check manifest {input_path}: {err}") from None
    if not exists:
        raise UsageError(f"manifest {input_path} does not exist")
    text = _read_text(input_path)
    columns = manifest_columns(input_path, text)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise UsageError(f"manifest {input_path} has no {', '.join(repr(c) for c in missing)} "
                         f"column (found: {', '.join(columns) or 'none'}; need "
                         f"{', '.join(REQUIRED_COLUMNS)})")
    count = sum(1 for _ in _parse_rows(input_path, text))
    if not count:
        raise UsageError(f"manifest {input_path} has no rows")
    return count
