"""Check the RTL accelerator against the golden device model on Verilator."""

import json

import rtl

from .runner import build_dir_for, run_cocotb

__all__ = ["run_accelerator_check"]


def run_accelerator_check(config, programs=200, seed=1, log=print):
    """Generate the accelerator's Verilog for `config`, run `sim.accelerator_tb`."""
    build_dir = build_dir_for("accelerator", config)
    verilog = rtl.generate_verilog(rtl.Accelerator(config), build_dir, "accelerator")
    env = {"TESSERA_CONFIG": json.dumps(config.to_dict()),
           "TESSERA_PROGRAMS": str(programs), "TESSERA_SEED": str(seed)}
    return run_cocotb(verilog=verilog, toplevel="accelerator", test_module="sim.accelerator_tb",
                      build_dir=build_dir, env=env, log=log)
