"""The trainer: commands (`task`, `tune`, `predict`, `timeline`, `data_service`), the run
configuration, and the packages below.

Imports: schemas, media, backbone, demo_data.
"""
