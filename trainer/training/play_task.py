"""The play classification task: what is trained, in which phases, on which inputs.

As Model Garden's `official/core/base_task.py` Task, it knows the problem and
the generic loop (`trainer.training.fit_loop`) does not: it finds the records
(`sources`), says what the phases are (the head, on cached frozen-base
features or on clips, then the optional fine-tune on clips), builds and
compiles each phase's model (a trained head becomes the classifier on
clips), gives each phase's inputs (`parsers` per record kind, `reader`), and
says which models are evaluated and exported (`trainer.training.finalize`).
Everything here is per replica; the strategy is the loop's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from schemas.errors import UsageError
from trainer.config import TrainConfig
from trainer.data import corrupt, parsers, reader, sources
from trainer.data import service as data_service
from trainer.data.config import ReaderConfig
from trainer.modeling import model as model_lib
from trainer.training import losses

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stage of the run: epochs [initial_epoch, epochs) of a model on `source`."""

    number: int  # names the backup folder (backup/phase{number})
    name: str  # in the per-epoch lines
    source: sources.Source  # what the phase reads: plays, or cached features
    initial_epoch: int
    epochs: int
    learning_rate: float
    trainable_from: str  # the first trainable layer of the base

    @property
    def on_features(self) -> bool:
        """The phase trains the head alone, on cached frozen-base features."""
        return self.source.record_kind == "features"


