"""`preview.png`: a few plays per label, frame by frame, as the records hold them.

    records | "WritePreview" >> WritePreview(output_dir)     -> OUTPUT_DIR/preview.png

So that a user can check cropping, frame sampling and labels at a glance before
training: one row per sampled play (labels in vocabulary order, a few plays
each), one column per shown frame. The columns are the frames the trainer's
eval clip takes (`trainer.data.clips.frame_indices` with `columns` frames: evenly
spaced, centred); the frames are the stored JPEGs, at the stored size, as the
model sees them.

Memory stays flat in the number of plays: `beam.combiners.Sample.FixedSizePerKey`
keeps at most `plays_per_label` serialized records per label (combined before the
shuffle), and only those are decoded and drawn, in one step at the end.
"""

from __future__ import annotations

import io
import logging
from typing import List, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

logger = logging.getLogger(__name__)

PREVIEW_NAME = "preview.png"
PLAYS_PER_LABEL = 3
COLUMNS = 8
CELL_PX = 96  # each frame's square cell
LABEL_PX = 160  # the left margin with the label and play id of each row
HEADER_PX = 32  # the top strip with the frame numbers
CELL_PAD_PX = 3  # white between frames
DPI = 32  # divides CELL_PX and LABEL_PX: the figure is a whole number of inches, exact pixels
FONT_PX = 11


def eval_indices(total: int, num_frames: int) -> List[int]:
    """The eval rule of `trainer.data.clips.frame_indices`, without TensorFlow: which frames to show."""
    stride = max(total // num_frames, 1)
    offset = max(total - ((num_frames - 1) * stride + 1), 0) // 2
    return [min(offset + i * stride, total - 1) for i in range(num_frames)]


def layout_size(rows: int, columns: int = COLUMNS) -> Tuple[int, int]:
    """(width, height) in pixels of a preview of `rows` plays and `columns` frames."""
    return LABEL_PX + columns * CELL_PX, HEADER_PX + max(rows, 1) * CELL_PX


def _cell(jpeg: bytes, image_module) -> np.ndarray:
    """One frame fitted into a cell (aspect kept, white around): uint8 [CELL_PX, CELL_PX, 3]."""
    inner = CELL_PX - 2 * CELL_PAD_PX
    with image_module.open(io.BytesIO(jpeg)) as image:
        frame = image.convert("RGB")
    scale = inner / max(frame.size)
    size = (max(1, round(frame.size[0] * scale)), max(1, round(frame.size[1] * scale)))
    # Small frames are shown as blocks of their pixels (what the model gets), large ones smoothed.
    frame = frame.resize(size, image_module.NEAREST if scale >= 1 else image_module.BILINEAR)
    cell = np.full((CELL_PX, CELL_PX, 3), 255, np.uint8)
    top, left = (CELL_PX - size[1]) // 2, (CELL_PX - size[0]) // 2
    cell[top:top + size[1], left:left + size[0]] = np.asarray(frame)
    return cell


def draw(plays: Sequence[Tuple[str, str, Sequence[bytes]]], columns: int = COLUMNS) -> bytes:
    """PNG bytes of the grid: one row per (label, play id, JPEG frames), `columns` frames each.

    The frames are laid out as one array and drawn as one image (Agg, pixel for
    pixel), with the labels and frame numbers as text around it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top
    width, height = layout_size(len(plays), columns)
    grid = np.full((height - HEADER_PX, width - LABEL_PX, 3), 255, np.uint8)
    for row, (_, _, frames) in enumerate(plays):
        for col, t in enumerate(eval_indices(len(frames), columns) if frames else []):
            grid[row * CELL_PX:(row + 1) * CELL_PX,
                 col * CELL_PX:(col + 1) * CELL_PX] = _cell(frames[t], Image)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes([LABEL_PX / width, 0, 1 - LABEL_PX / width, 1 - HEADER_PX / height])
    axes.imshow(grid, interpolation="nearest", aspect="auto")
    axes.set_axis_off()
    font = FONT_PX * 72 / DPI
    header = 1 - HEADER_PX / 2 / height
    figure.text(4 / width, header, "label / play", fontsize=font, va="center", ha="left")
    total = len(plays[0][2]) if plays else 0
    for col, t in enumerate(eval_indices(total, columns) if total else []):
        figure.text((LABEL_PX + (col + 0.5) * CELL_PX) / width, header, f"frame {t}",
                    fontsize=font, va="center", ha="center")
    for row, (label, play_id, _) in enumerate(plays):
        middle = 1 - (HEADER_PX + (row + 0.5) * CELL_PX) / height
        figure.text(4 / width, middle, f"{label[:24]}\n{play_id[:24]}", fontsize=font,
                    va="center", ha="left")
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


class _DrawPreviewFn(beam.DoFn):
    """All labels' sampled records -> OUTPUT_DIR/preview.png; yields its path."""

    def __init__(self, output_dir: str, columns: int):
        self._path = FileSystems.join(output_dir, PREVIEW_NAME)
        self._columns = columns

    def process(self, sampled: List[Tuple[str, List[bytes]]]):
        from schemas import play_record  # pylint: disable=g-import-not-at-top
        plays = []
        for label, records in sorted(sampled):
            decoded = sorted((play_record.decode_play(r) for r in records),
                             key=lambda p: p.play_id)
            plays.extend((label, p.play_id, list(p.frames)) for p in decoded)
        if not plays:
            return
        png = draw(plays, self._columns)
        with FileSystems.create(self._path, mime_type="image/png",
                                compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(png)
        logger.info("wrote %s: %d plays of %d labels", self._path, len(plays), len(sampled))
        yield self._path


class WritePreview(beam.PTransform):
    """(split, label, serialized play record) -> OUTPUT_DIR/preview.png; yields its path.

    A bounded sample: at most `plays_per_label` records per label travel past
    the sampling combiner, whatever the number of plays.
    """

    def __init__(self, output_dir: str, plays_per_label: int = PLAYS_PER_LABEL,
                 columns: int = COLUMNS):
        super().__init__()
        self._output_dir = output_dir
        self._plays_per_label = plays_per_label
        self._columns = columns

    def expand(self, records):
        return (records
                | "ByLabel" >> beam.Map(lambda rec: (rec[1], rec[2]))
                | "Sample" >> beam.combiners.Sample.FixedSizePerKey(self._plays_per_label)
                | "AllLabels" >> beam.combiners.ToList()
                | "Draw" >> beam.ParDo(_DrawPreviewFn(self._output_dir, self._columns)))

