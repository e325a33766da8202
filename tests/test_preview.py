"""preview.png of the records job (beam_jobs.preview): a real run writes a PNG with one row per
sampled play and one column per shown frame, the shown frames are the trainer's eval frames,
--overwrite deletes it, and the progress counter counts every play. Tiny: 12 demo plays of 8
frames at 32 px."""

import collections
import io

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline
from PIL import Image

from beam_jobs import make_records, outputs, preview


def test_records_job_writes_the_preview(tmp_path):
    out = tmp_path / "records"
    pipeline = test_pipeline.TestPipeline()
    card = make_records.run([f"--output_dir={out}", "--demo_plays=12", "--num_frames=8",
                             "--frame_size=32", "--num_shards=1"], test_pipeline=pipeline)
    per_label = collections.Counter()
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from schemas import play_record  # pylint: disable=g-import-not-at-top
    for path in sorted(out.glob("*.tfrecord")):
        for serialized in tf.data.TFRecordDataset(str(path)):
            per_label[play_record.decode_play(serialized.numpy()).label] += 1
    rows = sum(min(n, preview.PLAYS_PER_LABEL) for n in per_label.values())
    assert sum(per_label.values()) == sum(card.counts.values()) == 12

    with Image.open(io.BytesIO((out / preview.PREVIEW_NAME).read_bytes())) as image:
        assert image.format == "PNG"
        assert image.size == preview.layout_size(rows) == (
            preview.LABEL_PX + preview.COLUMNS * preview.CELL_PX,
            preview.HEADER_PX + rows * preview.CELL_PX)
        pixels = image.convert("L")
        assert pixels.getextrema()[0] < 200  # frames were drawn, not a blank page
    done = sum(c.committed for c in pipeline.result.metrics().query(
        MetricsFilter().with_namespace("playclips").with_name("records_done"))["counters"])
    assert done == 12

    outputs.prepare_output_dir(str(out), overwrite=True)
    assert not (out / preview.PREVIEW_NAME).exists()


def test_shown_frames_are_the_trainers_eval_frames():
    from trainer.data import clips  # pylint: disable=g-import-not-at-top
    for total, num_frames in ((40, 8), (40, 6), (5, 8), (8, 8), (41, 3)):
        assert preview.eval_indices(total, num_frames) == list(
            clips.frame_indices(total, num_frames).numpy()), (total, num_frames)
