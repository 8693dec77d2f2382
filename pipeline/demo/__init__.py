"""The demo reserve: a deterministic, realistic Jingzhou 2024 reserve (``pipeline demo``)."""

from pipeline.demo.generate import DemoLeader, DemoReserve, generate_demo

__all__ = ["DemoLeader", "DemoReserve", "generate_demo"]
