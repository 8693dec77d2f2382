"""Celery tasks: thin shells that open a session and call the domain."""
