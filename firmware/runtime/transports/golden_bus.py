"""The driver's bus over the golden device model: the register map of golden.regmap,
served from a `golden.device.Device`, so the driver code is the same as on RTL or board."""

import functools
from types import MappingProxyType

import numpy as np

from golden import regmap
from golden.device import Device, DeviceStack
from golden.interface import STATUS_FIELDS, pack_fields
from golden.isa import ErrorCode

from ..driver import BusError

__all__ = ["GoldenBus"]

_UNSIGNED = ("imem", "qmem")            # memories of unsigned fields; the others hold lanes


_COUNTER_AT = {regmap.counter_address(name): name for name in regmap.COUNTERS}
_COUNTER_BASE = regmap.counter_address(regmap.COUNTERS[0])


@functools.lru_cache(maxsize=64)
def _constant_registers(config):
    """The values of `config`'s constant registers by address: worked out once per process
    (a golden run makes a bus each batch). Read-only: shared by every bus."""
    values = {regmap.CSR["ID"]: regmap.ID_VALUE, regmap.CSR["VERSION"]: regmap.VERSION,
              regmap.CSR["CONTROL"]: 0}
    for name, address in regmap.CAPABILITIES.items():
        values[address] = getattr(config, name)
    return MappingProxyType(values)


@functools.lru_cache(maxsize=256)
def _constant_burst(config, address, count):
    """The words of a burst of `config`'s constant registers only (the capability
    registers, which a driver reads in one burst whenever it discovers the device), or
    None: worked out once per burst."""
    values = _constant_registers(config)
    addresses = range(address, address + 4 * count, 4)
    return tuple(values[a] for a in addresses) if all(a in values for a in addresses) else None


@functools.lru_cache(maxsize=1 << 10)
def _status_word(done, error, error_pc):
    """STATUS after a run: packed once per outcome (a run's is nearly always the same)."""
    return pack_fields(STATUS_FIELDS, done=done, error=error != ErrorCode.NONE,
                       error_code=int(error), error_pc=error_pc)


