"""Cycle counts of the crossbar tile, as functions of the config.

These are the RTL's contract: the testbench measures every product and every
programming burst and compares against them.
"""

__all__ = ["tile_program_cycles", "tile_mvm_cycles", "tile_mvm_interval"]


def tile_program_cycles(config, rows=None):
    """Cycles to program `rows` weight rows (all of them by default): a row a cycle, or,
    when ADCs are shared and the cells sit in a memory of one entry per phase, a row in
    ``adc_share`` cycles (one write per phase)."""
    return (config.rows if rows is None else rows) * config.adc_share


def tile_mvm_cycles(config):
    """Cycles from a product's start to its result: the start cycle loads the staged
    input, then one cycle per conversion slot (``steps * adc_share``); the result is
    held from the cycle after the last slot."""
    return config.steps * config.adc_share + 1


def tile_mvm_interval(config):
    """The shortest interval between starts: one conversion, ``steps * adc_share``. The
    next input is staged while the current one converts and a start in the last slot
    continues with no gap."""
    return config.steps * config.adc_share
