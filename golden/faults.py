"""Stuck cells: the fault model the golden device, the RTL (in simulation) and the
self test share.

A tile's cells are indexed ``(side, slice, row, col)``: side 0 holds the slices of
``w+ = max(w, 0)``, side 1 those of ``w- = max(-w, 0)`` (`golden.crossbar.weight_slices`).
A stuck cell reads the same level whatever is written: ``STUCK_AT_0`` reads 0,
``STUCK_AT_1`` the top level a cell is ever programmed to (`stuck_high_level`). A
`FaultMap` gives each cell of each tile its state; it is fixed for the device's life
(unlike `golden.nonideal`'s per-write draws), survives reprogramming, and is stored as
JSON, one entry per faulty cell.
"""

import json
from dataclasses import dataclass

import numpy as np

from .config import AccelConfig

__all__ = ["OK", "STUCK_AT_0", "STUCK_AT_1", "STATE_BITS", "FaultMap", "FaultMapError",
           "stuck_high_level", "apply_stuck", "cell_shape", "cell_index"]

OK, STUCK_AT_0, STUCK_AT_1 = 0, 1, 2
STATE_BITS = 2                     # bits of one cell's state, as the RTL's port packs it
SIDES = ("+", "-")
FORMAT = "tessera-fault-map"
VERSION = 1


class FaultMapError(ValueError):
    """A fault map that does not fit, or a file that is not one; the message names where."""


def cell_shape(config):
    """The shape of one tile's cell states: ``(sides, slices, rows, cols)``."""
    return (2, config.slices, config.rows, config.cols)


def cell_index(config, side, slice_, row, col):
    """A cell's index in a tile's flattened states (C order of `cell_shape`): where the
    RTL's fault port holds it, at bits ``STATE_BITS * cell_index``."""
    return ((side * config.slices + slice_) * config.rows + row) * config.cols + col


def stuck_high_level(config):
    """The level a stuck-at-1 cell reads: the largest a cell is programmed to (all its
    bits, or 128 when one cell holds a whole magnitude), so a column count stays within
    the ADC's count range."""
    return config.max_cell_difference


def apply_stuck(config, g_pos, g_neg, states):
    """The cell levels a tile reads: `g_pos`, `g_neg` (``(slices, rows, cols)`` each, as
    written) with the tile's `states` (``cell_shape``) applied."""
    high = stuck_high_level(config)
    read = []
    for side, levels in enumerate((g_pos, g_neg)):
        state = states[side]
        read.append(np.where(state == STUCK_AT_0, 0, np.where(state == STUCK_AT_1, high, levels)))
    return read[0], read[1]


