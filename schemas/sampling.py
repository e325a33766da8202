"""How the records job samples a play's frames: the one definition of each setting's default.

The records job (`beam_jobs`), the media reader (`media.frames`), the dataset
card, the export metadata and `trainer.predict` all take these values from
here, so a default changes in one place.
"""

DEFAULT_NUM_FRAMES = 40  # frames per play record
DEFAULT_FRAME_SIZE = 224  # output frame height and width (VGG16's input size)
DEFAULT_JPEG_QUALITY = 90  # quality of re-encoded frames
DEFAULT_FRAME_RATE = 30.0  # frames per second of frame folders with no frame_rate column
RESIZE_MODES = ("crop", "pad")  # crop: fill and center-crop; pad: fit and letterbox
DEFAULT_RESIZE_MODE = "crop"
PAD_SHORT_MODES = ("", "loop", "last")  # plays with too few frames: reject, loop, repeat last
