"""The host driver, written once against a small async bus; transports supply the bus.

A transport provides::

    async def read(address) -> int                  # one 32-bit word; BusError on SLVERR
    async def write(address, value) -> None         # BusError on SLVERR
    async def read_burst(address, count) -> list    # `count` words from address, address + 4, ...
    async def write_burst(address, words) -> None
    async def wait_done(timeout_s) -> bool          # True once the done line (or STATUS) says done
    max_burst: int                                  # the most words one burst moves

and, where the far side is a model in this process (the golden bus), optionally::

    async def store_entries(memory, start, entries, lanes) -> None   # lanes 0..lanes-1
    async def load_entries(memory, start, count, signed) -> array

which move a memory's lane values as the words would (`MemoryWindow.wrap`), without
packing them into words and back.

Memory images move in bursts; the driver counts every word it moves, per memory (and
"csr" for registers), so that a run can book its off-chip traffic. Every wait has a
timeout: the driver never hangs on a dead device.
"""

import functools
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


@functools.lru_cache(maxsize=64)
def _discovered(values):
    """(config, memory windows) the capability registers' `values` (in the order of
    `regmap.CAPABILITIES`) describe, checked once per process: a golden run discovers the
    same device every run."""
    config = AccelConfig(**dict(zip(regmap.CAPABILITIES, values)))
    return config, regmap.memory_windows(config)


