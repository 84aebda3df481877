"""The hardware/software interface, declared once: the widths of the values the memories
hold, the memory windows the host sees, and the fields of the words the host, the code
generator and the sequencer exchange. rtl/ derives its Amaranth layouts from these tables
(`rtl.layouts`); golden and firmware pack and unpack with `pack_fields` and
`unpack_fields`. The instruction's table is `golden.isa.FIELDS`."""

import functools
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = ["WEIGHT_BITS", "INPUT_BITS", "ACC_BITS", "QPARAM_FIELDS", "QPARAM_BITS",
           "STATUS_FIELDS", "WINDOW_SPAN", "MemoryWindow", "memory_windows", "pack_fields",
           "unpack_fields"]

WEIGHT_BITS = 8     # int8 weights
INPUT_BITS = 8      # int8 activations
ACC_BITS = 32       # int32 partial sums and tile results

# Field tables: name -> (lsb, width, signed). No field straddles a 32-bit word.
# A qmem lane: one output channel's requantisation parameters (golden.requant).
QPARAM_FIELDS = {
    "bias": (0, 32, True), "multiplier": (32, 32, False), "shift": (64, 8, False),
    "zero_point": (72, 8, True), "clamp_min": (80, 8, True), "clamp_max": (88, 8, True),
}
QPARAM_BITS = 128
# The STATUS register.
STATUS_FIELDS = {
    "busy": (0, 1, False), "done": (1, 1, False), "error": (2, 1, False),
    "error_code": (8, 8, False),     # golden.isa.ErrorCode
    "error_pc": (16, 16, False),     # pc of the failing instruction
}


def pack_fields(fields, **values):
    """One integer holding `values` (two's complement where signed) at their fields."""
    unknown = set(values) - set(fields)
    if unknown:
        raise KeyError(f"no field {sorted(unknown)[0]!r} in this layout")
    word = 0
    for name, value in values.items():
        lsb, width, _ = fields[name]
        word |= (int(value) & ((1 << width) - 1)) << lsb
    return word


def unpack_fields(fields, words):
    """Vectorised inverse of `pack_fields`: a dict of int64 arrays (or ints) from 32-bit
    words, shape ``(..., n)`` (word 0 holds bits 0..31)."""
    if isinstance(words, (int, np.integer)):     # one word (a register): plain integers
        word, out = int(words) & 0xFFFF_FFFF, {}
        for name, (lsb, width, signed) in fields.items():
            value = (word >> lsb) & ((1 << width) - 1)
            out[name] = value - (value >> (width - 1) << width) if signed else value
        return out
    words = np.asarray(words, np.int64) & 0xFFFF_FFFF
    scalar = words.ndim == 0
    words = np.atleast_1d(words)
    out = {}
    for name, (lsb, width, signed) in fields.items():
        value = (words[..., lsb // 32] >> (lsb % 32)) & ((1 << width) - 1)
        if signed:
            value = (value ^ (1 << (width - 1))) - (1 << (width - 1))
        out[name] = int(value[()] if value.ndim == 0 else value[0]) if scalar else value
    return out


WINDOW_SPAN = 0x10_0000     # 1 MiB per memory window


@dataclass(frozen=True)
class MemoryWindow:
    name: str
    base: int
    depth: int
    lane_bits: int          # width of one lane (host writes whole words)
    lanes: int              # lanes per entry

    # Derived once per window (windows are shared read-only): the driver asks on every move.
    @functools.cached_property
    def entry_words(self):
        return -(-self.lanes * self.lane_bits // 32)

    @functools.cached_property
    def contiguous(self):
        """Whether an entry's words fill its stride, so a run of entries is one run of words."""
        return self.entry_words * 4 == self.entry_stride

    @functools.cached_property
    def entry_stride(self):
        """Bytes between entries: the entry's words rounded up to a power of two."""
        return 4 * (1 << (self.entry_words - 1).bit_length())

    @property
    def fits(self):
        return self.depth * self.entry_stride <= WINDOW_SPAN

    @functools.cached_property
    def _signed_lane(self):
        return np.dtype(f"i{self.lane_bits // 8}")

    @functools.cached_property
    def _unsigned_lane(self):
        return np.dtype(f"u{self.lane_bits // 8}")

    @functools.cached_property
    def _lane_type(self):
        """The little-endian unsigned type of one lane: a word is its lanes' bytes, lane 0
        lowest, so packing is a reinterpretation of the same bytes."""
        return np.dtype(f"<u{self.lane_bits // 8}")

    def pack(self, entries):
        """Entries (``(n, lanes)`` integers, signed or not) to ``(n, entry_words)`` words."""
        entries = np.asarray(entries, np.int64).reshape(-1, self.lanes)
        lanes = np.zeros((len(entries), self.entry_words * 32 // self.lane_bits), self._lane_type)
        lanes[:, :self.lanes] = entries & ((1 << self.lane_bits) - 1)
        return lanes.view("<u4").astype(np.int64)

    def unpack(self, words, signed=True):
        """Inverse of `pack`: ``(n, entry_words)`` words to ``(n, lanes)`` lane values."""
        words = (np.asarray(words, np.int64).reshape(-1, self.entry_words) & 0xFFFF_FFFF)
        lanes = words.astype("<u4").view(self._lane_type)[:, :self.lanes]
        if signed:
            lanes = lanes.view(self._lane_type.str.replace("u", "i"))
        return lanes.astype(np.int64)

    def wrap(self, entries, signed=True):
        """What the memory holds once the host writes `entries` and what it reads back:
        each lane's low `lane_bits` bits, signed or not; ``unpack(pack(entries))``
        without the words in between."""
        return self.lane_values(entries, signed).astype(np.int64)

    def lane_values(self, entries, signed=True):
        """`wrap`'s values in the lane's own integer type (a copy only where the type
        differs), for a caller that stores them into a wider array anyway."""
        lane = self._signed_lane if signed else self._unsigned_lane
        entries = np.asarray(entries)
        if entries.dtype == lane:
            return entries
        return np.asarray(entries, np.int64).astype(lane)                  # casts wrap

    def address(self, entry, word=0):
        if not 0 <= entry < self.depth:
            raise IndexError(f"{self.name} entry {entry} outside 0..{self.depth - 1}")
        if not 0 <= word < self.entry_words:
            raise IndexError(f"{self.name} word {word} outside 0..{self.entry_words - 1}")
        return self.base + entry * self.entry_stride + 4 * word


@functools.lru_cache(maxsize=64)
def memory_windows(config):
    """The memory windows of `config`, by name: what each memory's entry holds and where
    the host finds it (`golden.config.AccelConfig` checks that each fits its span).
    Worked out once per config and read-only (every bus and driver of a run shares them)."""
    windows = [
        MemoryWindow("imem", 1 * WINDOW_SPAN, config.imem_depth, 32, 4),
        MemoryWindow("wmem", 2 * WINDOW_SPAN, config.wmem_depth, WEIGHT_BITS,
                     config.tiles * config.cols),
        MemoryWindow("amem", 3 * WINDOW_SPAN, config.amem_depth, INPUT_BITS, config.rows),
        MemoryWindow("psum", 4 * WINDOW_SPAN, config.psum_depth, ACC_BITS, config.cols),
        MemoryWindow("qmem", 5 * WINDOW_SPAN, config.qmem_depth, 32,
                     QPARAM_BITS // 32 * config.cols),
    ]
    return MappingProxyType({w.name: w for w in windows})
