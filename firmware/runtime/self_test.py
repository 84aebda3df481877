"""The built-in self test: finds stuck cells (`golden.faults`) through the host interface
and the ISA alone, on any target a `Driver` reaches (golden model, RTL, board).

Every tile is programmed with one weight in every cell position, then multiplied by the
unit vectors (x = 1 on one row): row r of the results is the weights row r reads, one
code per slice and exact, as a single row's count never leaves the ADC's range.
- A zero pattern (every cell written 0) reads, per weight, the sum of its stuck-at-1
  cells, each ``±stuck_high_level << (slice * cell_bits)`` (w+ cells add, w- subtract).
- One pattern per (side, slice) writes only that cell of every weight, at the largest
  level an int8 weight gives it. Every other cell is written as in the zero pattern, so
  the difference of the two reads is that level (shifted) if the cell works and 0 if it
  is stuck, whatever else is stuck in the weight.
So a stuck cell is found wherever it can matter. What is stuck at 1 is then the assignment
of the weight's stuck cells that explains the zero pattern's read. When several do (a w+
and a w- cell of one slice both stuck, say), they read alike under every weight: the
report counts such weights, and the map holds the one with fewest cells at 1.
A cell no int8 weight ever sets (bit 7 of w+, with 1-bit cells) cannot be seen stuck at 0,
and never matters: `untestable_cells` lists them.
"""

import itertools
from dataclasses import dataclass

import numpy as np

from golden import isa
from golden.faults import OK, STUCK_AT_0, STUCK_AT_1, FaultMap, cell_shape, stuck_high_level

__all__ = ["SelfTestReport", "SelfTestError", "self_test", "untestable_cells", "patterns"]

MAGNITUDE_LIMITS = (127, 128)          # the largest w+ and w- of an int8 weight


class SelfTestError(ValueError):
    """The device cannot run the self test (its memories or ADC are too small)."""


@dataclass
class SelfTestReport:
    faults: FaultMap
    ambiguous_weights: int          # weights whose stuck-at-1 cells are one of several alike
    untestable_cells: int           # per tile: cells whose stuck-at-0 no weight can show
    runs: int
    device_cycles: int


def written_levels(config):
    """``levels[side, slice]``: the level the (side, slice) pattern writes its cell to."""
    levels = np.zeros((2, config.slices), np.int64)
    top = (1 << config.cell_bits) - 1
    for side, limit in enumerate(MAGNITUDE_LIMITS):
        for s in range(config.slices):
            levels[side, s] = min(top, limit >> (s * config.cell_bits))
    return levels


def untestable_cells(config):
    """``(side, slice)`` pairs no int8 weight writes above 0."""
    return [tuple(int(i) for i in cell) for cell in np.argwhere(written_levels(config) == 0)]


def patterns(config):
    """(name, cell or None, the int8 weight every cell of every tile gets): the zero
    pattern, then one per testable (side, slice)."""
    yield "zero", None, 0
    levels = written_levels(config)
    for side, s in itertools.product(range(2), range(config.slices)):
        level = int(levels[side, s])
        if level:
            weight = (1, -1)[side] * (level << (s * config.cell_bits))
            yield f"w{'+-'[side]} slice {s}", (side, s), weight


def _check_fits(config):
    largest_code = (1 << (config.adc_bits - 1)) - 1
    if largest_code < stuck_high_level(config):
        raise SelfTestError(f"the self test reads single cells through the ADC: {config.name}'s "
                            f"{config.adc_bits}-bit ADC tops out at {largest_code}, below a "
                            f"cell's {stuck_high_level(config)}")
    for memory, need in (("wmem", config.rows), ("amem", config.rows), ("psum", config.rows),
                         ("imem", 3)):
        depth = getattr(config, f"{memory}_depth")
        if depth < need:
            raise SelfTestError(f"the self test needs {need} {memory} entries; {config.name} "
                                f"has {depth}")


