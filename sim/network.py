"""Run a compiled executable on the RTL accelerator (Verilator + cocotb + firmware driver):
the RTL `Target`, returning the same `NetworkRun` as the golden and board targets."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import rtl
from firmware.runtime.executable import load_executable
from firmware.runtime.run import NetworkRun
from firmware.runtime.targets import TargetError

from .runner import inputs_file, run_component

__all__ = ["RTLTarget", "run_executable_on_rtl", "RTLRunError", "check_backdoor"]


class RTLRunError(TargetError):
    """The simulation failed; the message is one line naming the cause and the log."""


def _first_error(log):
    """The line of a cocotb log that says what went wrong, or a summary of it."""
    for line in log.splitlines():
        if any(mark in line for mark in ("Error:", "Error(", "error:", "FAIL")):
            return " ".join(line.split())[:300]
    return "no results were written"


def run_executable_on_rtl(executable_path, x_q, log=print, fast_load=False):
    """Run the int8 samples `x_q` through the executable file on the RTL of its config;
    `fast_load` writes and reads memory images through the simulator's backdoor
    (`sim.backdoor`), leaving the memories as AXI4-Lite would."""
    exe = load_executable(executable_path)
    with inputs_file(exe.config, "accelerator", x_q) as inputs:
        run = run_component(lambda: rtl.Accelerator(exe.config), exe.config, "accelerator",
                            "sim.network_tb",
                            {"TESSERA_EXECUTABLE": str(Path(executable_path).resolve()),
                             "TESSERA_INPUTS": str(inputs),
                             "TESSERA_FAST_LOAD": "1" if fast_load else "0"}, log,
                            hdl_clock="clk")
    if run.failed or "outputs" not in run.results:
        raise RTLRunError(f"RTL run failed: {_first_error(run.log_tail(200))} (the "
                          f"simulator's log: {run.log_path})")
    r = run.results
    return NetworkRun(np.array(r["outputs"], np.int64), r["counters"], r["setup_counters"],
                      r["host_words"], r["runs"], r["batches"])


@dataclass(frozen=True)
class RTLTarget:
    """The executable's config elaborated, Verilated and driven by cocotb through the AXI
    transport (memory images through the backdoor with `fast_load`); `log` takes the
    simulator's progress lines."""
    log: object = print
    fast_load: bool = False
    name = "rtl"

    def run(self, exe, x_q, progress=None):
        with tempfile.TemporaryDirectory(prefix="tessera_rtl_") as folder:
            path = exe.save(Path(folder) / "run.tessera")
            run = run_executable_on_rtl(path, x_q, self.log, self.fast_load)
        if progress:
            progress(len(x_q), len(x_q))
        return run


def check_backdoor(config, seed=1, log=print):
    """Run `sim.backdoor_tb` on the accelerator of `config`: a `CocotbRun` whose results
    count the entries read back and those that differ from the golden bus."""
    return run_component(lambda: rtl.Accelerator(config), config, "accelerator",
                         "sim.backdoor_tb", {"TESSERA_SEED": str(seed)}, log, hdl_clock="clk")
