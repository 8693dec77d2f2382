"""Ingest: a file or JSON → validated rows → recorded updates → applied state (or rejected rows)."""
