"""Check the RTL accelerator against the golden device model on Verilator."""

import rtl

from .runner import run_component

__all__ = ["run_accelerator_check"]


TESTBENCHES = {"random_programs": "sim.accelerator_tb", "errors": "sim.accelerator_errors_tb"}


def run_accelerator_check(config, programs=200, seed=1, order=("random_programs", "errors"),
                          log=print):
    """Run the accelerator testbenches (`TESTBENCHES`, in `order`, one simulation: a test
    finds the tiles as the one before left them) on the accelerator of `config`; returns a
    `CocotbRun`."""
    return run_component(lambda: rtl.Accelerator(config), config, "accelerator",
                         [TESTBENCHES[name] for name in order],
                         {"TESSERA_PROGRAMS": str(programs), "TESSERA_SEED": str(seed)}, log)
