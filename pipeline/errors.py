"""Domain errors whose message is shown to the user as it is (Simplified Chinese)."""


class ActionRefused(ValueError):
    """An office action (override, acknowledgement, ...) cannot be done; the message says why."""


class SettingsError(RuntimeError):
    """A configuration value is wrong; the message names the variable, in Chinese."""
