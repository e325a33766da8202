"""Training: the task and its stages, the fit loop with exact resume, finalize (weights,
evaluation, export), callbacks, preemption, distribution.

Imports: schemas, backbone, trainer.data, trainer.modeling, trainer.evaluation, trainer.serving, trainer.flags, trainer.config.
"""
