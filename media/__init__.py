"""Media I/O: frame folders and videos read into sampled, resized JPEG frames, clips cut
from game videos, a game's frames streamed.

Imports: schemas, demo_data (the `demo://` plays are rendered, not read).
"""
