"""Models sharing the LatentVariableModel interface."""
