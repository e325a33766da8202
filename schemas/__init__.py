"""Versioned definitions shared by the records job and the trainer."""
