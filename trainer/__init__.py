"""The trainer: commands (`task`, `predict`, `timeline`, `data_service`), the run
configuration, and the packages below.

Imports: schemas, media, backbone, demo_data.
"""
