"""Versioned record and card schemas, sampling settings, label vocabularies and errors.

Imports: nothing of ours (and never TensorFlow: the records job's workers import it).
"""
