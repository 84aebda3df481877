"""Run a quantised network on the RTL accelerator (Verilator + cocotb + firmware driver)."""

import pickle

import numpy as np

import rtl

from .runner import build_dir_for, run_cocotb

__all__ = ["run_network_on_rtl", "RTLRunError"]


class RTLRunError(RuntimeError):
    pass


def run_network_on_rtl(qnet, inputs, config, batch=None, log=print):
    """Outputs (int8) and summed counters of `inputs` through `qnet` on the RTL of `config`."""
    build_dir = build_dir_for("accelerator", config)
    verilog = rtl.generate_verilog(rtl.Accelerator(config), build_dir, "accelerator")
    job = build_dir / "network_job.pkl"
    with open(job, "wb") as f:
        pickle.dump({"qnet": qnet, "inputs": np.asarray(inputs), "batch": batch}, f)
    run = run_cocotb(verilog=verilog, toplevel="accelerator", test_module="sim.network_tb",
                     build_dir=build_dir, env={"TESSERA_JOB": str(job)}, log=log)
    if run.failed or "outputs" not in run.results:
        raise RTLRunError(f"RTL run failed; last lines of {run.log_path}:\n{run.log_tail()}")
    return np.array(run.results["outputs"], np.int64), run.results["counters"]
