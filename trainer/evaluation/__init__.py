"""Evaluation: metrics with intervals (numpy only), reports and plots, running a model over views.

Imports: schemas.
"""
