"""Check the RTL accelerator against the golden device model on Verilator."""

import rtl

from .runner import run_component

__all__ = ["run_accelerator_check", "FAULTY_TOPLEVEL"]

FAULTY_TOPLEVEL = "faulty_accelerator"      # the build with stuck-cell ports


TESTBENCHES = {"random_programs": "sim.accelerator_tb", "errors": "sim.accelerator_errors_tb",
               "self_test": "sim.self_test_tb"}


def run_accelerator_check(config, programs=200, seed=1, order=("random_programs", "errors"),
                          log=print, faults=None, golden_faults=None):
    """Run the accelerator testbenches (`TESTBENCHES`, in `order`, one simulation: a test
    finds the tiles as the one before left them) on the accelerator of `config`; returns a
    `CocotbRun`. With `faults` (a `golden.faults.FaultMap`) the design is built with fault
    injection and those cells stuck, on the golden device too unless `golden_faults` gives
    it others."""
    env = {"TESSERA_PROGRAMS": str(programs), "TESSERA_SEED": str(seed)}
    tests = [TESTBENCHES[name] for name in order]
    if faults is None:
        return run_component(lambda: rtl.Accelerator(config), config, "accelerator", tests,
                             env, log, hdl_clock="clk")
    env["TESSERA_FAULTS"] = faults.to_json()
    if golden_faults is not None:
        env["TESSERA_GOLDEN_FAULTS"] = golden_faults.to_json()
    return run_component(lambda: rtl.Accelerator(config, fault_injection=True), config,
                         FAULTY_TOPLEVEL, tests, env, log, hdl_clock="clk")
