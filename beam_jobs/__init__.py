"""The Beam jobs (records, embed, prediction, find plays): thin command modules over named PTransforms.

Imports: schemas, media, backbone, demo_data, trainer.evaluation.metrics, trainer.evaluation.detection, trainer.serving.compute_dtype, trainer.serving.segments, trainer.serving.timeline, trainer.serving.timeline_model, trainer.serving.timeline_outputs.
"""
