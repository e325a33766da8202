"""Hyperparameter search over the trainer's flags: the search space (one definition for
KerasTuner and Vertex AI), the KerasTuner runner whose trials train through the trainer's own
code path, the outputs (trials.csv, trials.png, best_flags.txt) and the Vertex AI job's config.

Imports: schemas, trainer.config, trainer.data, trainer.modeling, trainer.training.
"""
