"""Run a compiled executable on the RTL accelerator (Verilator + cocotb + firmware driver)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import rtl
from firmware.runtime.executable import load_executable

from .runner import inputs_file, run_component

__all__ = ["run_executable_on_rtl", "RTLRun", "RTLRunError"]


class RTLRunError(RuntimeError):
    """The simulation failed; the message is one line naming the cause and the log."""


def _first_error(log):
    """The line of a cocotb log that says what went wrong, or a summary of it."""
    for line in log.splitlines():
        if any(mark in line for mark in ("Error:", "Error(", "error:", "FAIL")):
            return " ".join(line.split())[:300]
    return "no results were written"


@dataclass
class RTLRun:
    outputs: np.ndarray          # int8, (samples, outputs)
    counters: dict               # device counters summed over the inference runs
    setup_counters: dict
    host_words: dict             # {"written"/"read": {memory: words}}
    batches: list
    runs: int


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
    return RTLRun(np.array(r["outputs"], np.int64), r["counters"], r["setup_counters"],
                  r["host_words"], r["batches"], r["runs"])
