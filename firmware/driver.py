"""The host driver, written once against a small async bus; transports supply the bus.

A transport provides::

    async def read(address) -> int          # one 32-bit word; raises BusError on SLVERR
    async def write(address, value) -> None # raises BusError on SLVERR
    async def wait_done(timeout_s) -> bool  # True once the done line (or STATUS) says done

Every wait has a timeout: the driver never hangs on a dead device.
"""

from dataclasses import dataclass

import numpy as np

from golden import isa, regmap
from golden.config import AccelConfig
from golden.isa import ErrorCode

__all__ = ["BusError", "DeviceError", "DeviceTimeout", "RunStatus", "Driver"]


class BusError(IOError):
    """The device answered SLVERR (or the link failed) at `address`."""

    def __init__(self, address, operation, detail="SLVERR"):
        super().__init__(f"bus {operation} at 0x{address:06x} failed: {detail}")
        self.address, self.operation = address, operation


class DeviceError(RuntimeError):
    """The sequencer stopped with an error code."""

    def __init__(self, status):
        self.status = status
        super().__init__(f"device stopped with {status.error.name} at pc {status.error_pc}")


class DeviceTimeout(TimeoutError):
    pass


@dataclass(frozen=True)
class RunStatus:
    done: bool
    error: ErrorCode
    error_pc: int
    counters: dict

    @property
    def ok(self):
        return self.done and self.error == ErrorCode.NONE


class Driver:
    """Discovers, loads, runs and reads back an accelerator over `bus`."""

    def __init__(self, bus):
        self.bus = bus
        self.config = None
        self.windows = None

    async def discover(self):
        """Check the ID and version, read the capability registers, return the config."""
        ident = await self.bus.read(regmap.CSR["ID"])
        if ident != regmap.ID_VALUE:
            raise BusError(regmap.CSR["ID"], "read", f"ID 0x{ident:08x} is not a Tessera "
                                                     f"accelerator (0x{regmap.ID_VALUE:08x})")
        version = await self.bus.read(regmap.CSR["VERSION"])
        if version >> 16 != regmap.VERSION >> 16:
            raise BusError(regmap.CSR["VERSION"], "read",
                           f"version 0x{version:08x} is incompatible with 0x{regmap.VERSION:08x}")
        fields = {name: await self.bus.read(address)
                  for name, address in regmap.CAPABILITIES.items()}
        self.config = AccelConfig(**fields)
        self.windows = regmap.memory_windows(self.config)
        return self.config

    def _window(self, memory):
        if self.windows is None:
            raise RuntimeError("call discover() first")
        if memory not in self.windows:
            raise KeyError(f"no memory {memory!r}; memories are {sorted(self.windows)}")
        return self.windows[memory]

    async def write_entries(self, memory, start, entries):
        window = self._window(memory)
        words = window.pack(entries)
        if start < 0 or start + len(words) > window.depth:
            raise IndexError(f"{memory} entries {start}..{start + len(words) - 1} outside "
                             f"0..{window.depth - 1}")
        for i, entry_words in enumerate(words):
            for w, value in enumerate(entry_words):
                await self.bus.write(window.address(start + i, w), int(value))

    async def read_entries(self, memory, start, count, signed=True):
        window = self._window(memory)
        if start < 0 or start + count > window.depth:
            raise IndexError(f"{memory} entries {start}..{start + count - 1} outside "
                             f"0..{window.depth - 1}")
        words = [[await self.bus.read(window.address(start + i, w))
                  for w in range(window.entry_words)] for i in range(count)]
        return window.unpack(np.array(words, np.int64).reshape(count, -1), signed=signed)

    async def load_program(self, instructions):
        words = np.array(isa.encode_program(instructions), np.int64).reshape(-1, 4)
        await self.write_entries("imem", 0, words)

    async def start(self):
        await self.bus.write(regmap.CSR["CONTROL"], regmap.CONTROL_START)

    async def soft_reset(self):
        await self.bus.write(regmap.CSR["CONTROL"], regmap.CONTROL_SOFT_RESET)

    async def status(self):
        return regmap.decode_status(await self.bus.read(regmap.CSR["STATUS"]))

    async def read_counters(self):
        return {name: await self.bus.read(regmap.counter_address(name))
                for name in regmap.COUNTERS}

    async def run(self, timeout_s=10.0, raise_on_error=True):
        """Start the loaded program, wait for done (at most `timeout_s`), read the counters."""
        await self.start()
        if not await self.bus.wait_done(timeout_s):
            raise DeviceTimeout(f"device not done after {timeout_s} s "
                                f"(status {await self.status()})")
        status = await self.status()
        result = RunStatus(status["done"], ErrorCode(status["error_code"]), status["error_pc"],
                           await self.read_counters())
        if raise_on_error and result.error != ErrorCode.NONE:
            raise DeviceError(result)
        return result


