"""``python -m imagelib`` runs the CLI."""

from imagelib.cli import app

app()
