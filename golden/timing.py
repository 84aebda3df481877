"""Cycle counts of the crossbar tile, as functions of the config.

These are the RTL's contract: the testbench measures every product and every
programming burst and compares against them.
"""

__all__ = ["tile_program_cycles", "tile_mvm_cycles", "tile_mvm_interval"]


def tile_program_cycles(config, rows=None):
    """Cycles to program `rows` weight rows (all of them by default): one row a cycle."""
    return config.rows if rows is None else rows


def tile_mvm_cycles(config):
    """Cycles from the input vector's handshake to its result becoming valid.

    One cycle per conversion slot (``steps * adc_share``), plus one to present the result.
    """
    return config.steps * config.adc_share + 1


def tile_mvm_interval(config):
    """Cycles between products when inputs are always valid and the output always ready:
    the result's handshake cycle also accepts the next input, so no cycle is added."""
    return tile_mvm_cycles(config)
