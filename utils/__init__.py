"""Shared helpers: checkpoints, padding, image I/O, metrics, configuration, training engine."""
