"""cocotb module: run a compiled network through the firmware driver on the RTL.

Environment: TESSERA_JOB, a pickle of {"qnet", "inputs", "batch"}; TESSERA_RESULTS.
"""

import json
import os
import pickle

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from firmware.driver import Driver
from firmware.runtime import run_network

from .axi_transport import CocotbAxiBus

CLOCK_NS = 10


@cocotb.test()
async def network_on_rtl(dut):
    with open(os.environ["TESSERA_JOB"], "rb") as f:
        job = pickle.load(f)
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axi_"), dut.clk, dut.rst)
    for interface in (master.write_if, master.read_if):
        interface.log.setLevel("WARNING")
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    driver = Driver(CocotbAxiBus(master, dut.done, CLOCK_NS))
    await driver.discover()
    run = await run_network(driver, job["qnet"], job["inputs"], job.get("batch"),
                            progress=lambda done, total: dut._log.info("%d/%d samples", done, total))
    with open(os.environ["TESSERA_RESULTS"], "w") as f:
        json.dump({"outputs": run.outputs.tolist(), "counters": run.counters,
                   "setup_counters": run.setup_counters, "runs": run.runs, "batch": run.batch}, f)
