"""The Beam jobs (records, embed, prediction): thin command modules over named PTransforms.

Imports: schemas, media, backbone, demo_data, trainer.evaluation.metrics, trainer.serving.compute_dtype.
"""
