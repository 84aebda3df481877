"""Run an executable through the UART bridge in simulation (the serial transport's test bed)."""

from pathlib import Path

from firmware.runtime.executable import load_executable
from rtl.uart_top import UartAccelerator

from .runner import inputs_file, run_component

__all__ = ["run_executable_over_uart"]


def run_executable_over_uart(executable_path, x_q, divisor=8, log=print):
    """Outputs, counters and figures of int8 samples `x_q` through the executable file,
    over the simulated UART."""
    config = load_executable(executable_path).config
    with inputs_file(config, "uart_accelerator", x_q) as inputs:
        return run_component(lambda: UartAccelerator(config, divisor), config, "uart_accelerator",
                             "sim.uart_tb",
                             {"TESSERA_EXECUTABLE": str(Path(executable_path).resolve()),
                              "TESSERA_INPUTS": str(inputs), "TESSERA_DIVISOR": str(divisor)},
                             log, build_key=f"divisor={divisor}")
