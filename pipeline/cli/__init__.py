"""The `pipeline` command: typer commands over the same domain calls as the tasks and the API."""

from __future__ import annotations

from pipeline.cli.app import app, main

__all__ = ["app", "main"]
