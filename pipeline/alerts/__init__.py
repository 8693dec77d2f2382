"""Alerts: the 双月述职 review calendar, planning (who gets what, when) into the outbox, and the
channels (email, webhook) that deliver outbox rows."""
