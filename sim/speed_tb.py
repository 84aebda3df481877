"""cocotb module for bench/sim_speed.py: load TESSERA_PROGRAM, run it, time the run.
The clock is the `sim.axi_transport.DesignClock` the runner set up (TESSERA_CLOCK)."""

import json
import os
import time

import cocotb

import golden
from firmware.runtime.driver import Driver
from golden import isa

from .axi_transport import CocotbAxiBus, start_accelerator
from .runner import CLOCK_NS


@cocotb.test()
async def run_long_program(dut):
    config = golden.AccelConfig.from_json(os.environ["TESSERA_CONFIG"])
    words = json.loads(os.environ["TESSERA_PROGRAM"])
    master, clock = await start_accelerator(dut, CLOCK_NS)
    driver = Driver(CocotbAxiBus(master, dut.done, clock, max_wait_cycles=1 << 40))
    assert await driver.discover() == config
    await driver.load_program([isa.decode(words[i:i + 4]) for i in range(0, len(words), 4)])
    started = time.monotonic()
    status = await driver.run(timeout_s=1e3)
    wall = time.monotonic() - started
    with open(os.environ["TESSERA_RESULTS"], "w") as f:
        json.dump({"speed": {"cycles": status.counters["cycles"], "wall_seconds": wall}}, f)
