"""Datasets as in-memory Lightning DataModules; each exposes a DataSpec to the models and metrics."""
