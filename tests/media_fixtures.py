"""Small test media: frame folders and video files (PyAV), plus manifests.

Frame t of a clip is a flat gray of value `gray_level(t)` with a colored corner
mark, so tests can tell which source frames were sampled.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

GRAY_STEP = 4


def gray_level(t: int) -> int:
    return (16 + GRAY_STEP * t) % 256


def frame_array(t: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 [H, W, 3]: a flat gray whose level encodes t."""
    frame = np.full((height, width, 3), gray_level(t), np.uint8)
    return frame


def source_index(jpeg_or_array, num_source: int) -> int:
    """The source frame index a decoded frame most likely came from."""
    import io  # pylint: disable=g-import-not-at-top
    if isinstance(jpeg_or_array, bytes):
        jpeg_or_array = np.asarray(Image.open(io.BytesIO(jpeg_or_array)).convert("RGB"))
    arr = np.asarray(jpeg_or_array, np.float64)
    h, w = arr.shape[:2]
    level = arr[h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean()
    return int(np.argmin([abs(gray_level(t) - level) for t in range(num_source)]))


def write_frame_folder(folder: str, num_frames: int, *, height: int = 48, width: int = 64,
                       ext: str = "png", prefix: str = "frame_", quality: int = 95) -> List[str]:
    """Writes `prefix{t}.{ext}` for t in range(num_frames) (unpadded numbers)."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for t in range(num_frames):
        path = os.path.join(folder, f"{prefix}{t}.{ext}")
        image = Image.fromarray(frame_array(t, height, width))
        if ext.lower() in ("jpg", "jpeg"):
            image.save(path, quality=quality)
        else:
            image.save(path)
        paths.append(path)
    return paths


def write_video(path: str, num_frames: int, *, height: int = 48, width: int = 64,
                codec: Optional[str] = None, fps: int = 25) -> str:
    """Writes a small video with PyAV; the codec follows the extension by default."""
    import av  # pylint: disable=g-import-not-at-top
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    codec = codec or {".mp4": "mpeg4", ".mov": "mpeg4", ".avi": "mpeg4", ".mkv": "libx264",
                      ".webm": "libvpx"}[ext]
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec in ("mpeg4", "libx264"):
            stream.options = {"qscale": "2"} if codec == "mpeg4" else {"crf": "10"}
        for t in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_array(t, height, width), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_h264(path: str, num_frames: int, *, height: int = 48, width: int = 64, fps: int = 25,
               gop: int = 25) -> str:
    """An h264 video with B-frames (pts out of decode order) and a keyframe every `gop` frames."""
    from demo_data import games as demo_games  # pylint: disable=g-import-not-at-top
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return demo_games.write_h264(path, (frame_array(t, height, width) for t in range(num_frames)),
                                 fps=fps, gop=gop, crf=10, preset="veryfast")


def write_corrupt_file(path: str, data: bytes = b"this is not media\x00\x01") -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_manifest(path: str, rows: Sequence[Dict], columns: Optional[Sequence[str]] = None) -> str:
    """CSV (by extension .csv) or JSON Lines manifest."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if path.endswith(".csv"):
        columns = list(columns or sorted({k for row in rows for k in row}))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in columns})
    else:
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return path