class Driver:
    """Discovers, loads, runs and reads back an accelerator over `bus`."""

    def __init__(self, bus):
        self.bus = bus
        self.config = None
        self.windows = None
        self.copies = 1             # devices each call reaches (`lockstep`)
        self.reset_transfer_counts()

    @property
    def lockstep_limit(self):
        """How many devices the bus can drive in lockstep (1 but for the golden stack)."""
        return getattr(self.bus, "lockstep_limit", 1)

    def lockstep(self, count):
        """Drive devices ``0 .. count-1`` at once from now on: each call is made to each of
        them, entries with a leading axis of `count` are a device's each (others the same
        for all), reads return one such axis, and the words counted are what `count`
        devices, one after another, would move."""
        if count != self.copies:
            if count > self.lockstep_limit:
                raise ValueError(f"the bus drives at most {self.lockstep_limit} devices "
                                 f"at once, not {count}")
            if hasattr(self.bus, "lockstep"):
                self.bus.lockstep(count)
            self.copies = count

    def expect(self, runs):
        """Tell a model behind the bus the device runs to come (`golden.lookahead.Expected`s,
        in order; None when unknown), so that it can compute ahead. A bus without
        `expect` (RTL, a board) does not need it."""
        expect = getattr(self.bus, "expect", None)
        if expect is not None:
            expect(runs)

    def reset_transfer_counts(self):
        self._moved = {"written": {}, "read": {}}

    def transfer_counts(self):
        """Words moved since the last reset: {"written": {memory: n}, "read": {memory: n}}."""
        return {way: dict(counts) for way, counts in self._moved.items()}

    def _count(self, way, memory, words):
        self._moved[way][memory] = self._moved[way].get(memory, 0) + words * self.copies

    async def _read_csr(self, address):
        self._count("read", "csr", 1)
        return await self.bus.read(address)

    async def _write_csr(self, address, value):
        self._count("written", "csr", 1)
        await self.bus.write(address, value)

    async def discover(self):
        """Check the ID and version, read the capability registers, return the config."""
        ident = await self._read_csr(regmap.CSR["ID"])
        if ident != regmap.ID_VALUE:
            raise BusError(regmap.CSR["ID"], "read", f"ID 0x{ident:08x} is not a Tessera "
                                                     f"accelerator (0x{regmap.ID_VALUE:08x})")
        version = await self._read_csr(regmap.CSR["VERSION"])
        if version >> 16 != regmap.VERSION >> 16:
            raise BusError(regmap.CSR["VERSION"], "read",
                           f"version 0x{version:08x} is incompatible with 0x{regmap.VERSION:08x}")
        values = await self.bus.read_burst(regmap.CAPABILITY_BASE, len(regmap.CAPABILITIES))
        self._count("read", "csr", len(values))
        self.config, self.windows = _discovered(tuple(map(int, values)))
        return self.config

    def _window(self, memory):
        if self.windows is None:
            raise RuntimeError("call discover() first")
        if memory not in self.windows:
            raise KeyError(f"no memory {memory!r}; memories are {sorted(self.windows)}")
        return self.windows[memory]

    def _bursts(self, window, start, count):
        """(address, first entry, entries) runs of whole entries that one burst each can
        move: entries are contiguous when their words fill their stride."""
        per_burst = max(1, self.bus.max_burst // window.entry_words) if window.contiguous else 1
        for first in range(start, start + count, per_burst):
            entries = min(per_burst, start + count - first)
            yield window.address(first), first - start, entries

    def _check_span(self, window, start, count):
        if start < 0 or count < 0 or start + count > window.depth:
            raise IndexError(f"{window.name} entries {start}..{start + count - 1} outside "
                             f"0..{window.depth - 1}")

    async def write_entries(self, memory, start, entries, lanes=None):
        """Write `entries` from entry `start` on; given `lanes`, only the words holding
        each entry's first `lanes` lanes (the others keep what they held)."""
        window = self._window(memory)
        entries = np.asarray(entries)
        if entries.dtype.kind not in "iu":          # int8 images stay int8 (no copy)
            entries = entries.astype(np.int64)
        if self.copies == 1 or entries.ndim != 3:
            entries = entries.reshape(-1, window.lanes)
        count = entries.shape[-2]
        self._check_span(window, start, count)
        words = window.entry_words
        if lanes is not None and lanes < window.lanes:
            words = -(-lanes * window.lane_bits // 32)
        store = getattr(self.bus, "store_entries", None)
        if store is not None:
            await store(memory, start, entries, words * 32 // window.lane_bits)
        elif words < window.entry_words:
            packed = window.pack(entries)[:, :words]
            for entry, row in enumerate(packed):
                await self.bus.write_burst(window.address(start + entry), row)
        else:
            packed = window.pack(entries)
            for address, offset, n in self._bursts(window, start, count):
                await self.bus.write_burst(address, packed[offset:offset + n].ravel())
        self._count("written", memory, count * words)

    async def read_entries(self, memory, start, count, signed=True):
        window = self._window(memory)
        self._check_span(window, start, count)
        load = getattr(self.bus, "load_entries", None)
        if load is not None:
            entries = await load(memory, start, count, signed)
        else:
            words = np.zeros((count, window.entry_words), np.int64)
            for address, offset, n in self._bursts(window, start, count):
                burst = await self.bus.read_burst(address, n * window.entry_words)
                words[offset:offset + n] = np.array(burst, np.int64).reshape(n, -1)
            entries = window.unpack(words, signed=signed)
        self._count("read", memory, count * window.entry_words)
        return entries

    async def load_program(self, instructions):
        await self.load_words(np.array(isa.encode_program(instructions), np.int64))

    async def load_words(self, words):
        """An encoded program (``(instructions, 4)`` words) into the instruction memory."""
        await self.write_entries("imem", 0, np.asarray(words, np.int64).reshape(-1, 4))

    async def start(self):
        await self._write_csr(regmap.CSR["CONTROL"], regmap.CONTROL_START)

    async def soft_reset(self):
        await self._write_csr(regmap.CSR["CONTROL"], regmap.CONTROL_SOFT_RESET)

    async def status(self):
        return regmap.decode_status(await self._read_csr(regmap.CSR["STATUS"]))

    async def read_counters(self):
        first = regmap.counter_address(regmap.COUNTERS[0])
        values = await self.bus.read_burst(first, len(regmap.COUNTERS))
        self._count("read", "csr", len(values))
        return dict(zip(regmap.COUNTERS, values))

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


