"""Serving: the export (model.keras and a SavedModel taking JPEG bytes), the predictor and
the game timeline.

Imports: schemas, media, backbone, trainer.data, trainer.modeling, trainer.evaluation.
"""
