"""cocotb testbench: the built-in self test (`firmware.runtime.self_test`) over AXI4-Lite on
an accelerator built with fault injection, its stuck cells from ``TESSERA_FAULTS``; the map
it finds goes to ``TESSERA_RESULTS`` for the caller to compare with the injected one."""

import time

import cocotb

from firmware.runtime.self_test import self_test

from .accelerator_tb import AcceleratorBench, load_faults, load_settings, save_figures


@cocotb.test()
async def self_test_finds_stuck_cells(dut):
    config, _, rng = load_settings()
    bench = AcceleratorBench(dut, config, rng, load_faults())
    await bench.start()
    started = time.monotonic()
    report = await self_test(bench.driver)
    save_figures("self_test", {"found": report.faults.to_json(), "runs": report.runs,
                               "device_cycles": report.device_cycles,
                               "ambiguous_weights": report.ambiguous_weights,
                               "wall_seconds": time.monotonic() - started})
