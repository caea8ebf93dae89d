"""Seed-parallel training: S seeds of one setting trained in one process as one batched model (issue #22)."""
