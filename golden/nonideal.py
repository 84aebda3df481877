"""Analog non-idealities of the crossbar, for studies: golden model only, seeded, off by
default. The RTL is the ideal digital model; these perturb the analog quantities the ADC
digitises.

Per cell slice (each cell of a differential pair), drawn when a PROGRAM writes it:
- conductance variation: the stored level times ``1 + N(0, conductance_sigma)``;
- stuck cells: a fraction ``stuck_at_0`` reads 0 and a fraction ``stuck_at_1`` reads the
  top level, whatever was written.

Per conversion:
- read noise: ``N(0, read_noise_sigma)`` added to the column count (in count units, one
  unit being one input level times one cell level);
- ADC noise: ``N(0, adc_noise_sigma)`` in ADC codes (LSB);

and per ADC (each tile column and slice), fixed for the device's life:
- ADC offset: ``N(0, adc_offset_sigma)`` codes.

The ADC then rounds the analog value to the nearest code of its range and saturates, as
`golden.crossbar.adc_convert` does an exact count.
"""

from dataclasses import dataclass, fields

import numpy as np

from .crossbar import input_levels, shift_add, weight_slices

__all__ = ["NonIdealities", "AnalogTiles"]


@dataclass(frozen=True)
class NonIdealities:
    conductance_sigma: float = 0.0
    read_noise_sigma: float = 0.0
    adc_offset_sigma: float = 0.0
    adc_noise_sigma: float = 0.0
    stuck_at_0: float = 0.0
    stuck_at_1: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "seed":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"NonIdealities.seed must be a non-negative integer, not {value!r}")
            elif not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"NonIdealities.{f.name} must be a finite number >= 0, not {value!r}")
        if self.stuck_at_0 + self.stuck_at_1 > 1:
            raise ValueError(f"NonIdealities: stuck_at_0 + stuck_at_1 must be at most 1, "
                             f"not {self.stuck_at_0 + self.stuck_at_1}")

    @property
    def active(self):
        return any(getattr(self, f.name) for f in fields(self) if f.name != "seed")

    def describe(self):
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self)
                         if getattr(self, f.name) or f.name == "seed")


class AnalogTiles:
    """The perturbed cells of every tile and the ADC offsets, with one seeded generator:
    the same program, inputs and seed give the same results."""

    def __init__(self, config, nonideal):
        self.config, self.nonideal = config, nonideal
        self.rng = np.random.default_rng(nonideal.seed)
        c = config
        shape = (c.tiles, c.slices, c.rows, c.cols)
        self.g_pos = np.zeros(shape)
        self.g_neg = np.zeros(shape)
        self.adc_offset = self.rng.normal(0, nonideal.adc_offset_sigma, (c.tiles, c.slices, c.cols)) \
            if nonideal.adc_offset_sigma else np.zeros((c.tiles, c.slices, c.cols))

    def _written(self, levels):
        n, top = self.nonideal, (1 << self.config.cell_bits) - 1
        g = levels.astype(np.float64)
        if n.conductance_sigma:
            g = g * (1 + self.rng.normal(0, n.conductance_sigma, g.shape))
        if n.stuck_at_0 or n.stuck_at_1:
            draw = self.rng.random(g.shape)
            g = np.where(draw < n.stuck_at_0, 0.0, g)
            g = np.where((draw >= n.stuck_at_0) & (draw < n.stuck_at_0 + n.stuck_at_1), top, g)
        return g

    def program(self, tile, weights):
        g_pos, g_neg = weight_slices(self.config, weights)
        self.g_pos[tile] = self._written(g_pos)
        self.g_neg[tile] = self._written(g_neg)

    def mvm(self, tile, x, adc_shift, offset_inputs=False):
        """The tile's results for int8 vectors `x` (batch, rows), as `crossbar_mvm` but
        with the analog perturbations."""
        c, n = self.config, self.nonideal
        levels = input_levels(c, x, offset_inputs).astype(np.float64)      # (steps, b, rows)
        counts = np.einsum("kbr,src->ksbc", levels, self.g_pos[tile] - self.g_neg[tile])
        if n.read_noise_sigma:
            counts = counts + self.rng.normal(0, n.read_noise_sigma, counts.shape)
        analog = counts / (1 << adc_shift) + self.adc_offset[tile][None, :, None, :]
        if n.adc_noise_sigma:
            analog = analog + self.rng.normal(0, n.adc_noise_sigma, analog.shape)
        lo, hi = -(1 << (c.adc_bits - 1)), (1 << (c.adc_bits - 1)) - 1
        codes = np.clip(np.floor(analog + 0.5), lo, hi).astype(np.int64)  # nearest, ties up
        return shift_add(c, codes, adc_shift)
