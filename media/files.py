"""File access for media readers: local paths directly, other schemes through Beam.

Local paths (and `file://`) use the standard library, so that reading a play
(`trainer.predict`) needs neither Beam nor TensorFlow. gs://, s3://, hdfs://
and the other schemes go through `apache_beam.io.filesystems.FileSystems`,
which the records job's workers have anyway. Errors are OSError (Beam's
`BeamIOError` is one).
"""

from __future__ import annotations

import glob
import os
import posixpath
from typing import BinaryIO, List

_FILE_SCHEME = "file://"


def is_local(path: str) -> bool:
    """Whether `path` is on the local file system (no scheme, or file://)."""
    return "://" not in path or path.startswith(_FILE_SCHEME)


def _local(path: str) -> str:
    return path[len(_FILE_SCHEME):] if path.startswith(_FILE_SCHEME) else path


def _beam():
    try:
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
    except ImportError as err:
        raise OSError(f"reading non-local paths needs apache-beam (pip install apache-beam): "
                      f"{err}") from err
    return FileSystems


def join(base: str, *parts: str) -> str:
    """`base/part/...` with the separator of `base`'s file system."""
    if is_local(base):
        return os.path.join(base, *parts)
    return posixpath.join(base, *parts)


def match(pattern: str) -> List[str]:
    """Paths matching a glob (`*`, `?`, `[...]`); an empty list when none match."""
    if is_local(pattern):
        return [p for p in glob.glob(_local(pattern)) if os.path.isfile(p)]
    return [m.path for m in _beam().match([pattern])[0].metadata_list]


def exists(path: str) -> bool:
    """Whether a file or folder exists (OSError when the file system cannot tell)."""
    if is_local(path):
        return os.path.exists(_local(path))
    return _beam().exists(path)


def open_read(path: str) -> BinaryIO:
    """A binary file object for reading `path`."""
    if is_local(path):
        return open(_local(path), "rb")  # pylint: disable=consider-using-with
    return _beam().open(path)
