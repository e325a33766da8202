"""The classifier: the VGG16 cut on clips (TimeDistributed) and the heads that see the frames.

Imports: schemas, backbone, trainer.flags.
"""
