"""How a play's frames are sampled: `FrameSampling`, and the one default of each setting.

The records job writes its `FrameSampling` into `dataset.json`; the trainer
copies it into the export card (`schemas.export_card`) at the model's frame
size; the prediction job, `trainer.predict` and the timeline read it back
from there, so a play is sampled for a model as its records were. The media
readers (`media.frames`, `media.video_clips`, `media.frame_stream`,
`media.sample_plays`) take this value rather than loose keyword arguments.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

DEFAULT_NUM_FRAMES = 40  # frames per play record
DEFAULT_FRAME_SIZE = 224  # output frame height and width (VGG16's input size)
DEFAULT_JPEG_QUALITY = 90  # quality of re-encoded frames
DEFAULT_FRAME_RATE = 30.0  # frames per second of frame folders with no frame_rate column
RESIZE_MODES = ("crop", "pad")  # crop: fill and center-crop; pad: fit and letterbox
DEFAULT_RESIZE_MODE = "crop"
PAD_SHORT_MODES = ("", "loop", "last")  # plays with too few frames: reject, loop, repeat last

FrameSize = Union[int, Sequence[int]]


@dataclasses.dataclass(frozen=True)
class FrameSampling:
    """How many frames a play gives, at what size and JPEG quality, and how short plays are padded.

    `frame_rate` is the frames per second of frame folders that do not say
    their own (a manifest's frame_rate column wins; videos have timestamps).
    None means unknown: frame folders are then timed at DEFAULT_FRAME_RATE,
    and the timeline asks for --window_seconds.
    """

    num_frames: int = DEFAULT_NUM_FRAMES
    height: int = DEFAULT_FRAME_SIZE
    width: int = DEFAULT_FRAME_SIZE
    resize_mode: str = DEFAULT_RESIZE_MODE
    pad_short: str = ""
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    frame_rate: Optional[float] = None

    def __post_init__(self):
        if int(self.num_frames) < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if int(self.height) < 1 or int(self.width) < 1:
            raise ValueError(f"frame size must be positive, got {self.height}x{self.width}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.pad_short not in PAD_SHORT_MODES:
            raise ValueError(f"pad_short must be one of {PAD_SHORT_MODES}, got {self.pad_short!r}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.frame_rate is not None and not float(self.frame_rate) > 0:
            raise ValueError(f"frame_rate must be > 0, got {self.frame_rate}")
        object.__setattr__(self, "num_frames", int(self.num_frames))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "jpeg_quality", int(self.jpeg_quality))
        object.__setattr__(self, "frame_rate",
                           float(self.frame_rate) if self.frame_rate else None)

    @classmethod
    def of(cls, num_frames: int, frame_size: FrameSize, **settings: Any) -> "FrameSampling":
        """`num_frames` frames of `frame_size` (224, or (height, width)), other settings by name."""
        height, width = ((frame_size, frame_size) if isinstance(frame_size, int)
                         else (int(v) for v in frame_size))
        return cls(num_frames=num_frames, height=height, width=width, **settings)

    @property
    def size(self) -> Tuple[int, int]:
        """(height, width) of the sampled frames."""
        return self.height, self.width

    @property
    def folder_frame_rate(self) -> float:
        """Frames per second that time a frame folder's frames (frame_rate, else the default)."""
        return self.frame_rate or DEFAULT_FRAME_RATE

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrameSampling":
        """The value of a card's `sampling` object (unknown keys ignored, missing ones default)."""
        known = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in data.items() if k in known and v is not None}
        given["resize_mode"] = given.get("resize_mode") or DEFAULT_RESIZE_MODE
        return cls(**given)
