"""File systems beyond local paths and gs://.

TensorFlow reads local paths and gs:// itself (gs:// through
tensorflow-io-gcs-filesystem, which TensorFlow loads on import). s3://, hdfs://,
az:// (and http(s)://, viewfs://, oss://) are registered by tensorflow-io, which
is imported only when such a path is used.
"""

from __future__ import annotations

import importlib
from typing import Iterable, Optional

import tensorflow as tf

from schemas.errors import UsageError

# Schemes TensorFlow reads without extra imports.
BUILTIN_SCHEMES = ("", "file", "gs", "ram")
# Schemes that tensorflow-io's plugin library registers.
TFIO_SCHEMES = ("s3", "hdfs", "viewfs", "az", "http", "https", "oss", "har")


def scheme_of(path: str) -> str:
    """The URL scheme of `path` ("" for a local path)."""
    return path.split("://", 1)[0].lower() if "://" in path else ""


def ensure_filesystem(path: str) -> None:
    """Makes sure tf.io.gfile can read `path`'s file system.

    Imports tensorflow_io for s3://, hdfs://, az:// and the other schemes it
    registers. Raises UsageError for an unknown scheme or when tensorflow-io
    cannot be loaded.
    """
    scheme = scheme_of(path)
    if scheme in BUILTIN_SCHEMES:
        return
    if scheme not in TFIO_SCHEMES:
        raise UsageError(
            f"cannot read {path!r}: unknown file system '{scheme}://' "
            f"(supported: local paths, gs://, {', '.join(s + '://' for s in TFIO_SCHEMES)})")
    try:
        importlib.import_module("tensorflow_io")
    except (ImportError, tf.errors.NotFoundError) as err:  # not installed, or a .so that fails to load
        raise UsageError(
            f"reading {scheme}:// paths ({path!r}) needs tensorflow-io, which failed to load: "
            f"{type(err).__name__}: {err}. Install the pinned version that matches "
            f"TensorFlow (pip install tensorflow-io==0.37.1 for tensorflow 2.16), or copy the "
            f"data to a local path or gs://") from err


def ensure_filesystems(paths: Iterable[Optional[str]]) -> None:
    """`ensure_filesystem` for each non-empty path."""
    for path in paths:
        if path:
            ensure_filesystem(path)


# dataset.json's "compression" -> TFRecordDataset's compression_type.
_COMPRESSION = {"": "", "none": "", "gzip": "GZIP", "zlib": "ZLIB"}


def compression_type(compression: Optional[str]) -> str:
    """Maps a card's compression ("none", "gzip", "zlib") to TFRecordDataset's argument."""
    key = (compression or "").lower()
    if key not in _COMPRESSION:
        raise ValueError(f"unknown compression {compression!r}: use one of 'none', 'gzip', 'zlib'")
    return _COMPRESSION[key]
