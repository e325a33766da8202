"""The errors a user can fix, shared by every layer.

Library code raises `UsageError` (a ValueError) for input that a person must
change: a flag, a missing or wrong file. The three commands (`make_records`,
`trainer.task`, `trainer.predict`) print it as one `error: ...` line and exit
with status 2. Any other exception is a bug and keeps its traceback.
"""


class UsageError(ValueError):
    """A run that cannot work as asked (bad flags, missing or unusable input, unwritable output)."""


class SchemaError(UsageError):
    """Data that does not follow this version's record, card or export schema."""


EXIT_USAGE = 2


def one_line(err: BaseException) -> str:
    """An exception's message on one line (TensorFlow's OpError keeps it in `.message`)."""
    message = getattr(err, "message", None) or str(err)
    return " ".join(str(message).split()) or type(err).__name__
