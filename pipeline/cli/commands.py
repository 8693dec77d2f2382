"""Import every command module so that its commands register on the app."""

from pipeline.cli import (  # noqa: F401
    actions, alerts, batches, bulletin, changes, evaluate, outlook, processes, reserve, users, views, web,
)