class PlayClassificationTask:
    """Phases, models, inputs, loss and metrics of one run (`plays`, and `features` when cached)."""

    def __init__(self, config: TrainConfig, plays: sources.Source,
                 features: Optional[sources.Source] = None):
        self.config = config
        self.plays = plays
        self.features = features
        training, runtime = config.training, config.runtime
        counts = None
        if training.class_weight != "none" or training.balanced_sampling:
            counts = train_label_counts(plays, training.class_weight != "none",
                                        training.class_weight)
        self.train_counts = counts
        self.class_weights = (class_weights_of(counts) if training.class_weight == "balanced"
                              else None)
        self.reader_config = ReaderConfig(
            global_batch_size=training.batch_size, seed=training.seed,
            shuffle_buffer=config.data.shuffle_buffer,
            data_service=(data_service.parse_address(runtime.data_service)
                          if runtime.data_service else ""),
            service_job_dir=runtime.job_dir,
            label_frequencies=(tuple(float(c) for c in counts) if training.balanced_sampling
                               else None),
            class_weights=self.class_weights)
        # Corrupt records skipped per split, counted by the input pipelines (the sources say
        # whether the run skips them).
        self.corrupt_counters: Optional[Dict[str, tf.Variable]] = None
        if plays.corrupt_files is not None:
            self.corrupt_counters = corrupt.skip_counters(("train", "val"))

    @classmethod
    def from_config(cls, config: TrainConfig) -> "PlayClassificationTask":
        """Finds and checks the run's records (and cached features); checks the model flags.

        A run that does not evaluate on test (--eval_split=val|none: a tuning trial) leaves
        the test split out: its files are neither checked nor read."""
        data = config.data
        skip = () if config.evaluation.eval_split == "test" else ("test",)
        features = None
        if data.features_dir:
            card = sources.load_features_card(data.features_dir)
            plays = sources.resolve_play_source(data, data.data_dir or card.records_dir, skip)
            features = sources.resolve_feature_source(data, plays, skip)
        else:
            plays = sources.resolve_play_source(data, skip=skip)
        if features and config.evaluation.eval_flip and task_flip_view(features) is None:
            raise UsageError(f"--eval_flip needs the flipped frames' features, but "
                             f"{data.features_dir!r} holds views {features.card.views}: re-run "
                             f"the embed job with --views=flip, or drop --eval_flip")
        task = cls(config, plays, features)
        model_lib.check_cut(task.cut_layer,
                            task.fine_tune_from if config.training.fine_tune_epochs else None)
        if features:
            features.card.check_base(task.cut_layer, task.weights, *plays.image_size)
        return task

    # ------------------------------------------------------------ settings

    @property
    def cut_layer(self) -> str:
        """--cut_layer, else the features card's, else the whole convolutional base."""
        card = self.features.card if self.features else None
        return self.config.model.cut_layer or (card.cut_layer if card
                                               else model_lib.DEFAULT_CUT_LAYER)

    @property
    def weights(self) -> str:
        """--weights, else the features card's, else ImageNet."""
        card = self.features.card if self.features else None
        return self.config.model.weights or (card.weights if card else model_lib.DEFAULT_WEIGHTS)

    @property
    def fine_tune_from(self) -> str:
        return (self.config.training.fine_tune_from
                or model_lib.default_fine_tune_from(self.cut_layer))

    @property
    def max_frames(self) -> int:
        """The most frames a clip of this run has: the transformer head's learned positions (the
        head on cached features and the classifier on clips get the same table)."""
        return max(source.num_frames for source in (self.plays, self.features)
                   if source is not None)

    @property
    def eval_views(self) -> parsers.EvalViews:
        """The views of a play scored by the evaluation (with the centred clip) and the export."""
        evaluation = self.config.evaluation
        return parsers.EvalViews(evaluation.eval_views, evaluation.eval_flip, with_centre=True)

    @property
    def eval_source(self) -> sources.Source:
        """What the final evaluation reads: the cached features when the exported model's base
        is the features' (no fine-tune phase), else the play records."""
        if self.features and not self.config.training.fine_tune_epochs:
            return self.features
        return self.plays

    def resolved(self) -> Dict[str, Any]:
        """What the flags resolved to (config.json's "resolved", with the loop's strategy)."""
        plays, config = self.plays, self.config
        return {"num_frames": plays.num_frames, "image_size": list(plays.image_size),
                "compression": plays.compression, "labels": list(plays.labels),
                "train_files": plays.files["train"], "eval_files": plays.files["val"],
                "test_files": plays.files["test"], "num_train": plays.counts["train"],
                "num_eval": plays.counts["val"], "num_test": plays.counts["test"],
                "cut_layer": self.cut_layer, "weights": self.weights,
                "features_dir": config.data.features_dir, "head": config.model.head,
                "class_weights": (dict(zip(plays.labels, self.class_weights))
                                  if self.class_weights else None),
                "balanced_sampling": config.training.balanced_sampling,
                "logit_adjustment": self.logit_adjustment(),
                "eval_views": config.evaluation.eval_views,
                "eval_flip": config.evaluation.eval_flip,
                "export_weights": config.evaluation.export_weights}

    def describe(self) -> str:
        """The run's records, for the start-up line."""
        counts = (self.features or self.plays).counts
        return (f"{counts['train']} train / {counts['val']} val / {counts['test']} test plays"
                f"{' (cached features)' if self.features else ''}; {len(self.plays.labels)} labels")

    # ------------------------------------------------------------ phases

    def phases(self) -> List[Phase]:
        """The head (on cached features, else on clips), then the optional fine-tune on clips."""
        training = self.config.training
        head = Phase(1, "head", self.features or self.plays, 0, training.epochs,
                     training.learning_rate, self.config.model.trainable_from)
        if not training.fine_tune_epochs:
            return [head]
        return [head, Phase(2, "fine_tune", self.plays, training.epochs, training.total_epochs,
                            training.fine_tune_learning_rate, self.fine_tune_from)]

    def build_phase_model(self, phase: Phase, previous: Optional[keras.Model]) -> keras.Model:
        """`phase`'s compiled model: new for the first phase, else the classifier holding
        `previous`'s weights with the base trainable from `phase.trainable_from`."""
        if previous is None:
            model = self.build_head_model() if phase.on_features else self.build_model()
        else:
            model = self.classifier(previous)
            model_lib.set_trainable_from(model_lib.base_of(model), phase.trainable_from)
        self.compile_model(model, phase.learning_rate)
        return model

    def plain_model(self, phase: Phase) -> keras.Model:
        """An uncompiled model of `phase`'s shape, to hold its weights outside the strategy."""
        if phase.on_features:
            return self.build_head_model()
        return self.build_model(weights="none", trainable_from=phase.trainable_from)

    def final_models(self, model: keras.Model, phase: Phase) -> Tuple[keras.Model, keras.Model]:
        """(the model evaluated, the classifier exported) from `model`, trained by `phase`.

        The evaluation runs on `eval_source`: a head trained on cached features
        is evaluated on them, and exported as the classifier on clips.
        """
        full = self.classifier(model) if phase.on_features else model
        evaluated = model if self.eval_source is self.features else full
        return evaluated, full

    # ------------------------------------------------------------ models

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
        model = self.config.model
        return model_lib.build_model(
            len(self.plays.labels), image_size=self.plays.image_size, num_frames=None,
            cut_layer=self.cut_layer, weights=self.weights if weights is None else weights,
            trainable_from=model.trainable_from if trainable_from is None else trainable_from,
            base=base, max_frames=self.max_frames, **model.head_options())

    def build_head_model(self) -> keras.Model:
        """The head alone, on the cached features."""
        return model_lib.build_head_model(len(self.plays.labels), self.features.card.feature_dim,
                                          max_frames=self.max_frames,
                                          **self.config.model.head_options())

    def classifier(self, head: keras.Model) -> keras.Model:
        """The classifier on clips (on the features' saved base) holding a trained head's weights."""
        full = self.build_model()
        model_lib.copy_head_weights(head, full)
        return full

    def logit_adjustment(self) -> Optional[Dict[str, Any]]:
        """--class_weight=logit_adjusted: tau and the training priors per label (else None)."""
        training = self.config.training
        if training.class_weight != "logit_adjusted":
            return None
        total = sum(self.train_counts)
        return {"tau": training.logit_adjustment_tau,
                "priors": {label: count / total
                           for label, count in zip(self.plays.labels, self.train_counts)}}

    def build_losses(self) -> keras.losses.Loss:
        """Sparse cross-entropy on the softmax, or its logit-adjusted form (`losses`): the
        model's outputs stay plain probabilities either way."""
        training = self.config.training
        return losses.build_loss(training.class_weight, self.train_counts,
                                 training.logit_adjustment_tau)

    def build_metrics(self) -> List[keras.metrics.Metric]:
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def compile_model(self, model: keras.Model, learning_rate: float) -> None:
        """Adam, the task's loss and metrics (XLA on GPUs unless told)."""
        training = self.config.training
        jit = training.jit_compile
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=self.build_losses(), metrics=self.build_metrics(),
            steps_per_execution=training.steps_per_execution,
            jit_compile=(bool(tf.config.list_logical_devices("GPU")) if jit == "auto"
                         else jit == "true"))

    # ------------------------------------------------------------ inputs

    def steps_per_epoch(self, phase: Phase) -> int:
        training = self.config.training
        return training.steps_per_epoch or max(1, phase.source.counts["train"]
                                               // training.batch_size)

    def validates(self, phase: Phase) -> bool:
        """Whether `phase` has a validation split."""
        return bool(phase.source.files["val"])

    def validation_steps(self, phase: Phase) -> Optional[int]:
        """Validation steps per epoch (None: all of the split)."""
        training = self.config.training
        return training.validation_steps or (
            math.ceil(phase.source.counts["val"] / training.batch_size)
            if phase.source.counts["val"] else None)

    def parser(self, source: sources.Source) -> parsers.Parser:
        """The parser of `source`'s record kind."""
        if source.record_kind == "features":
            return parsers.FeatureParser(source.num_frames, source.card.feature_dim,
                                         source.card.dtype, flip_view=task_flip_view(source))
        return parsers.ClipParser(source.num_frames, source.image_size)

    def dataset_fn(self, phase: Phase, split: str, plan: Optional[reader.EpochPlan]
                   ) -> Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]:
        """One split of `phase`'s repeated input, for `distribute_datasets_from_function`
        (cut into the fit's epochs by `plan`); training on "train"."""
        training = split == "train"
        if training and plan and plan.initial_step and self.reader_config.data_service:
            logger.warning("with --data_service the resumed epoch's records are the service's: "
                           "its first %d steps are not skipped", plan.initial_step)
        return self.build_inputs(phase.source, split, training=training, plan=plan)

    def build_inputs(self, source: sources.Source, split: str, *, training: bool,
                     plan: Optional[reader.EpochPlan] = None
                     ) -> Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]:
        """One split's repeated dataset function (cut into the fit's epochs by `plan`)."""
        counter = (self.corrupt_counters or {}).get(split)
        return reader.dataset_fn(source, split, self.parser(source), self.reader_config,
                                 training=training, counter=counter, plan=plan)

    def input_counters(self, validating: bool) -> Dict[str, tf.Variable]:
        """Per-epoch counts of the input pipelines, by log name (history.csv's columns)."""
        if self.corrupt_counters is None:
            return {}
        counters = {"corrupt_records": self.corrupt_counters["train"]}
        if validating:
            counters["val_corrupt_records"] = self.corrupt_counters["val"]
        return counters

    def reading(self) -> ContextManager[None]:
        """A context in which a corrupt record stops the run with one line naming its file."""
        return corrupt.corrupt_records_named(
            [pair for source in (self.plays, self.features) if source is not None
             for pair in source.file_compressions()])

    def eval_dataset(self, split: str, source: Optional[sources.Source] = None) -> tf.data.Dataset:
        """One pass over a split of `source` (default `eval_source`): (views [B, V, ...], labels),
        the multi-view eval function, B = max(1, batch_size // V) plays (the model sees B x V
        clips at once)."""
        source, views = source or self.eval_source, self.eval_views
        options = ReaderConfig(
            global_batch_size=max(1, self.config.training.batch_size // views.total),
            seed=self.config.training.seed)
        parser = self.parser(source)
        return reader.read(source, split, parser, options, training=False,
                           parse=parser.views_fn(views))


def task_flip_view(source: sources.Source) -> Optional[int]:
    """The index of the stored flipped view in a feature source's records (None: none)."""
    views = list(source.card.views)
    return views.index("flip") if "flip" in views else None


def train_label_counts(plays: sources.Source, weighting: bool,
                       class_weight: str = "balanced") -> Tuple[int, ...]:
    """Training plays per label (the dataset card's train counts); UsageError without them.

    `weighting`: for --class_weight=`class_weight` (balanced or logit_adjusted: a
    label without plays is an error), else for --balanced_sampling.
    """
    card = plays.card
    flag = f"--class_weight={class_weight}" if weighting else "--balanced_sampling"
    if card is None or "train" not in (card.label_counts or {}):
        raise UsageError(f"{flag} needs the training plays per label of dataset.json "
                         f"(label_counts): give --data_dir, or put the card beside the "
                         f"--train_files")
    counts = tuple(int(card.label_counts["train"].get(label, 0)) for label in plays.labels)
    missing = [label for label, count in zip(plays.labels, counts) if not count]
    if missing and weighting:
        raise UsageError(f"{flag}: label {missing[0]!r} has no training plays (dataset.json "
                         f"label_counts.train), so it has no weight or prior: add plays of it to the "
                         f"train split, drop it from --labels, or use --class_weight=none")
    return counts


def class_weights_of(counts: Tuple[int, ...]) -> Tuple[float, ...]:
    """Inverse label frequencies, normalised to mean 1 (twice the plays: half the weight)."""
    inverse = [1.0 / count for count in counts]
    mean = sum(inverse) / len(inverse)
    return tuple(value / mean for value in inverse)
