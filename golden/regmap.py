"""The host's view of the accelerator: CSR offsets, memory windows, counters.

Byte addresses on a 32-bit AXI4-Lite bus. Memories are windows of 32-bit words; entry
``e`` of a memory starts at ``base + e * entry_stride``; a word beyond an entry's
width, a hole in the map, or a memory access while the sequencer runs answers SLVERR.
"""

from dataclasses import dataclass

import numpy as np

from .config import ACC_BITS, INPUT_BITS, MEMORY_FIELDS, WEIGHT_BITS, ConfigError

__all__ = ["ID_VALUE", "VERSION", "CSR", "CAPABILITIES", "COUNTERS", "COUNTER_BASE",
           "MemoryWindow", "memory_windows", "CONTROL_START", "CONTROL_SOFT_RESET",
           "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR", "decode_status", "ADDRESS_BITS"]

ID_VALUE = 0x5445_5353          # "TESS"
VERSION = 0x0003_0000           # 3.0: the ADC shift per MVM (2.0: tile ranges, pipelined MVM)
ADDRESS_BITS = 23
WINDOW_SPAN = 0x10_0000     # 1 MiB per memory window

CSR = {"ID": 0x00, "VERSION": 0x04, "CONTROL": 0x80, "STATUS": 0x84}

# Capability registers: the config, one field per word, so a driver discovers the hardware.
CAPABILITIES = {name: 0x10 + 4 * i for i, name in enumerate(
    ("tiles", "rows", "cols", "cell_bits", "dac_bits", "adc_bits", "adc_share")
    + MEMORY_FIELDS)}

CONTROL_START = 1 << 0          # write 1: run from pc 0 (clears counters and status)
CONTROL_SOFT_RESET = 1 << 1     # write 1: stop, clear status and counters; memories
                                # and tile weights kept

STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
STATUS_ERROR = 1 << 2
# STATUS[15:8] error code (golden.isa.ErrorCode), STATUS[31:16] pc of the failing instruction

COUNTER_BASE = 0x100
COUNTERS = (
    "cycles",               # cycles from start to HALT or error
    "tile_busy_cycles",     # summed over tiles: cycles converting (steps x adc_share per product)
    "instructions",         # instructions executed, HALT included
    "tile_programs",        # PROGRAM instructions
    "mvm_products",         # vector x tile products
    "dac_conversions",      # row DAC activations (rows x steps per product)
    "adc_conversions",      # column-slice conversions (cols x slices x steps per product)
    "cell_reads",           # cells sensed (2 x rows x cols x slices x steps per product)
    "cell_writes",          # cells written (2 x rows x cols x slices per PROGRAM)
    "imem_reads", "wmem_reads", "amem_reads", "amem_writes",
    "psum_reads", "psum_writes",
    "qmem_reads",           # one entry holds the parameters of cols channels
    "requantizations",      # output channels requantised
)


def counter_address(name):
    return COUNTER_BASE + 4 * COUNTERS.index(name)


@dataclass(frozen=True)
class MemoryWindow:
    name: str
    base: int
    depth: int
    lane_bits: int          # width of one lane (host writes whole words)
    lanes: int              # lanes per entry

    @property
    def entry_words(self):
        return -(-self.lanes * self.lane_bits // 32)

    @property
    def contiguous(self):
        """Whether an entry's words fill its stride, so a run of entries is one run of words."""
        return self.entry_words * 4 == self.entry_stride

    @property
    def entry_stride(self):
        """Bytes between entries: the entry's words rounded up to a power of two."""
        return 4 * (1 << (self.entry_words - 1).bit_length())

    @property
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

    def address(self, entry, word=0):
        if not 0 <= entry < self.depth:
            raise IndexError(f"{self.name} entry {entry} outside 0..{self.depth - 1}")
        if not 0 <= word < self.entry_words:
            raise IndexError(f"{self.name} word {word} outside 0..{self.entry_words - 1}")
        return self.base + entry * self.entry_stride + 4 * word


def memory_windows(config):
    """The memory windows of `config`, by name."""
    windows = [
        MemoryWindow("imem", 1 * WINDOW_SPAN, config.imem_depth, 32, 4),
        MemoryWindow("wmem", 2 * WINDOW_SPAN, config.wmem_depth, WEIGHT_BITS,
                     config.tiles * config.cols),
        MemoryWindow("amem", 3 * WINDOW_SPAN, config.amem_depth, INPUT_BITS, config.rows),
        MemoryWindow("psum", 4 * WINDOW_SPAN, config.psum_depth, ACC_BITS, config.cols),
        MemoryWindow("qmem", 5 * WINDOW_SPAN, config.qmem_depth, 32, 4 * config.cols),
    ]
    for w in windows:
        if w.depth * w.entry_stride > WINDOW_SPAN:
            raise ConfigError(f"AccelConfig.{w.name}_depth={w.depth} entries of {w.entry_stride} "
                              f"bytes overflow the 1 MiB {w.name} window")
    return {w.name: w for w in windows}


def decode_status(value):
    return dict(busy=bool(value & STATUS_BUSY), done=bool(value & STATUS_DONE),
                error=bool(value & STATUS_ERROR), error_code=(value >> 8) & 0xFF,
                error_pc=(value >> 16) & 0xFFFF)
