"""Domain errors whose message is shown to the user as it is (Simplified Chinese)."""


class ActionRefused(ValueError):
    """An office action (override, acknowledgement, ...) cannot be done; the message says why."""
