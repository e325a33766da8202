"""The input side: record sources, corrupt-record handling, decoders, parsers, clip ops,
the reader and the tf.data service client.

Imports: schemas, media, trainer.flags.
"""
