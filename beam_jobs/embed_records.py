"""Embed job CLI: play records -> the frozen base's features per stored frame (a feature cache).

    python beam_jobs/embed_records.py --runner=DirectRunner --records_dir=runs/demo/records \
        --output_dir=runs/demo/features --weights=none --cut_layer=block2_pool [--views=flip]

A frozen base is a constant function of a frame, so its features are computed
once here (Beam RunInference) and the trainer trains only the head on them.

    ReadSplitRecords -> ParsePlays -> RunInference(FrameFeaturesHandler) -> EncodeFeatures
      -> WriteSplitShards     <split>-SSSSS-of-NNNNN.tfrecord  (schemas.feature_record)
      -> WriteRejected        rejected-SSSSS-of-NNNNN.jsonl   (every record not embedded)
      -> WriteCard            features.json, last: its presence marks a complete output

At launch the base is built once (`media.frame_features.build_base`) and saved
as OUTPUT_DIR/base.keras; workers load that file, so every worker (and the
classifier exported later) uses the weights that made the features, random
bases included. Frame size and frame count come from the records' dataset.json.
The job's flags are `EmbedOptions` and `beam_jobs.options.OutputOptions`; the
others are Beam's. An unusable run prints one `error: ...` line and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:  # run as a script: make the repo root importable (here and in workers)
    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)

if __name__ == "__main__":
    # Run the importable module instead of this __main__ copy: workers then unpickle the DoFns
    # and EmbedOptions by reference to beam_jobs.embed_records, and the option class is
    # declared once (two copies would declare every flag twice).
    from beam_jobs import embed_records as _job  # pylint: disable=import-self
    sys.exit(_job.main())

import apache_beam as beam  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from apache_beam import pvalue  # pylint: disable=wrong-import-position
from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=wrong-import-position
from apache_beam.io.filesystems import FileSystems  # pylint: disable=wrong-import-position
from apache_beam.metrics import Metrics  # pylint: disable=wrong-import-position
from apache_beam.ml.inference.base import (  # pylint: disable=wrong-import-position
    ModelHandler, PredictionResult, RunInference)
from apache_beam.options.pipeline_options import (  # pylint: disable=wrong-import-position
    PipelineOptions)

from beam_jobs import options as options_lib  # pylint: disable=wrong-import-position
from beam_jobs.options import OutputOptions  # pylint: disable=wrong-import-position
from beam_jobs.pipeline import (  # pylint: disable=wrong-import-position
    METRICS_NAMESPACE, PLAYS, REJECTED, WriteCard, WriteRejected, WriteSplitShards)
from schemas import dataset_card, feature_record, features_card  # pylint: disable=wrong-import-position
from schemas.errors import UsageError, one_line  # pylint: disable=wrong-import-position
from schemas.features_card import FeaturesCard  # pylint: disable=wrong-import-position

FRAMES_PER_CALL = 128  # frames per base call: bounds the activations' memory at 224 px


class EmbedOptions(PipelineOptions):
    """The embed job's own flags (`--output_dir`, `--num_shards`, `--overwrite`: OutputOptions)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--records_dir", default="",
                            help="a records-job output folder (dataset.json and the play shards)")
        parser.add_argument("--weights", default=features_card.DEFAULT_WEIGHTS,
                            help="imagenet | none (random, seeded by --seed) | PATH of VGG16 notop "
                                 "weights")
        parser.add_argument("--cut_layer", default=features_card.DEFAULT_CUT_LAYER,
                            help="last VGG16 layer of the base, e.g. block4_pool")
        parser.add_argument("--views", choices=("none", "flip"), default="none",
                            help="flip: also store the left-right flipped frames' features as view 1")
        parser.add_argument("--feature_dtype", choices=feature_record.DTYPES, default="float16",
                            help="dtype of the stored features")
        parser.add_argument("--batch_size", type=int, default=4,
                            help="plays per inference batch")
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of the random base with --weights=none")


OPTION_CLASSES = (EmbedOptions, OutputOptions)


@dataclasses.dataclass
class EmbedConfig:
    """Everything the pipeline needs, resolved at launch."""

    records_dir: str
    output_dir: str
    split_patterns: Dict[str, str]  # split -> absolute glob of its play shards (splits with files)
    records_compression: str
    card: FeaturesCard  # the card to write, but for counts
    batch_size: int = 4
    num_shards: int = 0

    @property
    def base_path(self) -> str:
        return FileSystems.join(self.output_dir, self.card.base_model)


