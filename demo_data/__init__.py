"""Synthetic demo data: rendered plays, full demo games and small record sets for tests.

Imports: schemas.
"""
