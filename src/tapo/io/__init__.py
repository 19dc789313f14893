"""Filesystem helpers: atomic writes and run directories."""