@dataclass(frozen=True, eq=False)
class FaultMap:
    """Every tile's cell states, ``states[tile, side, slice, row, col]`` (uint8)."""
    config: AccelConfig
    states: np.ndarray

    def __post_init__(self):
        shape = (self.config.tiles, *cell_shape(self.config))
        states = np.asarray(self.states)
        if states.shape != shape:
            raise FaultMapError(f"fault map states have shape {states.shape}, the config "
                                f"{self.config.name} needs {shape}")
        if states.size and (states.min() < OK or states.max() > STUCK_AT_1):
            raise FaultMapError(f"fault map state {int(states.max())} is not one of "
                                f"{OK} (ok), {STUCK_AT_0} (stuck at 0), {STUCK_AT_1} (stuck at 1)")
        states = states.astype(np.uint8)
        states.setflags(write=False)
        object.__setattr__(self, "states", states)

    def __eq__(self, other):
        return (isinstance(other, FaultMap) and self.config == other.config
                and np.array_equal(self.states, other.states))

    @classmethod
    def none(cls, config):
        return cls(config, np.zeros((config.tiles, *cell_shape(config)), np.uint8))

    @classmethod
    def random(cls, config, fraction, seed, stuck_at_1_share=0.5):
        """Each cell stuck with probability `fraction`, at 1 with `stuck_at_1_share` of
        those, from NumPy's generator seeded with `seed`."""
        if not 0 <= fraction <= 1 or not 0 <= stuck_at_1_share <= 1:
            raise FaultMapError(f"fraction {fraction} and stuck_at_1_share {stuck_at_1_share} "
                                f"must lie in [0, 1]")
        rng = np.random.default_rng(seed)
        shape = (config.tiles, *cell_shape(config))
        stuck = rng.random(shape) < fraction
        high = rng.random(shape) < stuck_at_1_share
        return cls(config, np.where(stuck, np.where(high, STUCK_AT_1, STUCK_AT_0), OK))

    @property
    def faulty(self):
        """Indices ``(tile, side, slice, row, col)`` of the stuck cells, in order."""
        return [tuple(int(i) for i in cell) for cell in np.argwhere(self.states != OK)]

    @property
    def fraction(self):
        return float(np.count_nonzero(self.states)) / self.states.size

    def tile_states(self, tile):
        return self.states[tile]

    def port_value(self, tile=None):
        """The states as the integer the RTL's ``stuck`` port takes: a tile's
        (`cell_index`), or with no `tile` every tile's, tile 0 in the low bits."""
        flat = (self.states if tile is None else self.states[tile]).ravel()
        bits = (flat[:, None] >> np.arange(STATE_BITS)) & 1          # little-endian
        return int.from_bytes(np.packbits(bits.ravel(), bitorder="little").tobytes(), "little")

    def to_json(self):
        entries = [{"tile": t, "side": SIDES[side], "slice": s, "row": r, "col": c,
                    "stuck_at": 1 if self.states[t, side, s, r, c] == STUCK_AT_1 else 0}
                   for t, side, s, r, c in self.faulty]
        return json.dumps({"format": FORMAT, "version": VERSION, "config": self.config.to_dict(),
                           "cells": self.states.size, "faults": entries}, indent=1)

    def save(self, path):
        with open(path, "w") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def from_json(cls, text, where="fault map"):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise FaultMapError(f"{where}: not JSON ({error})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise FaultMapError(f"{where}: not a {FORMAT} file (its 'format' field)")
        if record.get("version") != VERSION:
            raise FaultMapError(f"{where}: version {record.get('version')!r}, this Tessera "
                                f"reads version {VERSION}")
        try:
            config = AccelConfig.from_dict(record["config"])
        except (KeyError, TypeError, ValueError) as error:
            raise FaultMapError(f"{where}: field 'config': {error}") from None
        states = np.zeros((config.tiles, *cell_shape(config)), np.uint8)
        for i, entry in enumerate(record.get("faults", [])):
            states[_cell_of(config, entry, f"{where}: faults[{i}]")] = (
                STUCK_AT_1 if entry["stuck_at"] == 1 else STUCK_AT_0)
        return cls(config, states)

    @classmethod
    def load(cls, path):
        try:
            with open(path) as f:
                text = f.read()
        except OSError as error:
            raise FaultMapError(f"{path}: {error.strerror}") from None
        return cls.from_json(text, str(path))


def _cell_of(config, entry, where):
    """The state array's index of one JSON fault entry, every field checked."""
    if not isinstance(entry, dict):
        raise FaultMapError(f"{where}: an entry must be an object, not {entry!r}")
    if entry.get("side") not in SIDES:
        raise FaultMapError(f"{where}: field 'side' must be '+' or '-', not {entry.get('side')!r}")
    if entry.get("stuck_at") not in (0, 1):
        raise FaultMapError(f"{where}: field 'stuck_at' must be 0 or 1, "
                            f"not {entry.get('stuck_at')!r}")
    bounds = {"tile": config.tiles, "slice": config.slices, "row": config.rows,
              "col": config.cols}
    for field, bound in bounds.items():
        value = entry.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < bound:
            raise FaultMapError(f"{where}: field '{field}' must be an integer in "
                                f"0..{bound - 1}, not {value!r}")
    return (entry["tile"], SIDES.index(entry["side"]), entry["slice"], entry["row"],
            entry["col"])
