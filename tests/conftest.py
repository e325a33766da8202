"""Test-wide settings (quiet TensorFlow, headless plotting, the repo root importable) and fixtures."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small play-record dataset (8 plays per split, 6 frames of 32 px, 2 shards) per module."""
    from demo_data import synthetic_records  # pylint: disable=g-import-not-at-top
    path = tmp_path_factory.mktemp("records")
    synthetic_records.write_dataset(path, num_plays=8, num_frames=6, size=32,
                                    splits=("train", "val", "test"), num_shards=2)
    return str(path)


@pytest.fixture
def cluster():
    """Processes of a test's cluster on 127.0.0.1 (tests/cluster_processes.py), all stopped after it."""
    from tests.cluster_processes import Cluster  # pylint: disable=g-import-not-at-top
    c = Cluster()
    try:
        yield c
    finally:
        c.close()
