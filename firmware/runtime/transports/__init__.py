"""Buses the driver runs over: the golden device model and a serial link to the UART
bridge here; the RTL's AXI4-Lite bus lives in sim/."""

from .golden_bus import GoldenBus
from .serial_bus import PySerialLink, SerialBus

__all__ = ["GoldenBus", "PySerialLink", "SerialBus"]
