"""Run a quantised network on the RTL accelerator (Verilator + cocotb + firmware driver)."""

import pickle

import numpy as np

import rtl

from .runner import build_dir_for, run_component

__all__ = ["run_network_on_rtl", "RTLRunError"]


class RTLRunError(RuntimeError):
    pass


def run_network_on_rtl(qnet, inputs, config, batch=None, log=print):
    """Outputs (int8) and summed counters of `inputs` through `qnet` on the RTL of `config`."""
    job = build_dir_for("accelerator", config) / "network_job.pkl"
    job.parent.mkdir(parents=True, exist_ok=True)
    with open(job, "wb") as f:
        pickle.dump({"qnet": qnet, "inputs": np.asarray(inputs), "batch": batch}, f)
    run = run_component(rtl.Accelerator(config), "accelerator", "sim.network_tb",
                        {"TESSERA_JOB": str(job)}, log)
    if run.failed or "outputs" not in run.results:
        raise RTLRunError(f"RTL run failed; last lines of {run.log_path}:\n{run.log_tail()}")
    return np.array(run.results["outputs"], np.int64), run.results["counters"]
