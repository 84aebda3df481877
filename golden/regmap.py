"""The host's view of the accelerator: CSR offsets, memory windows, counters.

Byte addresses on a 32-bit AXI4-Lite bus. Memories are windows of 32-bit words; entry
``e`` of a memory starts at ``base + e * entry_stride``; a word beyond an entry's
width, a hole in the map, or a memory access while the sequencer runs answers SLVERR.
"""

import functools

from .config import MEMORY_FIELDS
from .interface import STATUS_FIELDS, WINDOW_SPAN, MemoryWindow, memory_windows, unpack_fields

__all__ = ["ID_VALUE", "VERSION", "CSR", "CAPABILITY_BASE", "CAPABILITIES",
           "COUNTERS", "COUNTER_BASE",
           "MemoryWindow", "memory_windows", "CONTROL_START", "CONTROL_SOFT_RESET",
           "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR", "decode_status", "ADDRESS_BITS",
           "WINDOW_SPAN"]

ID_VALUE = 0x5445_5353          # "TESS"
VERSION = 0x0003_0100           # 3.1: requant_lanes (3.0: the ADC shift per MVM; 2.0: tile
                                # ranges, pipelined MVM)
ADDRESS_BITS = 23

CSR = {"ID": 0x00, "VERSION": 0x04, "CONTROL": 0x80, "STATUS": 0x84}

# Capability registers: the config, one field per word, so a driver discovers the hardware
# (consecutive words: one burst reads them all).
CAPABILITY_BASE = 0x10
CAPABILITIES = {name: CAPABILITY_BASE + 4 * i for i, name in enumerate(
    ("tiles", "rows", "cols", "cell_bits", "dac_bits", "adc_bits", "adc_share")
    + MEMORY_FIELDS + ("requant_lanes",))}

CONTROL_START = 1 << 0          # write 1: run from pc 0 (clears counters and status)
CONTROL_SOFT_RESET = 1 << 1     # write 1: stop, clear status and counters; memories
                                # and tile weights kept

# STATUS: golden.interface.STATUS_FIELDS
STATUS_BUSY, STATUS_DONE, STATUS_ERROR = (1 << STATUS_FIELDS[name][0]
                                          for name in ("busy", "done", "error"))

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


def decode_status(value):
    return dict(_status_items(value))


@functools.lru_cache(maxsize=1 << 10)
def _status_items(value):
    """STATUS's fields, flags as bools: decoded once per value (a driver reads it per run)."""
    fields = unpack_fields(STATUS_FIELDS, value)
    return tuple((name, bool(v) if STATUS_FIELDS[name][1] == 1 else v)
                 for name, v in fields.items())
