"""Check the RTL accelerator against the golden device model on Verilator."""

import rtl

from .runner import run_component

__all__ = ["run_accelerator_check"]


def run_accelerator_check(config, programs=200, seed=1, log=print):
    """Run `sim.accelerator_tb` on the accelerator of `config`; returns a `CocotbRun`."""
    return run_component(lambda: rtl.Accelerator(config), config, "accelerator", "sim.accelerator_tb",
                         {"TESSERA_PROGRAMS": str(programs), "TESSERA_SEED": str(seed)}, log)
