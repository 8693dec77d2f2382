"""Import every command module so that its commands register on the app."""

from pipeline.cli import actions, alerts, batches, changes, evaluate, processes, reserve, users, views, web  # noqa: F401
