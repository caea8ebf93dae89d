"""Diagnostics behind one interface: evaluators that each turn an evaluation context into results."""