def _counter(name: str) -> None:
    Metrics.counter(METRICS_NAMESPACE, name).inc()


def _rejection(split: str, play_id: str, path: str, reason: str, kind: str) -> Dict[str, Any]:
    return {"split": split, "play_id": play_id, "path": path, "reason": reason, "kind": kind}


class _ParsePlayFn(beam.DoFn):
    """(split, record bytes) -> (split, PlayRecord), or a rejection for a record the base cannot take."""

    def __init__(self, num_frames: int, height: int, width: int, labels: Sequence[str]):
        self._num_frames = num_frames
        self._size = (height, width)
        self._labels = list(labels)

    def setup(self):
        # Workers parse without TensorFlow; PIL reads JPEG headers only.
        from google.protobuf.message import DecodeError  # pylint: disable=g-import-not-at-top
        from PIL import Image  # pylint: disable=g-import-not-at-top
        from schemas import play_record  # pylint: disable=g-import-not-at-top
        self._decode_error = DecodeError
        self._image = Image
        self._play_record = play_record

    def process(self, element: Tuple[str, bytes]):
        split, serialized = element
        try:
            record = self._play_record.decode_play(serialized)
        except (self._play_record.SchemaError, self._decode_error) as err:
            yield pvalue.TaggedOutput(REJECTED, _rejection(
                split, "", "", f"not a play record: {one_line(err)}", "not_a_play_record"))
            return
        problem = self._problem(record)
        if problem:
            yield pvalue.TaggedOutput(REJECTED, _rejection(
                split, record.play_id, record.data_path, *problem))
            return
        yield split, record

    def _problem(self, record) -> Optional[Tuple[str, str]]:
        """(reason, kind) when the record does not fit the card, else None."""
        if len(record.frames) != self._num_frames:
            return (f"{len(record.frames)} frames, dataset.json says {self._num_frames}",
                    "wrong_num_frames")
        labels = self._labels
        if not 0 <= record.label_index < len(labels) or labels[record.label_index] != record.label:
            return (f"label {record.label!r} with index {record.label_index} is not in "
                    f"dataset.json's labels", "wrong_label")
        height, width = self._size
        for t, jpeg in enumerate(record.frames):
            try:
                with self._image.open(io.BytesIO(jpeg)) as image:
                    kind, (w, h) = image.format, image.size
            except OSError as err:  # PIL.UnidentifiedImageError and truncated headers
                return f"frame {t} is not an image: {one_line(err)}", "bad_frame"
            if kind != "JPEG" or (h, w) != (height, width):
                return (f"frame {t} is a {h}x{w} {kind}, dataset.json says {height}x{width} JPEG",
                        "bad_frame")
        return None


class ReadSplitRecords(beam.PTransform):
    """(split, serialized play record) of every split's shards."""

    def __init__(self, split_patterns: Dict[str, str], compression: str):
        super().__init__()
        self._patterns = dict(split_patterns)
        self._compression = (CompressionTypes.GZIP if compression == "gzip"
                             else CompressionTypes.UNCOMPRESSED)

    def expand(self, pbegin):
        tagged = []
        for split, pattern in self._patterns.items():
            tagged.append(
                pbegin
                | f"Read_{split}" >> beam.io.ReadFromTFRecord(pattern,
                                                              compression_type=self._compression)
                | f"Tag_{split}" >> beam.Map(lambda record, s=split: (s, record)))
        return tagged | "AllSplits" >> beam.Flatten()


class ParsePlays(beam.PTransform):
    """Play records that fit the card (PLAYS) and rejections (REJECTED)."""

    def __init__(self, card: FeaturesCard):
        super().__init__()
        self._card = card

    def expand(self, records):
        card = self._card
        return records | "Parse" >> beam.ParDo(
            _ParsePlayFn(card.num_frames, card.height, card.width, card.labels)
        ).with_outputs(REJECTED, main=PLAYS)


