"""The DAPO trainer (dynamic sampling, updates, checkpoints, metrics) and the supervised warm start."""
