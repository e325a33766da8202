"""`features.json`: the card the embed job writes last beside the feature shards.

Its presence marks a complete output. It records which frozen base made the
features (cut layer, frame size, weights and their sha256, the saved base's
sha256), so a trainer that trains a head on the cache can refuse flags that
describe another base (`FeaturesCard.check_base`) and export a classifier with
exactly the base that made the features (`base.keras` beside the card).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Dict, List

from schemas import dataset_card, feature_record, play_record
from schemas.errors import UsageError

CARD_NAME = "features.json"
BASE_FILE = "base.keras"
POOLING = "avg"
VIEWS = ("none", "flip")
# The frozen base's identity: its defaults, and the Keras cache name of the ImageNet VGG16
# notop weights (keras.applications.vgg16).
DEFAULT_CUT_LAYER = "block5_pool"  # the whole convolutional base
DEFAULT_WEIGHTS = "imagenet"
IMAGENET_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def sha256_of_file(path: str) -> str:
    """Hex sha256 of a local or remote (gs://...) file."""
    digest = hashlib.sha256()
    if "://" in path:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        opener = tf.io.gfile.GFile(path, "rb")
    else:
        opener = open(path, "rb")  # pylint: disable=consider-using-with
    with opener as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def imagenet_weights_path() -> str:
    """Where `keras.utils.get_file` keeps the ImageNet VGG16 notop weights."""
    home = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    if not os.access(home, os.W_OK):  # keras.utils.get_file falls back the same way
        home = os.path.join("/tmp", ".keras")
    return os.path.join(home, "models", IMAGENET_WEIGHTS_FILE)


def weights_sha256(weights: str) -> str:
    """sha256 of the weights file `weights` (imagenet | none | PATH) names; "" for none.

    "imagenet" hashes the Keras cache file ("" when it is not there yet). A path
    that does not exist is a UsageError.
    """
    key = (weights or "none").strip()
    if key.lower() == "none":
        return ""
    if key.lower() == "imagenet":
        path = imagenet_weights_path()
        return sha256_of_file(path) if os.path.exists(path) else ""
    if "://" not in key and not os.path.exists(key):
        raise UsageError(f"--weights={key!r}: no such file")
    return sha256_of_file(key)


@dataclasses.dataclass
class FeaturesCard(dataset_card.Card):
    """What an embed-job output folder holds and which base made it."""

    weights: str  # as given: "imagenet", "none" or a path
    weights_sha256: str  # of the weights file used; "" for none
    base_sha256: str  # of BASE_FILE
    cut_layer: str
    height: int
    width: int
    dtype: str  # feature dtype on disk: float16 | float32
    views: List[str]  # view i of every record: "none" (as stored), "flip" (left-right)
    feature_dim: int
    num_frames: int
    labels: List[str]
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)  # split -> plays written
    num_input: int = 0
    num_rejected: int = 0
    rejected_reasons: Dict[str, int] = dataclasses.field(default_factory=dict)
    records_dir: str = ""  # the play records the features were computed from (absolute)
    base_model: str = BASE_FILE
    pooling: str = POOLING
    # The dtype the base computed in (--compute_dtype, resolved): float32 | bfloat16 | float16.
    # Cards written before the flag have none: their bases computed in float32.
    compute_dtype: str = "float32"
    compression: str = "none"
    shard_pattern: str = "{split}-*-of-*.tfrecord"  # glob per split, relative to the card
    seed: int = 0
    schema_version: int = play_record.SCHEMA_VERSION
    feature_schema_version: int = feature_record.FEATURE_SCHEMA_VERSION

    @classmethod
    def check_versions(cls, data: Dict[str, Any]) -> None:
        hint = ": re-run the embed job with this version"
        play_record.check_schema_version(data.get("schema_version"), "features card", hint)
        feature_record.check_feature_schema_version(
            data.get("feature_schema_version"), "features card", hint)

    def check_base(self, cut_layer: str, weights: str, height: int, width: int) -> None:
        """UsageError when a trainer's flags describe another base than the one that made the features.

        A weights path is compared by its sha256 (a copy elsewhere is the same
        base; "imagenet" and a path of the same file too).
        """
        rerun = "re-run the embed job with the new flags, or train with the card's"
        if cut_layer != self.cut_layer:
            raise UsageError(f"--cut_layer={cut_layer} but the cached features ({CARD_NAME}) were "
                             f"computed with --cut_layer={self.cut_layer}: {rerun}")
        if (int(height), int(width)) != (self.height, self.width):
            raise UsageError(f"frame size {height}x{width} but the cached features ({CARD_NAME}) "
                             f"were computed at {self.height}x{self.width}: {rerun}")
        if not self._same_weights(weights):
            raise UsageError(f"--weights={weights} but the cached features ({CARD_NAME}) were "
                             f"computed with --weights={self.weights} (sha256 "
                             f"{self.weights_sha256[:12] or 'none'}): {rerun}")

    def _same_weights(self, weights: str) -> bool:
        given, ours = (weights or "none").strip(), (self.weights or "none").strip()
        if "none" in (given.lower(), ours.lower()):
            return given.lower() == ours.lower()
        digest = weights_sha256(given)
        if digest and self.weights_sha256:
            return digest == self.weights_sha256
        return given.lower() == ours.lower()  # "imagenet" both, the cache file not present here