class GoldenBus:
    """Word reads and writes decoded as the RTL decodes them, SLVERR cases included.

    A start runs the whole program at once (the model is not cycle-stepped); the
    counters then hold the model's predictions. A burst of whole, contiguous memory
    entries is one array copy; any other burst goes entry by entry. The driver moves
    memory images as lane values (`store_entries`, `load_entries`): what the words
    would do, without packing them.

    Over a `golden.device.DeviceStack` the bus serves several devices in lockstep
    (`lockstep`): entries for amem and psum carry a leading axis, a device each, or are
    the same for all; word accesses reach the shared memories only.
    """

    max_burst = 1 << 20

    def __init__(self, device):
        if not isinstance(device, (Device, DeviceStack)):
            raise TypeError(f"device must be a golden.device.Device or DeviceStack, "
                            f"not {device!r}")
        self.device = device
        self.config = device.config
        self.windows = regmap.memory_windows(self.config)
        self._csr_values = _constant_registers(self.config)
        self._status = 0
        self._counters = dict.fromkeys(regmap.COUNTERS, 0)

    def _locate(self, address):
        """(window, entry, word) of a memory address, or None."""
        for window in self.windows.values():
            offset = address - window.base
            if 0 <= offset < regmap.WINDOW_SPAN and offset % 4 == 0:
                entry, byte = divmod(offset, window.entry_stride)
                if entry < window.depth and byte // 4 < window.entry_words:
                    return window, entry, byte // 4
        return None

    @property
    def lockstep_limit(self):
        """How many devices `lockstep` can drive at once."""
        return getattr(self.device, "size", 1)

    def lockstep(self, count):
        """Run and address devices ``0 .. count-1`` of the stack from now on."""
        if isinstance(self.device, DeviceStack):
            self.device.use(count)
        elif count != 1:
            raise ValueError(f"one device behind this bus, not {count}")

    def expect(self, runs):
        """The runs to come (`golden.lookahead.Expected`s; None: unknown), for the device
        to make their products ahead (`golden.device.Device.expect`)."""
        self.device.expect(runs)

    def _forget(self, memory, first, count):
        """Results made ahead that read amem entries the host now writes are stale."""
        if memory == "amem" and self.device.ahead is not None:
            self.device.ahead.forget(first, count)

    def _words_array(self, window):
        """A memory that word accesses reach: one array, not a device each."""
        array = getattr(self.device, window.name)
        if array.ndim != 2:
            raise BusError(window.base, "access", f"{window.name} is a memory of each device "
                                                  f"of a stack: move it as entries")
        return array

    def _entry_words(self, window, entry):
        return window.pack(self._words_array(window)[entry:entry + 1])[0]

    async def read(self, address):
        return self._read_word(address)

    def _read_word(self, address):
        if address == regmap.CSR["STATUS"]:
            return self._status
        if address in self._csr_values:
            return self._csr_values[address]
        if address in _COUNTER_AT:
            return self._counters[_COUNTER_AT[address]] & 0xFFFF_FFFF
        located = self._locate(address)
        if located is None:
            raise BusError(address, "read")
        window, entry, word = located
        return int(self._entry_words(window, entry)[word])

    def _write_words(self, address, words):
        """A burst that is not whole entries (a part of an entry's lanes, or CSRs): entry
        by entry, each entry's words replaced in one unpack; what word-by-word writes
        would do, SLVERR at the first word outside a window included."""
        at = 0
        while at < len(words):
            located = self._locate(address + 4 * at)
            if located is None:                  # a CSR, or SLVERR
                self._write_word(address + 4 * at, words[at])
                at += 1
                continue
            window, entry, word = located
            n = min(len(words) - at, window.entry_words - word)
            entry_words = self._entry_words(window, entry)
            entry_words[word:word + n] = np.asarray(words[at:at + n], np.int64) & 0xFFFF_FFFF
            self._store(window, entry, entry_words[None])
            at += n

    def _store(self, window, first, words):
        """Entries from `first` on set from their ``(n, entry_words)`` words (imem and qmem
        hold unsigned fields, the others signed lanes)."""
        words = np.asarray(words, np.int64).reshape(-1, window.entry_words)
        signed = window.name not in _UNSIGNED
        self._forget(window.name, first, len(words))
        self._words_array(window)[first:first + len(words)] = window.unpack(
            words, signed=signed)

    async def write(self, address, value):
        self._write_word(address, value)

    def _write_word(self, address, value):
        value = int(value) & 0xFFFF_FFFF
        if address == regmap.CSR["CONTROL"]:
            if value & regmap.CONTROL_SOFT_RESET:
                self.device.soft_reset()
                self._status = 0
                self._counters = dict.fromkeys(regmap.COUNTERS, 0)
            elif value & regmap.CONTROL_START:
                self._run()
            return
        located = self._locate(address)
        if located is None:
            raise BusError(address, "write")
        window, entry, word = located
        words = self._entry_words(window, entry)
        words[word] = value
        self._store(window, entry, words[None])

    def _entry_span(self, address, count):
        """(window, first entry, entries) when a burst covers whole contiguous entries."""
        located = self._locate(address)
        if located is None:
            return None
        window, entry, word = located
        entries, rest = divmod(count, window.entry_words)
        if word or rest or not window.contiguous or entry + entries > window.depth:
            return None
        return window, entry, entries

    async def read_burst(self, address, count):
        if address == _COUNTER_BASE and count == len(regmap.COUNTERS):     # the driver's read
            return [self._counters[name] & 0xFFFF_FFFF for name in regmap.COUNTERS]
        constant = _constant_burst(self.config, address, count)
        if constant is not None:
            return list(constant)
        span = self._entry_span(address, count)
        if span is None:                     # other CSRs: word by word
            return [self._read_word(a) for a in range(address, address + 4 * count, 4)]
        window, entry, entries = span
        return window.pack(self._words_array(window)[entry:entry + entries]).ravel()

    async def write_burst(self, address, words):
        span = self._entry_span(address, len(words))
        if span is None:
            self._write_words(address, words)
            return
        window, entry, _ = span
        self._store(window, entry, np.asarray(words, np.int64) & 0xFFFF_FFFF)

    def _entries(self, memory, start, count):
        window = self.windows.get(memory)
        if window is None or start < 0 or count < 0 or start + count > window.depth:
            raise BusError(window.address(0) if window else 0, "access",
                           f"{memory} entries {start}..{start + count - 1} outside the window")
        return window, getattr(self.device, memory)

    async def store_entries(self, memory, start, entries, lanes):
        """Lanes ``0 .. lanes-1`` of `entries` into `memory` from entry `start` on, as the
        words holding them would land (`MemoryWindow.wrap`); the other lanes keep theirs.
        In lockstep, ``(devices, n, lanes)`` entries are a device's each; a memory the
        devices share keeps the last (they write the same)."""
        entries = np.asarray(entries)
        count = entries.shape[-2]
        window, array = self._entries(memory, start, count)
        lanes = min(lanes, window.lanes)
        values = window.lane_values(entries[..., :lanes], signed=memory not in _UNSIGNED)
        if values.ndim > array.ndim:
            values = values[-1]
        self._forget(memory, start, count)
        array[..., start:start + count, :lanes] = values

    async def load_entries(self, memory, start, count, signed=True):
        window, array = self._entries(memory, start, count)
        return window.wrap(array[..., start:start + count, :], signed=signed)

    def _run(self):
        result = self.device.run()
        self._counters = result.counters            # 32-bit registers: masked when read
        self._status = _status_word(result.done, result.error, result.error_pc)

    async def wait_done(self, timeout_s):
        return bool(self._status & (regmap.STATUS_DONE | regmap.STATUS_ERROR))


