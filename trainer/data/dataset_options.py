"""tf.data options every dataset of the trainer is given."""

import tensorflow as tf


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with tf.data's autotuning thread off; AUTOTUNE knobs take tf.data's defaults.

    In TF 2.16 deleting an iterator waits for that thread's next wake-up
    (cancelling the iterator does not wake it), and Keras deletes its
    iterators at the end of each `fit` (docs/history.md). Without autotuning,
    parallel calls default to the number of CPU cores, which on a small host
    gives the same clips/s (benchmarks/input_pipeline.py).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
