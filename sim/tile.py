"""Check the RTL crossbar tile against the golden model on Verilator."""

import rtl

from .runner import run_component

__all__ = ["run_tile_check"]


def run_tile_check(config, vectors=2000, seed=1, log=print):
    """Run `sim.tile_tb` on the tile of `config`; returns a `CocotbRun`."""
    return run_component(lambda: rtl.CrossbarTile(config), config, "crossbar_tile", "sim.tile_tb",
                         {"TESSERA_VECTORS": str(vectors), "TESSERA_SEED": str(seed)}, log)