async def _read_pattern(driver, config, weight, counts):
    """Every tile's weights as read after programming `weight` everywhere:
    ``(tiles, rows, cols)``."""
    c = config
    await driver.write_entries("wmem", 0, np.full((c.rows, c.tiles * c.cols), weight, np.int64))
    per_run = min(c.imem_depth - 2, c.psum_depth // c.rows)
    read = np.zeros((c.tiles, c.rows, c.cols), np.int64)
    for first in range(0, c.tiles, per_run):
        tiles = range(first, min(c.tiles, first + per_run))
        program = [isa.program(tiles[0], 0, tiles=len(tiles))]
        program += [isa.mvm(t, c.rows, 0, i * c.rows) for i, t in enumerate(tiles)]
        await driver.load_program(program + [isa.halt()])
        status = await driver.run(timeout_s=10.0)
        counts["runs"] += 1
        counts["device_cycles"] += status.counters["cycles"]
        psum = await driver.read_entries("psum", 0, len(tiles) * c.rows)
        read[tiles.start:tiles.stop] = psum.reshape(len(tiles), c.rows, c.cols)
    return read


async def self_test(driver, progress=None):
    """Find the device's stuck cells; returns a `SelfTestReport`. `progress(done, total)`
    after each pattern. Overwrites wmem, amem, psum, imem and every tile's weights."""
    config = await driver.discover()
    _check_fits(config)
    await driver.write_entries("amem", 0, np.eye(config.rows, dtype=np.int64))
    counts = {"runs": 0, "device_cycles": 0}
    todo = list(patterns(config))
    baseline = None
    stuck = np.zeros((config.tiles, *cell_shape(config)), bool)
    for i, (_, cell, weight) in enumerate(todo):
        read = await _read_pattern(driver, config, weight, counts)
        if cell is None:
            baseline = read
        else:
            stuck[:, cell[0], cell[1]] = _stuck_where(read - baseline, weight, cell)
        if progress is not None:
            progress(i + 1, len(todo))
    states, ambiguous = _classify(config, stuck, baseline)
    return SelfTestReport(FaultMap(config, states), ambiguous,
                          len(untestable_cells(config)) * config.rows * config.cols,
                          counts["runs"], counts["device_cycles"])


def _stuck_where(difference, weight, cell):
    """Where the pattern's cell is stuck: its weight added nothing. Anything but nothing
    or the weight is no stuck cell: refused rather than guessed."""
    odd = np.argwhere((difference != 0) & (difference != weight))
    if len(odd):
        t, r, c = odd[0].tolist()
        raise SelfTestError(f"tile {t} row {r} column {c}: writing {weight} to the "
                            f"w{'+-'[cell[0]]} slice {cell[1]} cell changed the read by "
                            f"{difference[t, r, c]}, which no stuck cell explains (a fault "
                            f"this model does not know, or a noisy device)")
    return difference == 0


def _classify(config, stuck, baseline):
    """Each cell's state: the cells at 1 are the assignment that explains the zero
    pattern's read of their weight (fewest cells at 1 among equals), chosen among the
    weight's found cells (stuck at 0 otherwise) and its untestable ones (else fine)."""
    states = np.full(stuck.shape, OK, np.uint8)
    ambiguous = 0
    high = stuck_high_level(config)
    untestable = untestable_cells(config)
    for t, r, c in np.argwhere(stuck.any(axis=(1, 2)) | (baseline != 0)).tolist():
        found = [tuple(cell) for cell in np.argwhere(stuck[t, :, :, r, c]).tolist()]
        cells = found + untestable
        weights = [(1, -1)[side] * (high << (s * config.cell_bits)) for side, s in cells]
        matches = [ones for k in range(len(cells) + 1)
                   for ones in itertools.combinations(range(len(cells)), k)
                   if sum(weights[i] for i in ones) == baseline[t, r, c]]
        if not matches:
            raise SelfTestError(f"tile {t} row {r} column {c}: the zero pattern read "
                                f"{baseline[t, r, c]}, which no stuck cells explain (a fault "
                                f"this model does not know, or a noisy device)")
        ambiguous += len(matches) > 1
        for i, (side, s) in enumerate(cells):
            if i in matches[0]:
                states[t, side, s, r, c] = STUCK_AT_1
            elif i < len(found):
                states[t, side, s, r, c] = STUCK_AT_0
    return states, ambiguous
