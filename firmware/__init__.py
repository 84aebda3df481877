"""Compiler, driver and runtime: frontend/ (networks as users have them) -> compiler/ -> runtime/
(the executable, driver, targets, report). Imports golden/ and NumPy, never Amaranth."""

from .runtime.driver import BusError, DeviceError, DeviceTimeout, Driver, RunStatus

__all__ = ["BusError", "DeviceError", "DeviceTimeout", "Driver", "RunStatus"]
