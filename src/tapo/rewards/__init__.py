"""Rewards: format check, answer scorers by data source, overlong shaping."""
