"""The roles of the workspace's accounts (light: the CLI's help reads them)."""

ROLES = ("office", "leader", "unit")
ROLE_NAMES = {"office": "投资科", "leader": "包保领导", "unit": "责任单位"}
