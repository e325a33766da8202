"""The Beam jobs (records, embed, prediction, find plays): thin command modules over named PTransforms.

Imports: schemas, media, backbone, demo_data, trainer.evaluation, trainer.serving.
"""
