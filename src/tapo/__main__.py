"""``python -m tapo`` runs the CLI (the pipeline uses it to run each stage in its own process)."""

from tapo.cli.main import app

app()
