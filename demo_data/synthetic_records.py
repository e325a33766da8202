"""Small play-record datasets for tests and benchmarks, written without the Beam job.

`write_dataset` writes sharded TFRecords of `schemas.play_record` plays plus the
`dataset.json` card, exactly as the records job lays them out. Frame content:

  "square": a bright square moving across a textured background; its path
            depends on the label (class k moves along angle 2*pi*k/L), so a
            tiny model can learn the labels.
  "static": every frame of a play is the same play-specific, asymmetric image
            (to check that augmentation treats all frames of a clip alike).
  "index":  frame t is a flat gray of value `t * index_step(T)` (to check which
            frames were chosen: see `frame_indices`).
"""

from __future__ import annotations

import io
import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from schemas import dataset_card, play_record, sampling

MODES = ("square", "static", "index")


def index_step(num_frames: int) -> int:
    """Gray-level step between consecutive frames in "index" mode."""
    return max(1, min(24, 240 // max(num_frames - 1, 1)))


def frame_indices(clip: np.ndarray, num_frames: int) -> np.ndarray:
    """Recovers the stored frame index of each frame of a decoded "index"-mode clip [T,H,W,3]."""
    means = clip.reshape(clip.shape[0], -1).mean(axis=1)
    return np.rint(means / index_step(num_frames)).astype(int)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _background(height: int, width: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 40 + 30 * np.sin(xx / max(width, 1) * 6.0 + rng.uniform(0, 6)) \
        + 20 * np.cos(yy / max(height, 1) * 4.0)
    image = np.stack([base, base * 0.8 + 10, base * 0.6 + 20], axis=-1)
    if noise:
        image = image + rng.normal(0, noise, image.shape)
    return image


def play_frames(label_index: int, num_labels: int, num_frames: int, height: int, width: int,
                mode: str = "square", play_seed: int = 0, noise: float = 0.0) -> List[np.ndarray]:
    """The uint8 [H, W, 3] frames of one synthetic play."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rng = np.random.default_rng(play_seed)
    if mode == "index":
        step = index_step(num_frames)
        return [np.full((height, width, 3), t * step, np.uint8) for t in range(num_frames)]
    if mode == "static":
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
        image = image.copy()
        image[: height // 4, : width // 4] = 255  # a bright corner: flips and shifts show
        return [image] * num_frames
    background = _background(height, width, rng, noise)
    side = max(4, min(height, width) // 4)
    angle = 2 * np.pi * label_index / max(num_labels, 1)
    direction = np.array([np.sin(angle), np.cos(angle)])
    centre = np.array([height / 2, width / 2]) + rng.uniform(-2, 2, 2)
    radius = (min(height, width) - side) / 2 - 1
    frames = []
    for t in range(num_frames):
        progress = -1 + 2 * t / max(num_frames - 1, 1)
        y, x = (centre + progress * radius * direction - side / 2).astype(int)
        y, x = int(np.clip(y, 0, height - side)), int(np.clip(x, 0, width - side))
        image = background.copy()
        image[y:y + side, x:x + side] = (250, 230, 60)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return frames


def shard_name(split: str, index: int, num_shards: int, compression: str = "none") -> str:
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    return f"{split}-{index:05d}-of-{num_shards:05d}{suffix}"


def write_records(path: str, records: Sequence[bytes], compression: str = "none") -> str:
    """Writes serialized records to one TFRecord file."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "gzip" else "")
    with tf.io.TFRecordWriter(path, options) as writer:
        for record in records:
            writer.write(record)
    return path


def write_dataset(tmp_dir: Union[str, os.PathLike], num_plays: int = 8, num_frames: int = 8,
                  size: Union[int, Tuple[int, int]] = 32,
                  labels: Sequence[str] = ("pick_and_roll", "isolation"),
                  splits: Sequence[str] = ("train",), num_shards: int = 2,
                  compression: str = "none", mode: str = "square",
                  stored_size: Optional[Union[int, Tuple[int, int]]] = None,
                  noise: float = 0.0, jpeg_quality: int = 95) -> dataset_card.DatasetCard:
    """Writes `num_plays` plays per split in `num_shards` shards and `dataset.json`.

    Play j of a split has label j % len(labels) and goes to shard j % num_shards
    (so with num_shards == len(labels) each shard holds one label). `size` is
    the card's (height, width); `stored_size` (default `size`) the size of the
    stored JPEGs.
    """
    tmp_dir = os.fspath(tmp_dir)
    os.makedirs(tmp_dir, exist_ok=True)
    height, width = (size, size) if isinstance(size, int) else size
    stored_size = stored_size or (height, width)
    stored_h, stored_w = (stored_size, stored_size) if isinstance(stored_size, int) else stored_size
    counts, label_counts = {}, {}
    for split_number, split in enumerate(splits):
        shards: List[List[bytes]] = [[] for _ in range(num_shards)]
        label_counts[split] = {}
        for j in range(num_plays):
            label_index = j % len(labels)
            frames = play_frames(label_index, len(labels), num_frames, stored_h, stored_w, mode,
                                 play_seed=1000 * split_number + j, noise=noise)
            record = play_record.PlayRecord(
                play_id=f"{split}-{j}", label=labels[label_index], label_index=label_index,
                frames=[encode_jpeg(f, jpeg_quality) for f in frames],
                timestamps_us=[40000 * t for t in range(num_frames)],
                height=stored_h, width=stored_w, game_id=f"game{j // 4}",
                data_path=f"synthetic://{split}/{j}", frame_rate=25.0,
                source_num_frames=num_frames)
            shards[j % num_shards].append(play_record.encode_play(record))
            label_counts[split][labels[label_index]] = label_counts[split].get(labels[label_index], 0) + 1
        for i, records in enumerate(shards):
            write_records(os.path.join(tmp_dir, shard_name(split, i, num_shards, compression)),
                          records, compression)
        counts[split] = num_plays
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    how = sampling.FrameSampling(num_frames=num_frames, height=height, width=width,
                                 frame_rate=25.0, jpeg_quality=jpeg_quality)
    card = dataset_card.DatasetCard(
        sampling=how, labels=list(labels), counts=counts,
        label_counts=label_counts, num_input=num_plays * len(splits), compression=compression,
        shard_pattern="{split}-*-of-*" + suffix, args={"fixture": mode})
    with open(os.path.join(tmp_dir, dataset_card.CARD_NAME), "w") as f:
        f.write(card.to_json())
    return card
