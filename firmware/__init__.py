"""Compiler and driver. Imports golden/ and NumPy, never Amaranth."""

from .driver import BusError, DeviceError, DeviceTimeout, Driver, RunStatus

__all__ = ["BusError", "DeviceError", "DeviceTimeout", "Driver", "RunStatus"]
