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

__all__ = ["RTLTarget", "run_executable_on_rtl", "RTLRunError"]


class RTLRunError(TargetError):
    """The simulation failed; the message is one line naming the cause and the log."""


def _first_error(log):
    """The line of a cocotb log that says what went wrong, or a summary of it."""
    for line in log.splitlines():
        if any(mark in line for mark in ("Error:", "Error(", "error:", "FAIL")):
            return " ".join(line.split())[:300]
    return "no results were written"


def run_executable_on_rtl(executable_path, x_q, log=print):
    """Run the int8 samples `x_q` through the executable file on the RTL of its config."""
    exe = load_executable(executable_path)
    with inputs_file(exe.config, "accelerator", x_q) as inputs:
        run = run_component(lambda: rtl.Accelerator(exe.config), exe.config, "accelerator",
                            "sim.network_tb",
                            {"TESSERA_EXECUTABLE": str(Path(executable_path).resolve()),
                             "TESSERA_INPUTS": str(inputs)}, log)
    if run.failed or "outputs" not in run.results:
        raise RTLRunError(f"RTL run failed: {_first_error(run.log_tail(200))} (the "
                          f"simulator's log: {run.log_path})")
    r = run.results
    return NetworkRun(np.array(r["outputs"], np.int64), r["counters"], r["setup_counters"],
                      r["host_words"], r["runs"], r["batches"])


@dataclass(frozen=True)
class RTLTarget:
    """The executable's config elaborated, Verilated and driven by cocotb through the AXI
    transport; `log` takes the simulator's progress lines."""
    log: object = print
    name = "rtl"

    def run(self, exe, x_q, progress=None):
        with tempfile.TemporaryDirectory(prefix="tessera_rtl_") as folder:
            path = exe.save(Path(folder) / "run.tessera")
            run = run_executable_on_rtl(path, x_q, self.log)
        if progress:
            progress(len(x_q), len(x_q))
        return run
