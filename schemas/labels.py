"""A label vocabulary given on a command line: a comma-separated list, or a file of one label per line.

Both the records job (`--label_vocabulary`) and the trainer (`--labels`) read
theirs with `label_vocabulary`. In a file, blank lines and `#` comments are
ignored and labels keep their order (the index order). A value that names an
existing file is read as one; a value that looks like a path (it holds a `/`
or ends with `.txt`) but names no file is an error, not a one-label vocabulary.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

from schemas.errors import UsageError

# path -> the file's text, or None when there is no such file.
ReadFile = Callable[[str], Optional[str]]


def read_local_file(path: str) -> Optional[str]:
    """The text of a local file, or None when `path` is not a file."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"label file {path} is not UTF-8 text") from None


def looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith(".txt")


def labels_of_text(text: str) -> List[str]:
    """The labels of a label file's text: one per line, without blanks and `#` comments."""
    labels = []
    for line in text.splitlines():
        label = line.split("#", 1)[0].strip()
        if label:
            labels.append(label)
    return labels


def label_vocabulary(value: str, flag: str,
                     read_file: ReadFile = read_local_file) -> Optional[List[str]]:
    """The labels that `value` gives (None when empty); UsageError for a missing file or repeats.

    Args:
      value: a comma-separated list, or the path of a file with one label per line.
      flag: the flag's name, for messages (`--labels`).
      read_file: reads a path (None when it names no file); the callers pass
        one that also reads gs:// paths.
    """
    value = (value or "").strip()
    if not value:
        return None
    text = read_file(value) if ("," not in value or looks_like_path(value)) else None
    if text is not None:
        labels = labels_of_text(text)
        if not labels:
            raise UsageError(f"{flag}={value}: the file holds no labels (one label per line; "
                             f"blank lines and # comments are ignored)")
    elif looks_like_path(value):
        raise UsageError(f"{flag}={value}: no such file (give a file with one label per line, "
                         f"or a comma-separated list)")
    else:
        labels = [label.strip() for label in value.split(",") if label.strip()]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UsageError(f"{flag}={value}: repeated labels: {', '.join(repeated)}")
    return labels or None
