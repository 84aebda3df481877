"""Run a network through the UART bridge in simulation (the serial transport's test bed)."""

import pickle

import numpy as np

from rtl.uart_top import UartAccelerator

from .runner import build_dir_for, run_component

__all__ = ["run_network_over_uart"]


def run_network_over_uart(qnet, inputs, config, divisor=8, log=print):
    """Outputs, counters and figures of `inputs` through `qnet`, over the simulated UART."""
    job = build_dir_for("uart_accelerator", config) / "network_job.pkl"
    job.parent.mkdir(parents=True, exist_ok=True)
    with open(job, "wb") as f:
        pickle.dump({"qnet": qnet, "inputs": np.asarray(inputs)}, f)
    run = run_component(UartAccelerator(config, divisor), "uart_accelerator", "sim.uart_tb",
                        {"TESSERA_JOB": str(job), "TESSERA_DIVISOR": str(divisor)}, log)
    return run
