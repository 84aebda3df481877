"""cocotb module: run a compiled executable through the firmware driver on the RTL.

Environment: TESSERA_EXECUTABLE (a file `Executable.save` wrote), TESSERA_INPUTS (an
.npy of int8 samples), TESSERA_RESULTS; TESSERA_FAST_LOAD=1 moves memory images through
the backdoor (`sim.backdoor`) instead of AXI4-Lite.
"""

import json
import os

import cocotb
import numpy as np

from firmware.runtime.driver import Driver
from firmware.runtime.executable import load_executable
from firmware.runtime.run import run_executable

from .axi_transport import CocotbAxiBus, start_accelerator
from .backdoor import BackdoorAxiBus
from .runner import CLOCK_NS


@cocotb.test()
async def network_on_rtl(dut):
    exe = load_executable(os.environ["TESSERA_EXECUTABLE"])
    x_q = np.load(os.environ["TESSERA_INPUTS"], allow_pickle=False)
    master, clock = await start_accelerator(dut, CLOCK_NS)
    if os.environ.get("TESSERA_FAST_LOAD") == "1":
        bus = BackdoorAxiBus(dut, exe.config, master, dut.done, clock)
    else:
        bus = CocotbAxiBus(master, dut.done, clock)
    driver = Driver(bus)
    await driver.discover()
    run = await run_executable(driver, exe, x_q,
                               progress=lambda done, total: dut._log.info("%d/%d samples", done, total))
    with open(os.environ["TESSERA_RESULTS"], "w") as f:
        json.dump({"outputs": run.outputs.tolist(), "counters": run.counters,
                   "setup_counters": run.setup_counters, "host_words": run.host_words,
                   "runs": run.runs, "batches": run.batches}, f)
