"""Test helper: `python -m trainer.task` that also writes down each batch it takes from the
tf.data service.

    python -m tests.tapped_trainer TAP_FILE [trainer.task flags...]

Every batch that `trainer.data.service.distribute` hands the trainer appends one line to
TAP_FILE: the batch's label indices, in the order the trainer receives them. Keras takes
batches from its iterator in that order, so the first `epochs * steps_per_epoch` lines are
the batches the trainer trained on (the lines after them were prefetched, not used). With
one label per play (`synthetic_records.write_dataset(labels=...)` with as many labels as
plays), a label index names a play.
"""

from __future__ import annotations

import sys

import tensorflow as tf

from trainer import task
from trainer.data import service as data_service


def tap_batches(distribute, tap_path: str):
    """`distribute` whose datasets append each batch's labels to `tap_path`."""
    def write(labels):
        with open(tap_path, "a") as f:
            f.write(" ".join(str(int(v)) for v in labels.numpy()) + "\n")
        return labels

    def tap(inputs, labels):
        out = tf.py_function(write, [labels], labels.dtype)
        out.set_shape(labels.shape)
        return inputs, out

    def tapped(*args, **kwargs) -> tf.data.Dataset:
        return distribute(*args, **kwargs).map(tap)  # sequential: lines in arrival order
    return tapped


def main() -> None:
    tap_path, argv = sys.argv[1], sys.argv[2:]
    data_service.distribute = tap_batches(data_service.distribute, tap_path)
    sys.exit(task.run(argv))


if __name__ == "__main__":
    main()
