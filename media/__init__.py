"""Media shared by the records job and the trainer: reading plays (frame folders, globs,
videos, demo plays) into sampled, resized JPEG frames, and synthetic plays and records."""
