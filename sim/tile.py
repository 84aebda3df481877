"""Check the RTL crossbar tile against the golden model on Verilator."""

import json

import rtl

from .runner import build_dir_for, run_cocotb

__all__ = ["run_tile_check"]


def run_tile_check(config, vectors=2000, seed=1, log=print):
    """Generate the tile's Verilog for `config`, run `sim.tile_tb` and return a `CocotbRun`."""
    build_dir = build_dir_for("crossbar_tile", config)
    verilog = rtl.generate_verilog(rtl.CrossbarTile(config), build_dir, "crossbar_tile")
    env = {"TESSERA_CONFIG": json.dumps(config.to_dict()),
           "TESSERA_VECTORS": str(vectors), "TESSERA_SEED": str(seed)}
    return run_cocotb(verilog=verilog, toplevel="crossbar_tile", test_module="sim.tile_tb",
                      build_dir=build_dir, env=env, log=log)