class FrameBase:
    """VGGPreprocess then the loaded base: uint8 frames [N, H, W, 3] -> features [N, D].

    A class (not a tuple) because RunInference keeps a weak reference to its model.
    """

    def __init__(self, base, preprocess, frames_per_call: int = FRAMES_PER_CALL):
        self.base = base
        self.preprocess = preprocess
        self.frames_per_call = frames_per_call

    def __call__(self, frames) -> np.ndarray:
        """Features of `frames`, in calls of at most frames_per_call frames (bounds the memory)."""
        step = self.frames_per_call
        return np.concatenate([
            np.asarray(self.base(self.preprocess(frames[i:i + step]), training=False))
            for i in range(0, int(frames.shape[0]), step)])


class FrameFeaturesHandler(ModelHandler):
    """RunInference's model: the saved base on every stored frame of a batch of plays.

    Examples are (split, PlayRecord); each prediction is the play's features
    [views, frames, dim] (float32). Frames are decoded with `tf.io.decode_jpeg`,
    as the trainer decodes them, and go through `VGGPreprocess` then the base.
    """

    def __init__(self, base_path: str, views: Sequence[str], batch_size: int,
                 frames_per_call: int = FRAMES_PER_CALL):
        super().__init__()
        self._base_path = base_path
        self._flip = "flip" in views
        self._batch_size = batch_size
        self._frames_per_call = frames_per_call

    def load_model(self) -> FrameBase:
        """Loads base.keras once per worker: every worker holds the weights the launcher saved."""
        import keras  # pylint: disable=g-import-not-at-top
        from media import frame_features  # pylint: disable=g-import-not-at-top
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, features_card.BASE_FILE)
            with FileSystems.open(self._base_path,
                                  compression_type=CompressionTypes.UNCOMPRESSED) as src:
                with open(local, "wb") as dst:
                    dst.write(src.read())
            base = keras.saving.load_model(
                local, compile=False, safe_mode=True,
                custom_objects={"VGGPreprocess": frame_features.VGGPreprocess})
        return FrameBase(base, frame_features.VGGPreprocess(), self._frames_per_call)

    def run_inference(self, batch: Sequence[Tuple[str, Any]], model: FrameBase,
                      inference_args: Optional[Dict[str, Any]] = None) -> Iterable[PredictionResult]:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        del inference_args
        frames = tf.stack([tf.io.decode_jpeg(jpeg, channels=3)
                           for _, record in batch for jpeg in record.frames])
        views = [frames] + ([tf.reverse(frames, axis=[-2])] if self._flip else [])
        features = np.stack([model(view) for view in views])  # [V, N*T, D]
        start = 0
        for element in batch:
            count = len(element[1].frames)
            yield PredictionResult(element, features[:, start:start + count])
            start += count

    def get_num_bytes(self, batch: Sequence[Tuple[str, Any]]) -> int:
        return sum(len(jpeg) for _, record in batch for jpeg in record.frames)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}


class _EncodeFeaturesFn(beam.DoFn):
    """PredictionResult of (split, PlayRecord) -> (split, serialized feature record)."""

    def __init__(self, dtype: str):
        self._dtype = dtype

    def process(self, result: PredictionResult):
        split, play = result.example
        record = feature_record.FeatureRecord(
            play_id=play.play_id, label=play.label, label_index=play.label_index, split=split,
            features=np.asarray(result.inference).astype(self._dtype), data_path=play.data_path)
        _counter("plays_embedded")
        _counter(f"written_{split}")
        yield split, feature_record.encode_features(record)


class EmbedPlays(beam.PTransform):
    """(split, PlayRecord) -> (split, serialized feature record), batched through RunInference."""

    def __init__(self, config: EmbedConfig):
        super().__init__()
        self._config = config

    def expand(self, plays):
        cfg = self._config
        handler = FrameFeaturesHandler(cfg.base_path, cfg.card.views, cfg.batch_size)
        return (plays
                | "Spread" >> beam.Reshuffle()
                | "RunInference" >> RunInference(handler)
                | "Encode" >> beam.ParDo(_EncodeFeaturesFn(cfg.card.dtype)))


class _WriteCardFn(beam.DoFn):
    def __init__(self, config: EmbedConfig):
        self._config = config

    def process(self, unused, counts, files, num_input):
        del unused, files  # `files` only orders this step after every write
        template = self._config.card
        split_counts = dict(template.counts)
        reasons: Dict[str, int] = {}
        for (event, key), n in counts:
            if event == "written":
                split_counts[key] = split_counts.get(key, 0) + n
            else:
                reasons[key] = reasons.get(key, 0) + n
        card = dataclasses.replace(
            template, counts=split_counts, num_input=num_input,
            num_rejected=sum(reasons.values()), rejected_reasons=dict(sorted(reasons.items())))
        path = FileSystems.join(self._config.output_dir, features_card.CARD_NAME)
        with FileSystems.create(path) as f:
            f.write(card.to_json().encode("utf-8"))
        yield path


