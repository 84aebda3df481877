"""cocotb module: the backdoor (`sim.backdoor`) leaves every memory as AXI4-Lite words do.

Each memory is filled with random entries over AXI4-Lite, then random runs are written
through the backdoor (whole entries, and for wmem the leading lanes of an entry only),
and the whole memory is read back over AXI4-Lite and through the backdoor. Both must
equal the golden bus model given the same writes. Figures go to TESSERA_RESULTS.
"""

import json
import os

import cocotb
import numpy as np

from firmware.runtime.driver import Driver
from firmware.runtime.transports import GoldenBus
from golden import AccelConfig, regmap
from golden.device import Device

from .axi_transport import CocotbAxiBus, start_accelerator
from .backdoor import BackdoorAxiBus
from .runner import CLOCK_NS
RUNS_PER_MEMORY = 6


@cocotb.test()
async def backdoor_leaves_memories_as_axi_does(dut):
    config = AccelConfig.from_json(os.environ["TESSERA_CONFIG"])
    rng = np.random.default_rng(int(os.environ.get("TESSERA_SEED", "1")))
    master, clock = await start_accelerator(dut, CLOCK_NS)
    words = Driver(CocotbAxiBus(master, dut.done, clock))
    backdoor = Driver(BackdoorAxiBus(dut, config, master, dut.done, clock))
    model = Driver(GoldenBus(Device(config)))
    for driver in (words, backdoor, model):
        await driver.discover()
    entries = mismatches = 0
    for name, window in regmap.memory_windows(config).items():
        bits = window.lane_bits
        low, high = (0, 1 << bits) if name in ("imem", "qmem") else (-(1 << (bits - 1)), 1 << (bits - 1))
        fill = rng.integers(low, high, (window.depth, window.lanes))
        for driver in (words, model):
            await driver.write_entries(name, 0, fill)
        for _ in range(RUNS_PER_MEMORY):
            start = int(rng.integers(0, window.depth))
            count = int(rng.integers(1, window.depth - start + 1))
            lanes = int(rng.integers(1, window.lanes + 1)) if name == "wmem" else None
            values = rng.integers(low, high, (count, window.lanes))
            for driver in (backdoor, model):
                await driver.write_entries(name, start, values, lanes=lanes)
        expected = await model.read_entries(name, 0, window.depth)
        for driver in (words, backdoor):
            seen = await driver.read_entries(name, 0, window.depth)
            mismatches += int(np.count_nonzero(np.any(seen != expected, axis=1)))
        entries += 2 * window.depth
    with open(os.environ["TESSERA_RESULTS"], "w") as f:
        json.dump({"backdoor": {"entries": entries, "mismatches": mismatches,
                                "memories": len(regmap.memory_windows(config))}}, f)
    assert mismatches == 0, f"{mismatches} entries read back differ from the golden bus"
