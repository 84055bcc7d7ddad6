"""Offline training of the shipped classifiers (needs the `train` extra)."""
