"""A backdoor into the simulated accelerator's memories, for `--fast-load`.

The driver moves memory images through the bus's optional `store_entries` and
`load_entries` (see `firmware.runtime.driver`). Over AXI4-Lite each word is a
transaction; here each entry is one write of the Verilog memory array the RTL builds
from the same `golden.interface.MemoryWindow` (`rtl/accelerator.py`: one array per window,
lane i at bits ``i * lane_bits``; `sim.runner.PUBLIC` opens them to VPI), so the memory
holds what the words would have left.
Only between runs: the host's own path refuses memory access while the sequencer runs,
and the driver never loads then.
"""

import numpy as np

from golden import regmap

from .axi_transport import CocotbAxiBus, accelerator_of

__all__ = ["BackdoorAxiBus"]


def _entry_value(window, lanes):
    """An entry's lanes as the integer the memory array holds."""
    words = window.pack(lanes[None])[0]
    return int.from_bytes(b"".join(int(w).to_bytes(4, "little") for w in words), "little")


class BackdoorAxiBus(CocotbAxiBus):
    """The AXI4-Lite bus, with memory images written and read through the simulator's
    handles on the memory arrays instead of bus transactions (registers, start and
    done still go over AXI)."""

    def __init__(self, dut, config, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.windows = regmap.memory_windows(config)
        self.arrays = {name: getattr(accelerator_of(dut), name) for name in self.windows}

    async def store_entries(self, memory, start, entries, lanes):
        window, array = self.windows[memory], self.arrays[memory]
        keep = window.lanes * window.lane_bits - lanes * window.lane_bits     # bits above
        low_mask = (1 << (lanes * window.lane_bits)) - 1
        for i, row in enumerate(np.asarray(entries, np.int64)):
            value = _entry_value(window, row) & low_mask
            if keep > 0:
                value |= array[start + i].value.to_unsigned() & ~low_mask
            array[start + i].value = value

    async def load_entries(self, memory, start, count, signed=True):
        window, array = self.windows[memory], self.arrays[memory]
        values = [array[start + i].value.to_unsigned() for i in range(count)]
        words = np.array([[(v >> (32 * w)) & 0xFFFF_FFFF for w in range(window.entry_words)]
                          for v in values], np.int64).reshape(count, window.entry_words)
        return window.unpack(words, signed=signed)
