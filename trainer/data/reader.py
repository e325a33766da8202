"""The reader: shard files -> serialized records -> parsed, batched elements.

    files -> shard per input pipeline -> shuffle files -> parallel interleave of
    TFRecordDatasets [-> SkipCorrupt] -> shuffle records -> (serialized record,
    stateless seed [2], records skipped before it) -> [parallel map: the
    parser's train or eval function, one clip per call] -> batch (per-replica
    size) -> prefetch

The record stream has one element shape whether or not corrupt records are
skipped (`trainer.data.corrupt`). For an exact resume after preemption
(docs/preemption.md) a training stream is explicit epochs: epoch e's file and
record order and its per-record seeds are a function of (seed, e) alone
(`_epoch_records`), and a resumed fit skips the records of the steps already
taken, on the serialized records, before any decoding (`record_stream`).
`benchmarks/input_pipeline.py` measures the pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from typing import Callable, List, Optional, Sequence, Tuple

import tensorflow as tf

from schemas.errors import UsageError
from trainer.data import corrupt as corrupt_lib
from trainer.data import dataset_options, decoders, filesystems, parsers, sources
from trainer.data import service as data_service_lib
from trainer.data.config import ReaderConfig

logger = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE


def _pipeline_of(input_context: Optional[tf.distribute.InputContext]) -> Tuple[int, int]:
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def shard_files(files: Sequence[str],
                input_context: Optional[tf.distribute.InputContext]) -> List[str]:
    """The files that this input pipeline reads (every num_pipelines-th file)."""
    files = list(files)
    num_pipelines, pipeline_id = _pipeline_of(input_context)
    if not files:
        raise ValueError("no input files")
    if len(files) < num_pipelines:
        raise UsageError(
            f"{len(files)} shard(s) for {num_pipelines} input pipelines: every pipeline (worker) "
            f"needs at least one shard of its own. Re-run the records job with --num_shards of at "
            f"least {num_pipelines} (a multiple of it balances the workers), or use fewer workers")
    return files[pipeline_id::num_pipelines]


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """How a fit's input stream is cut into epochs, and where it starts (exact resume).

    Epoch `e` of the stream is `steps_per_epoch` steps of records whose order
    is a function of (seed, e) alone; the stream starts at `initial_epoch`,
    with the records of its first `initial_step` steps skipped before decoding.
    """

    steps_per_epoch: int
    initial_epoch: int = 0
    initial_step: int = 0


_MAXINT32 = (1 << 31) - 1  # TensorFlow truncates seeds modulo this
_EPOCH_STRIDE = 1 << 32  # per-record seeds: [pipeline seed, epoch * stride + index in the epoch]


def _pass_seed(seed: int, epoch: tf.Tensor, pass_index: tf.Tensor) -> tf.Tensor:
    """The shuffle seed of one pass over the files in one epoch: a function of (seed, epoch, pass)."""
    key = tf.stack([tf.constant(seed, tf.int64), epoch * _EPOCH_STRIDE + pass_index])
    return tf.random.stateless_uniform([], seed=key, minval=0, maxval=1 << 62, dtype=tf.int64)


def _seeded_shuffle(ds: tf.data.Dataset, buffer_size: int, seed: tf.Tensor) -> tf.data.Dataset:
    """`ds.shuffle` with a tensor seed (a function of (seed, epoch)), inside a dataset function.

    TF 2.16's `random_seed.get_seed` compares (global seed, op seed) with (0, 0)
    as a Python bool, which fails for a tensor op seed when the graph's seed is
    0 (a run with `--seed=0`); the function graph's seed is moved off 0, so the
    op seed alone decides the order, still the same for the same (seed, epoch).
    """
    graph = tf.compat.v1.get_default_graph()
    if graph.seed is not None and graph.seed % _MAXINT32 == 0:
        graph.seed = 1
    return ds.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=False)


def _one_pass(files: List[str], *, training: bool, ctype: str, seed: tf.Tensor,
              shuffle_buffer: int, skip: Optional[corrupt_lib.SkipCorrupt]) -> tf.data.Dataset:
    """Serialized records of one pass over `files`: shuffled files and records when training.

    The order is a function of `seed` (the interleave and the shuffles are
    deterministic), so that an epoch read again is read the same.
    """
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = _seeded_shuffle(ds, len(files), seed)
    read = (skip.read_file if skip is not None
            else lambda path, ctype_: tf.data.TFRecordDataset(path, compression_type=ctype_))
    ds = ds.interleave(lambda path: read(path, ctype), cycle_length=min(len(files), 16),
                       block_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)
    if training and shuffle_buffer > 1:
        ds = _seeded_shuffle(ds, shuffle_buffer, seed + 1)
    return ds


def balanced(ds: tf.data.Dataset, label_frequencies: Sequence[float],
             seed: Optional[int]) -> tf.data.Dataset:
    """A repeated (serialized, skipped) stream resampled so that every label is equally frequent.

    `label_frequencies` are the stream's label frequencies (the card's train
    counts); labels without plays stay absent. Rejection resampling reads only
    the label of each record (`decoders.label_tensor`), before any decoding.
    """
    present = [1.0 if f > 0 else 0.0 for f in label_frequencies]
    total = sum(label_frequencies)
    initial = [f / total for f in label_frequencies]
    target = [p / sum(present) for p in present]
    resampled = ds.rejection_resample(
        lambda serialized, skipped: decoders.label_tensor(serialized), target_dist=target,
        initial_dist=initial, seed=seed)
    return resampled.map(lambda label, element: element)


def _epoch_records(files: List[str], epoch: tf.Tensor, *, training: bool, ctype: str, seed: int,
                   shuffle_buffer: int, repeat: bool, skip: Optional[corrupt_lib.SkipCorrupt],
                   length: Optional[int],
                   label_frequencies: Optional[Sequence[float]] = None) -> tf.data.Dataset:
    """(serialized, stateless seed [2], skipped) of one epoch: passes over the files, `length` long."""
    passes = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    ds = passes.flat_map(lambda k: _one_pass(
        files, training=training, ctype=ctype, seed=_pass_seed(seed, epoch, k),
        shuffle_buffer=shuffle_buffer, skip=skip))
    ds = skip.fold_markers(ds) if skip is not None else corrupt_lib.with_nothing_skipped(ds)
    if label_frequencies is not None:  # the same acceptance draws each epoch, over its own order
        ds = balanced(ds, label_frequencies, seed)
    if training:
        seeds = tf.data.Dataset.counter().map(
            lambda i: tf.stack([tf.constant(seed, tf.int64), epoch * _EPOCH_STRIDE + i]))
    else:
        seeds = tf.data.Dataset.from_tensors(tf.zeros([2], tf.int64)).repeat()
    ds = tf.data.Dataset.zip((ds, seeds)).map(
        lambda counted, record_seed: (counted[0], record_seed, counted[1]))
    return ds.take(length) if length is not None else ds


def records_per_step(global_batch_size: int,
                     input_context: Optional[tf.distribute.InputContext]) -> int:
    """Records one input pipeline gives per training step (its replicas' batches)."""
    if input_context is None:
        return int(global_batch_size)
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    return per_replica * max(1, input_context.num_replicas_in_sync
                             // input_context.num_input_pipelines)


def record_stream(files: Sequence[str], options: ReaderConfig, *, training: bool,
                  compression: Optional[str],
                  input_context: Optional[tf.distribute.InputContext] = None,
                  repeat: bool = False, skip: Optional[corrupt_lib.SkipCorrupt] = None,
                  plan: Optional[EpochPlan] = None) -> tf.data.Dataset:
    """(serialized record, stateless seed int64 [2], records skipped before it) of this pipeline.

    Each record gets its own stateless seed when training (zeros for eval):
    [pipeline seed, epoch * 2**32 + its index in the epoch]. The skipped count
    is 0 unless `skip` counts corrupt records. A training stream with
    `options.label_frequencies` (and `repeat`) is resampled to equally
    frequent labels (`balanced`). With a `plan` (and repeat), the stream is
    its epochs one after the other, each `plan.steps_per_epoch` steps of
    `records_per_step` records, the first `plan.initial_step` steps skipped
    here, before any decoding; an eval stream's epochs are all the same
    records. Without a plan it is one epoch (epoch 0), endless when repeated.
    """
    files = shard_files(files, input_context)
    _, pipeline_id = _pipeline_of(input_context)
    seed = options.seed
    if seed is None:  # unseeded: a seed of its own, still one order per epoch
        seed = random.SystemRandom().randrange(1 << 31)
    # Each pipeline draws differently from the same user seed.
    pipeline_seed = seed + 1000003 * pipeline_id
    label_frequencies = options.label_frequencies if training else None
    if label_frequencies is not None and not repeat:
        raise ValueError("balanced sampling needs a repeated stream")
    epoch_fn = functools.partial(
        _epoch_records, files, training=training, ctype=filesystems.compression_type(compression),
        seed=pipeline_seed, shuffle_buffer=options.shuffle_buffer, repeat=repeat, skip=skip,
        label_frequencies=label_frequencies)
    if plan is None or not repeat:
        return epoch_fn(tf.constant(0, tf.int64), length=None)
    step_records = records_per_step(options.global_batch_size, input_context)
    length = plan.steps_per_epoch * step_records
    ds = tf.data.Dataset.counter(plan.initial_epoch).flat_map(
        lambda epoch: epoch_fn(epoch, length=length))
    return ds.skip(plan.initial_step * step_records) if plan.initial_step else ds


def make_dataset(files: Sequence[str], parser: parsers.Parser, options: ReaderConfig, *,
                 training: bool, compression: Optional[str] = "none",
                 input_context: Optional[tf.distribute.InputContext] = None,
                 repeat: bool = False,
                 corrupt: Optional[corrupt_lib.SkipCorrupt] = None,
                 parse: Optional[parsers.ParseFn] = None,
                 plan: Optional[EpochPlan] = None) -> tf.data.Dataset:
    """Batches of `(inputs, labels int32 [B])` from shards, parsed by `parser`.

    Args:
      files: shard paths (`sources.split_files`, `sources.match_files`); sharded
        per input pipeline by `input_context` (one pipeline needs at least one shard).
      parser: a `parsers.ClipParser` or `parsers.FeatureParser`.
      options: the batch size (global: split per replica with `input_context`),
        the seed of the shuffles and per-record draws (None: a fresh seed), the
        record shuffle buffer, and for training the balanced sampling
        (`balanced`, with `repeat`) or class weights: training batches are
        then `(inputs, labels, weights)`.
      training: shuffles files and records (an order that is a function of
        the seed and the epoch), runs the parser's train function and drops
        the last partial batch. Otherwise order, frames and pixels are fixed.
      compression: the card's compression ("none", "gzip").
      input_context: from `strategy.distribute_datasets_from_function`.
      repeat: repeat the file list forever.
      corrupt: skip (and count) corrupt records; None: a corrupt record fails
        the pipeline with a DataLossError.
      parse: another parse function than the parser's train or eval one (the
        multi-view eval, `parser.views_fn`).
      plan: the epochs of a fit and where they start (`EpochPlan`; with repeat).
    """
    ds = record_stream(files, options, training=training, compression=compression,
                       input_context=input_context, repeat=repeat, skip=corrupt, plan=plan)
    parse = parse or parser.parse_fn(training)
    # One clip per call, clips in parallel: a clip's frames are decoded in one
    # unrolled graph (num_frames known) with no per-frame tf.data elements.
    ds = ds.map(lambda serialized, record_seed, skipped: (*parse(serialized, record_seed), skipped),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    batch_size = (input_context.get_per_replica_batch_size(options.global_batch_size)
                  if input_context else int(options.global_batch_size))
    # A plain batch: a parallel one's copy threads compete with decoding on small
    # hosts (benchmarks/input_pipeline.py).
    ds = ds.batch(batch_size, drop_remainder=training).prefetch(AUTOTUNE)
    count = corrupt.count if corrupt is not None else (lambda skipped: tf.no_op())

    def leave(inputs, labels, skipped):
        """The batch leaves the pipeline: its skipped records are counted, the count dropped."""
        with tf.control_dependencies([count(skipped)]):
            return inputs, tf.identity(labels)

    ds = dataset_options.without_autotune(ds.map(leave))
    if training and options.class_weights is not None:
        weights = tf.constant(options.class_weights, tf.float32)
        ds = ds.map(lambda inputs, labels: (inputs, labels, tf.gather(weights, labels)))
    return ds


def read(source: sources.Source, split: str, parser: parsers.Parser, options: ReaderConfig, *,
         training: bool, repeat: bool = False,
         input_context: Optional[tf.distribute.InputContext] = None,
         counter: Optional[tf.Variable] = None,
         parse: Optional[parsers.ParseFn] = None,
         plan: Optional[EpochPlan] = None) -> tf.data.Dataset:
    """`make_dataset` over one split of `source`, skipping corrupt records if the run does
    (`source.corrupt_files`; counted in `counter` when repeated)."""
    skip = None
    if source.corrupt_files is not None:
        skip = corrupt_lib.SkipCorrupt(tuple(source.corrupt_files.get(split, ())),
                                       counter if repeat else None)
    return make_dataset(source.files[split], parser, options, training=training,
                        compression=source.compression, input_context=input_context,
                        repeat=repeat, corrupt=skip, parse=parse, plan=plan)


def dataset_fn(source: sources.Source, split: str, parser: parsers.Parser,
               options: ReaderConfig, *, training: bool,
               counter: Optional[tf.Variable] = None,
               plan: Optional[EpochPlan] = None
               ) -> Callable[[Optional[tf.distribute.InputContext]], tf.data.Dataset]:
    """A repeated dataset of one split, for `strategy.distribute_datasets_from_function`.

    Training with --data_service: every worker registers the same unsharded
    pipeline, batched per replica, with the service (`trainer.data_service`).
    Otherwise each worker reads its share of the shards (`shard_files`), and a
    share without a record fails here (`sources.check_shares`). `plan` cuts
    the stream into the fit's epochs (`EpochPlan`); the service's order is
    the service's, so there a resumed fit restarts its epoch's stream.
    """
    def fn(input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        if training and options.data_service:
            per_replica = (input_context.get_per_replica_batch_size(options.global_batch_size)
                           if input_context else options.global_batch_size)
            local = read(source, split, parser,
                         dataclasses.replace(options, global_batch_size=per_replica),
                         training=True, repeat=True, counter=counter,
                         plan=dataclasses.replace(plan, initial_step=0) if plan else None)
            name = data_service_lib.job_name(options.service_job_dir, split, source.record_kind)
            logger.info("%s input pipeline: tf.data service %s (job %s)", split,
                        options.data_service, name)
            return data_service_lib.distribute(local, options.data_service, name)
        sources.check_shares(source, split, input_context)
        return read(source, split, parser, options, training=training, repeat=True,
                    input_context=input_context, counter=counter, plan=plan)
    return fn
