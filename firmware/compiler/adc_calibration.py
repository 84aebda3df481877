"""Each layer's ADC range, chosen at compile time from calibration data.

Below the lossless width an ADC either saturates a column count (clipping) or, with a
right shift, rounds it to a coarser step: the MVM instruction's ``adc_shift`` picks the
balance (`golden.crossbar.adc_convert`). What the counts are also depends on how the
inputs are applied: in two's complement a ReLU's outputs (just above -128) fill the sign
step with ones, so its counts sum the whole column; as offset binary (the MVM's
``offset_inputs``, ``x + 128``, the bias taking ``128 * sum(w)`` back) those steps are
nearly empty.

For every matrix layer this module runs the layer's int8 calibration inputs through the
golden crossbar model of its stored weight blocks, for each encoding and legal shift, and
keeps the pair whose accumulator (the sum over the layer's K blocks, what the requantiser
sees) is closest to the exact product in squared error. The inputs are those of the int8
reference, so each layer is calibrated on its own.
"""

from dataclasses import dataclass

import numpy as np

from golden.crossbar import adc_convert, adc_round, column_counts, offset_excess, shift_add

from .quantize import QuantizedDense, QuantizedMerge

__all__ = ["AdcRange", "layer_inputs", "measure_ranges", "choose_adc_ranges"]

MAX_VECTORS = 1024       # calibration vectors per layer (a random subset beyond it)


@dataclass(frozen=True)
class AdcRange:
    """One layer's ADC range and input encoding and what they cost on the calibration
    vectors, with the uncalibrated choice (two's complement, shift 0) beside them."""
    layer: str
    offset_inputs: bool
    shift: int
    clipped: float               # fraction of conversions that saturated
    sqnr_db: float               # accumulator signal-to-error power, dB (inf: exact)
    clipped_at_zero: float       # the same at shift 0
    sqnr_db_at_zero: float
    vectors: int                 # calibration vectors measured

    def describe(self):
        encoding = "offset-binary" if self.offset_inputs else "two's-complement"
        return (f"{self.layer}: {encoding} inputs, shift {self.shift}, {self.clipped:.2%} of "
                f"conversions clipped, SQNR {_db(self.sqnr_db)} (uncalibrated: "
                f"{self.clipped_at_zero:.2%}, {_db(self.sqnr_db_at_zero)})")


def _db(value):
    return "exact" if np.isinf(value) else f"{value:.1f} dB"


def layer_inputs(qnet, x_q):
    """Each matrix layer's int8 input vectors (im2col patches for a convolution, its
    inputs side by side for a merge), as ``(vectors, k)``, through the int8 reference."""
    seen = qnet.activations(x_q)                         # every tensor, the input first
    inputs = {}
    for layer, tensors in zip(qnet.layers, qnet.reads):
        if isinstance(layer, QuantizedMerge):
            vectors = np.concatenate([seen[t] for t in tensors], axis=-1)
        elif isinstance(layer, QuantizedDense):
            vectors = layer.patches(seen[tensors[0]])
        else:
            continue
        inputs[layer.name] = vectors.reshape(-1, layer.weights.shape[0])
    return inputs


def measure_ranges(config, layer_map, vectors):
    """Per (offset_inputs, shift): (clipped fraction, squared error, exact power) of the
    layer's accumulator over `vectors` (int8, ``(n, k)``, unpadded). With offset inputs
    the accumulator is compared after the bias's correction, as the requantiser sees it."""
    R, C = config.rows, config.cols
    padded = np.zeros((len(vectors), layer_map.k_blocks * R), np.int64)
    padded[:, layer_map.row_index] = vectors
    choices = [(offset, s) for offset in (False, True) for s in range(config.max_adc_shift + 1)]
    exact = np.zeros((len(vectors), layer_map.n_blocks * C), np.int64)
    approx = {choice: np.zeros_like(exact) for choice in choices}
    clipped = dict.fromkeys(choices, 0)
    conversions = 0
    for kb, nb in zip(*np.nonzero(layer_map.nonzero)):
        x = padded[:, kb * R:(kb + 1) * R]
        w = layer_map.weights[kb * R:(kb + 1) * R, nb * C:(nb + 1) * C]
        columns = slice(nb * C, (nb + 1) * C)
        exact[:, columns] += x @ w
        for offset in (False, True):
            counts = column_counts(config, x, w, offset)            # (steps, slices, n, cols)
            correction = offset_excess(w) if offset else 0
            conversions += counts.size * (not offset)
            for s in range(config.max_adc_shift + 1):
                codes = adc_convert(config, counts, s)
                clipped[offset, s] += int(np.count_nonzero(codes != adc_round(counts, s)))
                approx[offset, s][:, columns] += shift_add(config, codes, s) - correction
    power = float(np.sum(exact.astype(np.float64) ** 2))
    return {choice: (clipped[choice] / max(conversions, 1),
                     float(np.sum((approx[choice] - exact).astype(np.float64) ** 2)), power)
            for choice in choices}


def _sqnr(error, power):
    if error == 0:
        return float("inf")
    return 10 * np.log10(max(power, 1e-300) / error)


def choose_adc_ranges(qnet, network_map, x_q, seed=0):
    """``{layer name: AdcRange}``: each matrix layer's least-error input encoding and
    shift on the int8 calibration inputs `x_q` (ties go to two's complement, then to the
    smaller shift)."""
    config = network_map.config
    inputs = layer_inputs(qnet, x_q)
    rng = np.random.default_rng(seed)
    ranges, by_name = {}, {layer.name: layer for layer in qnet.layers}
    for lm in network_map.layers:
        vectors = inputs[lm.name]
        if len(vectors) > MAX_VECTORS:
            vectors = vectors[np.sort(rng.choice(len(vectors), MAX_VECTORS, replace=False))]
        measured = measure_ranges(config, lm, vectors)
        layer = by_name[lm.name]
        corrected = layer.bias.astype(np.int64) - offset_excess(layer.weights)
        if np.abs(corrected).max(initial=0) >= 1 << 31:       # the bias could not take it back
            measured = {choice: m for choice, m in measured.items() if not choice[0]}
        best = min(measured, key=lambda choice: (measured[choice][1], choice))
        clipped, error, power = measured[best]
        clipped0, error0, _ = measured[False, 0]
        ranges[lm.name] = AdcRange(lm.name, *best, clipped, _sqnr(error, power), clipped0,
                                   _sqnr(error0, power), len(vectors))
    return ranges
