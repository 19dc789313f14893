"""Datasets: the row schema, TAPO-easy/hard builders, benchmark loaders and the offline TAPO-mini world."""
