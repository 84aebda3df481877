"""Where an `Executable` runs. Every target takes the same executable and int8 samples and
returns the same `NetworkRun`, through the same driver: only the bus differs. The golden
model and a board are here; the RTL simulation is `sim.network.RTLTarget` (it needs
Amaranth and Verilator, which running on the others does not)."""

import asyncio
from dataclasses import dataclass
from typing import Protocol

from golden.device import Device, DeviceStack
from golden.faults import FaultMap
from golden.nonideal import NonIdealities

from .driver import BusError, DeviceError, DeviceTimeout, Driver
from .run import NetworkRun, run_executable
from .transports import GoldenBus, PySerialLink, SerialBus

__all__ = ["Target", "TargetError", "GoldenTarget", "BoardTarget", "BoardError"]


class TargetError(RuntimeError):
    """A target could not run: its message is one line naming the cause (and any log)."""


class Target(Protocol):
    name: str

    def run(self, exe, x_q, progress=None) -> NetworkRun:
        """Run the int8 samples `x_q` through `exe`; `progress(done, total)` after each
        batch where the target can say."""


@dataclass(frozen=True)
class GoldenTarget:
    """A fresh golden device model of the executable's config per run; `nonideal`
    perturbs its analog side, `faults` (a `golden.faults.FaultMap`) sticks cells. An
    ideal lossless device runs its equal batches, and a segment's equal sub-batches, side
    by side on a `DeviceStack` (at most `stack_bytes` of stacked memories): the same
    outputs, counters and host words as batch after batch, with each segment's plan run
    once for all of them."""
    nonideal: NonIdealities | None = None
    faults: FaultMap | None = None
    stack_bytes: int = 1 << 27
    name = "golden"

    def run(self, exe, x_q, progress=None):
        return _complete(run_executable(Driver(GoldenBus(self._device(exe, len(x_q)))),
                                        exe, x_q, progress))

    def _device(self, exe, samples):
        c = exe.config
        if ((self.nonideal is not None and self.nonideal.active) or not c.is_lossless
                or self.faults is not None):
            return Device(c, self.nonideal, self.faults)
        if samples < 2:
            return Device(c)
        # the batches of a size a stack runs together, each its sub-batches side by side
        batches = exe.batches(samples)
        lanes = max(batches.count(batch) * max(count for *_, count in exe.rounds(batch))
                    for batch in set(batches))
        count = min(lanes, self.stack_bytes // DeviceStack.device_bytes(c))
        return DeviceStack(c, count) if count > 1 else Device(c)


def drive_golden(device, work):
    """``work(driver)`` (a coroutine function) on a driver over the golden bus of
    `device`; returns its result."""
    return _complete(work(Driver(GoldenBus(device))))


def _complete(coroutine):
    """The result of a coroutine that never waits (the golden bus answers every call at
    once): stepped once, with no event loop, whose start and stop cost ~0.2 ms a run."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    raise RuntimeError("the golden bus waited on something: run it under asyncio.run")


class BoardError(TargetError):
    """The board's serial port could not be opened or stopped answering; one line."""


@dataclass(frozen=True)
class BoardTarget:
    """A board running the UART top (`tessera build`), over its serial port: the driver
    checks the board's capability registers against the executable's config first."""
    port: str
    baudrate: int = 115200
    timeout_s: float = 1.0          # per bridge frame
    name = "board"

    def run(self, exe, x_q, progress=None):
        return self.drive(lambda driver: run_executable(driver, exe, x_q, progress))

    def drive(self, work):
        """``await work(driver)`` on a driver over the board's port; returns its result."""
        try:
            link = PySerialLink(self.port, self.baudrate)
        except OSError as error:        # pyserial's SerialException is an OSError
            raise BoardError(f"cannot open the board's serial port {self.port}: "
                             f"{error}") from None
        try:
            bus = SerialBus(link, self.timeout_s)
            return asyncio.run(work(Driver(bus)))
        except (BusError, DeviceError, DeviceTimeout) as error:
            raise BoardError(f"the board at {self.port}: {error}") from None
        finally:
            link.close()
