"""Simulated cycles per second of a long accelerator program: under cocotb (the Python
testbench sleeping on the done line) and under a C++ harness with no Python.

    .venv/bin/python bench/sim_speed.py [--vectors N]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import golden
import rtl
from golden import isa, regmap
from golden.device import Device
from sim.runner import BUILD_ROOT, VERILATOR_ARGS, make_flags, run_cocotb, verilator_bin_dir


def long_program(config, vectors):
    """Every tile programmed, then one MVM of `vectors` vectors, K-reduced over all tiles
    (a power of two of them)."""
    ktiles = 1 << (config.tiles.bit_length() - 1)
    program = [isa.program(0, 0, tiles=config.tiles)]
    program.append(isa.mvm(0, vectors, 0, 0, src_stride=0, dst_stride=0, k_stride=1,
                           ktiles=ktiles))
    return program + [isa.halt()]


def cocotb_speed(config, program, verilog, build_dir, clock="gpi"):
    """The program's run under cocotb (`sim.axi_transport.DesignClock`): on cocotb's GPI
    clock throughout ("gpi"), on the clock made in the Verilog (`sim.runner.clocked_wrapper`,
    Verilator's timing mode) throughout ("hdl"), or on the GPI clock while the host moves
    data and the Verilog's while the program runs ("switched", the tests and
    `--backend rtl`)."""
    env = {"TESSERA_CONFIG": config.to_json(),
           "TESSERA_PROGRAM": json.dumps(isa.encode_program(program))}
    if clock != "gpi":
        env["TESSERA_CLOCK"] = clock
    run = run_cocotb(verilog=verilog, toplevel="accelerator", test_module="sim.speed_tb",
                     build_dir=build_dir, env=env, optimize=True,
                     hdl_clock=None if clock == "gpi" else "clk")
    if run.failed:
        sys.exit(f"cocotb run failed:\n{run.log_tail()}")
    return run.results["speed"]


def harness_speed(verilog, program, build_dir):
    os.environ["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{os.environ['PATH']}"
    os.environ["MAKEFLAGS"] = make_flags(optimize=True)
    harness = Path(__file__).with_name("harness_main.cpp")
    binary = build_dir / "Vaccelerator"
    if not binary.exists() or binary.stat().st_mtime < Path(verilog).stat().st_mtime:
        print("verilating the C++ harness ...", flush=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        with open(build_dir / "build.log", "w") as log:    # Verilator's lint warnings go here
            subprocess.run(["verilator", "--cc", "--exe", "--build", "-j", "2", "-Mdir",
                            str(build_dir), "--top-module", "accelerator", *VERILATOR_ARGS,
                            str(harness), str(verilog)], check=True, stdout=log, stderr=log)
    words = [f"{w:08x}" for w in isa.encode_program(program)]
    imem = regmap.memory_windows(golden.AccelConfig())["imem"].base
    out = subprocess.run([str(binary), hex(imem), *words], check=True, capture_output=True,
                         text=True).stdout
    fields = dict(item.split("=") for item in out.split())
    return {"cycles": int(fields["cycles"]), "wall_seconds": float(fields["wall_s"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=20000,
                        help="vectors of the long MVM (default 20000)")
    parser.add_argument("--samples", type=int, default=720,
                        help="samples of the network run on the RTL (default 720)")
    args = parser.parse_args()
    config = golden.AccelConfig()
    program = long_program(config, args.vectors)
    device = Device(config)
    device.load_program(isa.encode_program(program))
    expected_cycles = device.run().counters["cycles"]

    build = BUILD_ROOT / "bench"
    build.mkdir(parents=True, exist_ok=True)
    verilog = rtl.generate_verilog(rtl.Accelerator(config), build, "accelerator")
    under_cocotb = cocotb_speed(config, program, verilog, build / "cocotb")
    hdl_clock = cocotb_speed(config, program, verilog, build / "cocotb_hdl_clock", "hdl")
    switched = cocotb_speed(config, program, verilog, build / "cocotb_hdl_clock", "switched")
    harness = harness_speed(verilog, program, build / "harness")
    rate = lambda run: run["cycles"] / run["wall_seconds"]
    harness_rate = harness["cycles"] / harness["wall_seconds"]
    print(f"\nconfig {config.name}, program of {expected_cycles:,} device cycles (golden)")
    print(f"  {'':<40}{'cycles':>12}{'wall s':>10}{'cycles/s':>14}{'/ harness':>11}")
    for name, run in [("cocotb, GPI clock throughout", under_cocotb),
                      ("cocotb, the HDL's clock throughout", hdl_clock),
                      ("cocotb, the HDL's clock while it runs", switched),
                      ("C++ harness, no Python", harness)]:
        print(f"  {name:<40}{run['cycles']:>12,}{run['wall_seconds']:>10.2f}{rate(run):>14,.0f}"
              f"{rate(run) / harness_rate:>10.2f}x")
    network_on_rtl(config, args.samples, harness_rate)


def network_on_rtl(config, samples, harness_rate):
    """What `tessera run --backend rtl` costs a sample, with memory images over AXI4-Lite
    and with `--fast-load`: the digits MLP's shape (random weights) compiled for `config`,
    run once to build, then timed at `samples` and half as many samples. The difference
    is the cost of the extra samples (the simulator's start-up cancels out), set against
    the wall time the bare harness takes for their device cycles."""
    import time

    import numpy as np

    from firmware.compiler.build import build_executable
    from firmware.frontend.train import init_mlp
    from firmware.runtime.run import compare_runs
    from firmware.runtime.targets import GoldenTarget
    from sim.network import RTLTarget

    rng = np.random.default_rng(0)
    network = init_mlp([64, 32, 10], rng)
    x = rng.uniform(0, 1, (samples, 64))
    exe = build_executable(network, config, x).executable
    x_q = exe.input.quantize(x)
    started = time.perf_counter()
    golden = GoldenTarget().run(exe, x_q)
    golden_s = time.perf_counter() - started
    compute_s = golden.counters["cycles"] / harness_rate / samples
    print(f"\nMLP 64-32-10 through the driver, batches of {exe.batch}; per sample: "
          f"{golden.counters['cycles'] / samples:.1f} device cycles, which the harness "
          f"simulates in {1e3 * compute_s:.4f} ms; golden {1e3 * golden_s / samples:.3f} ms")
    half = samples // 2
    for fast_load in (False, True):
        target = RTLTarget(log=lambda message: None, fast_load=fast_load)
        target.run(exe, x_q[:1])                                          # builds if needed
        times = {}
        for n in (half, samples):
            started = time.perf_counter()
            run = target.run(exe, x_q[:n])
            times[n] = time.perf_counter() - started
        same = not compare_runs(golden, run)
        per_sample = (times[samples] - times[half]) / (samples - half)
        start_up = times[half] - per_sample * half
        name = "--fast-load (backdoor)" if fast_load else "AXI4-Lite"
        print(f"  RTL, memory images by {name:<24}{1e3 * per_sample:8.3f} ms/sample "
              f"({per_sample / compute_s:.0f}x the compute's simulation; start-up "
              f"{start_up:.1f} s; RTL {'=' if same else '!='} golden on {samples} samples)")


if __name__ == "__main__":
    main()