def build(pipeline: beam.Pipeline, config: EmbedConfig):
    """Adds the embed job to `pipeline`; returns the PCollection holding the card's path."""
    records = pipeline | "ReadSplitRecords" >> ReadSplitRecords(
        config.split_patterns, config.records_compression)
    num_input = records | "CountInput" >> beam.combiners.Count.Globally()
    parsed = records | "ParsePlays" >> ParsePlays(config.card)
    encoded = parsed[PLAYS] | "EmbedPlays" >> EmbedPlays(config)
    shard_files = encoded | "WriteSplitShards" >> WriteSplitShards(
        config.output_dir, list(config.split_patterns), config.num_shards)
    rejected_files = parsed[REJECTED] | "WriteRejected" >> WriteRejected(config.output_dir)
    counts = ((encoded | "WrittenEvents" >> beam.Map(lambda rec: ("written", rec[0])),
               parsed[REJECTED] | "RejectedEvents" >> beam.Map(lambda e: ("rejected", e["kind"])))
              | "AllEvents" >> beam.Flatten()
              | "CountEvents" >> beam.combiners.Count.PerElement())
    files = (shard_files, rejected_files) | "AllFiles" >> beam.Flatten()
    return counts | "WriteFeaturesCard" >> WriteCard(_WriteCardFn(config), files,
                                                     num_input=num_input)


# ----------------------------------------------------------------------------- launch


def build_parser() -> argparse.ArgumentParser:
    """The job's flags as an argparse parser (--help, typo hints, tests)."""
    return options_lib.help_parser(
        "embed_records.py", "Compute the frozen VGG16 base's features of every stored frame of "
        "play records (a feature cache for the trainer). Flags not listed here are Beam's "
        "pipeline options.", OPTION_CLASSES)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def read_records_card(records_dir: str) -> dataset_card.DatasetCard:
    """The records' dataset.json; UsageError when there is none."""
    if not records_dir:
        raise UsageError("--records_dir is required (a records-job output folder)")
    path = FileSystems.join(records_dir, dataset_card.CARD_NAME)
    if not FileSystems.exists(path):
        raise UsageError(f"--records_dir={records_dir}: no {dataset_card.CARD_NAME} there (run "
                         f"the records job first, or point at its --output_dir)")
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return dataset_card.DatasetCard.from_json(f.read().decode("utf-8"))


def split_patterns(records_dir: str, records: dataset_card.DatasetCard) -> Dict[str, str]:
    """split -> absolute shard glob, for the card's splits that have shards."""
    patterns = {}
    for split in records.counts:
        pattern = FileSystems.join(_absolute(records_dir), records.shard_glob(split))
        if FileSystems.match([pattern])[0].metadata_list:
            patterns[split] = pattern
    if not patterns:
        raise UsageError(f"--records_dir={records_dir}: no shards match "
                         f"{records.shard_pattern} for the splits {', '.join(records.counts)}")
    return patterns


def prepare_output_dir(output_dir: str, records_dir: str, splits: Iterable[str],
                       overwrite: bool) -> None:
    """Creates the output folder; refuses a complete output (features.json) unless `overwrite`.

    The card goes first, then this job's stale shards and rejected files, so a
    folder is never left looking complete with a mix of old and new files.
    """
    from beam_jobs import plays  # pylint: disable=g-import-not-at-top
    if not output_dir:
        raise UsageError("--output_dir is required")
    if _absolute(output_dir).rstrip("/") == _absolute(records_dir).rstrip("/"):
        raise UsageError(f"--output_dir={output_dir} is the records dir: feature shards would "
                         f"mix with the play shards; choose another folder")
    card_path = FileSystems.join(output_dir, features_card.CARD_NAME)
    if FileSystems.exists(card_path):
        if not overwrite:
            raise UsageError(f"--output_dir={output_dir} already holds {features_card.CARD_NAME} "
                             f"(a complete embed output): pass --overwrite to replace it")
        FileSystems.delete([card_path])
    plays.check_output_dir(output_dir)
    patterns = [f"{split}-*-of-*.tfrecord" for split in splits] + ["rejected-*-of-*.jsonl"]
    stale = [m.path for pattern in patterns
             for m in FileSystems.match([FileSystems.join(output_dir, pattern)])[0].metadata_list]
    if stale:
        FileSystems.delete(stale)


