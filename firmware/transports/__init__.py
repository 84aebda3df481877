"""Buses the driver runs over: the golden device model here; the RTL's lives in sim/."""

from .golden_bus import GoldenBus

__all__ = ["GoldenBus"]
