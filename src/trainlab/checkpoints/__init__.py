"""Checkpoint files on disk as both sides handle them, and a checkpoint loaded as data."""