def save_base(args: argparse.Namespace, records: dataset_card.DatasetCard,
              path: str) -> Tuple[str, int]:
    """Builds the base the flags name, saves it at `path`; returns (its sha256, feature dim)."""
    import hashlib  # pylint: disable=g-import-not-at-top
    import keras  # pylint: disable=g-import-not-at-top
    from media import frame_features  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(args.seed)  # makes a --weights=none base reproducible
    base = frame_features.build_base(args.cut_layer, args.weights, (records.height, records.width))
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, features_card.BASE_FILE)
        base.save(local)
        with open(local, "rb") as f:
            data = f.read()
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest(), int(base.output_shape[-1])


def check_base_flags(args: argparse.Namespace) -> None:
    """UsageError for a cut layer or weights file that cannot work, before the output is touched."""
    from media import frame_features  # pylint: disable=g-import-not-at-top
    frame_features.check_layer(args.cut_layer, "--cut_layer", frame_features.vgg16_layer_names())
    key = args.weights.strip()
    if key.lower() not in ("none", "imagenet") and "://" not in key and not os.path.isfile(key):
        raise UsageError(f"--weights={key!r}: no such file (give 'imagenet', 'none' or a VGG16 "
                         f"notop weights file)")


def config_from_args(args: argparse.Namespace) -> EmbedConfig:
    """Validates the flags (UsageError), checks input and output, and saves the base."""
    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.num_shards < 0:
        raise UsageError(f"--num_shards must be >= 0, got {args.num_shards}")
    records = read_records_card(args.records_dir)
    patterns = split_patterns(args.records_dir, records)
    check_base_flags(args)
    prepare_output_dir(args.output_dir, args.records_dir, records.counts, args.overwrite)
    base_digest, feature_dim = save_base(
        args, records, FileSystems.join(args.output_dir, features_card.BASE_FILE))
    weights_digest = features_card.weights_sha256(args.weights)  # imagenet: now in the Keras cache
    card = FeaturesCard(
        weights=args.weights, weights_sha256=weights_digest, base_sha256=base_digest,
        cut_layer=args.cut_layer, height=records.height, width=records.width,
        dtype=args.feature_dtype, views=["none", "flip"] if args.views == "flip" else ["none"],
        feature_dim=feature_dim, num_frames=records.num_frames, labels=list(records.labels),
        counts={split: 0 for split in records.counts}, records_dir=_absolute(args.records_dir),
        seed=args.seed)
    return EmbedConfig(
        records_dir=args.records_dir, output_dir=args.output_dir, split_patterns=patterns,
        records_compression=records.compression, card=card, batch_size=args.batch_size,
        num_shards=args.num_shards)


def read_card(output_dir: str) -> FeaturesCard:
    path = FileSystems.join(output_dir, features_card.CARD_NAME)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return FeaturesCard.from_json(f.read().decode("utf-8"))


def summary(card: FeaturesCard, output_dir: str) -> str:
    written = ", ".join(f"{split}={n}" for split, n in card.counts.items())
    head = (f"features: {sum(card.counts.values())} plays embedded ({written}), "
            f"{card.num_rejected} rejected of {card.num_input}; [{len(card.views)}, "
            f"{card.num_frames}, {card.feature_dim}] {card.dtype} per play -> {output_dir}")
    return options_lib.summary(head, card, output_dir)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> FeaturesCard:
    """Runs the job; returns the features card it wrote. Raises UsageError for an unusable run."""
    parser = build_parser()
    options = options_lib.parse_job_options(argv, parser)
    config = config_from_args(options_lib.job_args(options, parser, OPTION_CLASSES))
    options_lib.run_pipeline(options, lambda p: build(p, config), save_main_session,
                             test_pipeline)
    card = read_card(config.output_dir)
    print(summary(card, config.output_dir))
    return card


def main(argv: Optional[List[str]] = None) -> int:
    return options_lib.main(run, argv)

