"""Run an executable through the UART bridge in simulation (the serial transport's test bed)."""

from pathlib import Path

import numpy as np

from firmware.executable import load_executable
from rtl.uart_top import UartAccelerator

from .runner import build_dir_for, run_component

__all__ = ["run_executable_over_uart"]


def run_executable_over_uart(executable_path, x_q, divisor=8, log=print):
    """Outputs, counters and figures of int8 samples `x_q` through the executable file,
    over the simulated UART."""
    config = load_executable(executable_path).config
    job = build_dir_for("uart_accelerator", config) / "network_inputs.npy"
    job.parent.mkdir(parents=True, exist_ok=True)
    np.save(job, np.asarray(x_q, np.int64), allow_pickle=False)
    return run_component(lambda: UartAccelerator(config, divisor), config, "uart_accelerator", "sim.uart_tb",
                         {"TESSERA_EXECUTABLE": str(Path(executable_path).resolve()),
                          "TESSERA_INPUTS": str(job), "TESSERA_DIVISOR": str(divisor)}, log,
                         build_key=f"divisor={divisor}")
