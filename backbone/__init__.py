"""The frozen VGG16 cut that turns frames into features, and the compute dtype it runs in:
shared by the embed job and the trainer.

Imports: schemas.
"""
