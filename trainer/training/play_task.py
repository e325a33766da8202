"""The play classification task: a single-replica view of the training procedure.

As Model Garden's `official/core/base_task.py` Task: it builds the model,
the inputs, the loss and the metrics and compiles, for one replica; the
strategy, the phases, the callbacks, the folders and the results belong to
the runner (`trainer.training.runner`). The inputs are assembled from the stages of
the input side: `sources` (what records), `parsers` (train or eval
functions per record kind) and `reader` (how they are read).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from schemas.errors import UsageError
from trainer.modeling import model as model_lib
from trainer.data import service as data_service
from trainer.data import parsers, reader, sources
from trainer.config import TrainConfig

logger = logging.getLogger(__name__)


class PlayClassificationTask:
    """Model, inputs, loss and metrics of one run (`plays`, and `features` when cached)."""

    def __init__(self, config: TrainConfig, plays: sources.Source,
                 features: Optional[sources.Source] = None):
        self.config = config
        self.plays = plays
        self.features = features
        counts = None
        if config.class_weight != "none" or config.balanced_sampling:
            counts = train_label_counts(plays, config)
        self.class_weights = (class_weights_of(counts) if config.class_weight == "balanced"
                              else None)
        self.reader_config = reader.ReaderConfig(
            global_batch_size=config.batch_size, seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            data_service=(data_service.parse_address(config.data_service)
                          if config.data_service else ""),
            service_job_dir=config.job_dir,
            label_frequencies=(tuple(float(c) for c in counts) if config.balanced_sampling
                               else None),
            class_weights=self.class_weights)
        self.corrupt_counters: Optional[Dict[str, tf.Variable]] = None
        if config.skip_corrupt_records:
            # Host variables outside any strategy scope: the input pipelines add to them.
            with tf.device("/cpu:0"):
                self.corrupt_counters = {split: tf.Variable(0, dtype=tf.int64, trainable=False,
                                                            name=f"corrupt_{split}_records")
                                         for split in ("train", "val")}

    @classmethod
    def from_config(cls, config: TrainConfig) -> "PlayClassificationTask":
        """Finds and checks the run's records (and cached features); checks the model flags."""
        features = None
        if config.features_dir:
            card = sources.load_features_card(config.features_dir)
            plays = sources.resolve_play_source(config, config.data_dir or card.records_dir)
            features = sources.resolve_feature_source(config, plays)
        else:
            plays = sources.resolve_play_source(config)
        if features and config.eval_flip and task_flip_view(features) is None:
            raise UsageError(f"--eval_flip needs the flipped frames' features, but "
                             f"{config.features_dir!r} holds views {features.card.views}: re-run "
                             f"the embed job with --views=flip, or drop --eval_flip")
        task = cls(config, plays, features)
        model_lib.check_cut(task.cut_layer,
                            task.fine_tune_from if config.fine_tune_epochs else None)
        if features:
            features.card.check_base(task.cut_layer, task.weights, *plays.image_size)
        return task

    # ------------------------------------------------------------ settings

    @property
    def first_source(self) -> sources.Source:
        """What the first phase trains on: the cached features if any, else the play records."""
        return self.features or self.plays

    @property
    def _features_card(self):
        return self.features.card if self.features else None

    @property
    def cut_layer(self) -> str:
        """--cut_layer, else the features card's, else the whole convolutional base."""
        card = self._features_card
        return self.config.cut_layer or (card.cut_layer if card else model_lib.DEFAULT_CUT_LAYER)

    @property
    def weights(self) -> str:
        """--weights, else the features card's, else ImageNet."""
        card = self._features_card
        return self.config.weights or (card.weights if card else model_lib.DEFAULT_WEIGHTS)

    @property
    def fine_tune_from(self) -> str:
        return self.config.fine_tune_from or model_lib.default_fine_tune_from(self.cut_layer)

    @property
    def head_flags(self) -> Dict[str, Any]:
        config = self.config
        return dict(head=config.head, rnn=config.rnn, rnn_units=config.rnn_units,
                    bidirectional=config.bidirectional, dropout=config.dropout,
                    feature_norm=config.feature_norm)

    @property
    def eval_views(self) -> parsers.EvalViews:
        """The views of a play scored by the evaluation (with the centred clip) and the export."""
        return parsers.EvalViews(self.config.eval_views, self.config.eval_flip, with_centre=True)

    @property
    def eval_source(self) -> sources.Source:
        """What the final evaluation reads: the cached features when the exported model's base
        is the features' (no fine-tune phase), else the play records."""
        if self.features and not self.config.fine_tune_epochs:
            return self.features
        return self.plays

    def input_files(self) -> List:
        """(path, compression) of every shard this run reads, to name a corrupt one."""
        return [pair for source in (self.plays, self.features) if source is not None
                for pair in source.file_compressions()]

    # ------------------------------------------------------------ model

    def build_model(self, weights: Optional[str] = None,
                    trainable_from: Optional[str] = None) -> keras.Model:
        """The classifier on uint8 clips (weights and trainable_from overridable).

        With cached features and no `weights` override, the base is the embed
        job's saved base, so that the model uses exactly the weights that made
        the features (random-initialized bases included).
        """
        base = None
        if self.features and weights is None:
            base = keras.models.load_model(self.features.base_path, compile=False,
                                           safe_mode=True)
        return model_lib.build_model(
            len(self.plays.labels), image_size=self.plays.image_size, num_frames=None,
            cut_layer=self.cut_layer, weights=self.weights if weights is None else weights,
            trainable_from=self.config.trainable_from if trainable_from is None else trainable_from,
            base=base, **self.head_flags)

    def build_first_model(self) -> keras.Model:
        """The model of the first phase: the head alone on cached features, else the classifier."""
        if not self.features:
            return self.build_model()
        return model_lib.build_head_model(len(self.plays.labels), self.features.card.feature_dim,
                                          **self.head_flags)

    def full_model(self, model: keras.Model) -> keras.Model:
        """The classifier on clips holding `model`'s weights (a trained head: on the saved base)."""
        if not self.features:
            return model
        full = self.build_model()
        model_lib.copy_head_weights(model, full)
        return full

    def build_losses(self) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy()

    def build_metrics(self) -> List[keras.metrics.Metric]:
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def compile_model(self, model: keras.Model, learning_rate: float) -> None:
        """Adam, the task's loss and metrics (XLA on GPUs unless told)."""
        jit = self.config.jit_compile
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=self.build_losses(), metrics=self.build_metrics(),
            steps_per_execution=self.config.steps_per_execution,
            jit_compile=(bool(tf.config.list_logical_devices("GPU")) if jit == "auto"
                         else jit == "true"))

    # ------------------------------------------------------------ inputs

    def parser(self, source: sources.Source) -> parsers.Parser:
        """The parser of `source`'s record kind."""
        if source.record_kind == "features":
            return parsers.FeatureParser(source.num_frames, source.card.feature_dim,
                                         source.card.dtype, flip_view=task_flip_view(source))
        return parsers.ClipParser(source.num_frames, source.image_size)

    def build_inputs(self, source: sources.Source, split: str, *, training: bool,
                     plan: Optional[reader.EpochPlan] = None
                     ) -> Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]:
        """One split's repeated dataset function, for `distribute_datasets_from_function`
        (cut into the fit's epochs by `plan`)."""
        counter = (self.corrupt_counters or {}).get(split)
        return reader.dataset_fn(source, split, self.parser(source), self.reader_config,
                                 training=training, counter=counter, plan=plan)

    def eval_dataset(self, split: str, source: Optional[sources.Source] = None) -> tf.data.Dataset:
        """One pass over a split of `source` (default `eval_source`): (views [B, V, ...], labels),
        the multi-view eval function, B = max(1, batch_size // V) plays (the model sees B x V
        clips at once)."""
        source, views = source or self.eval_source, self.eval_views
        options = reader.ReaderConfig(
            global_batch_size=max(1, self.config.batch_size // views.total),
            seed=self.config.seed)
        parser = self.parser(source)
        return reader.read(source, split, parser, options, training=False,
                           parse=parser.views_fn(views))


def task_flip_view(source: sources.Source) -> Optional[int]:
    """The index of the stored flipped view in a feature source's records (None: none)."""
    views = list(source.card.views)
    return views.index("flip") if "flip" in views else None


def train_label_counts(plays: sources.Source, config: TrainConfig) -> Tuple[int, ...]:
    """Training plays per label (the dataset card's train counts); UsageError without them."""
    card = plays.card
    flag = ("--class_weight=balanced" if config.class_weight != "none"
            else "--balanced_sampling")
    if card is None or "train" not in (card.label_counts or {}):
        raise UsageError(f"{flag} needs the training plays per label of dataset.json "
                         f"(label_counts): give --data_dir, or put the card beside the "
                         f"--train_files")
    counts = tuple(int(card.label_counts["train"].get(label, 0)) for label in plays.labels)
    missing = [label for label, count in zip(plays.labels, counts) if not count]
    if missing and config.class_weight != "none":
        raise UsageError(f"{flag}: label {missing[0]!r} has no training plays (dataset.json "
                         f"label_counts.train), so it has no weight: add plays of it to the "
                         f"train split, drop it from --labels, or use --class_weight=none")
    return counts


def class_weights_of(counts: Tuple[int, ...]) -> Tuple[float, ...]:
    """Inverse label frequencies, normalised to mean 1 (twice the plays: half the weight)."""
    inverse = [1.0 / count for count in counts]
    mean = sum(inverse) / len(inverse)
    return tuple(value / mean for value in inverse)
