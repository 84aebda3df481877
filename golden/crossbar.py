"""What one crossbar tile computes: the bit-serial, bit-sliced, differential MVM of docs/architecture.md (Arithmetic).

All functions are vectorised over a batch of input vectors; none loops over rows,
columns or vectors in Python (the loops are over the few steps and slices only).
"""

import numpy as np

from .config import INPUT_BITS
from .faults import apply_stuck

__all__ = ["INPUT_OFFSET", "offset_excess", "check_int8", "weight_slices", "read_weights",
           "input_levels",
           "column_counts",
           "adc_convert", "shift_add", "crossbar_mvm", "reference_mvm", "int8_matmul",
           "FLOAT32_EXACT_TERMS", "FLOAT32_OFFSET_TERMS"]


INPUT_OFFSET = 1 << (INPUT_BITS - 1)      # offset-binary inputs apply x + 128


def offset_excess(weights):
    """What offset-binary inputs add to each column of ``x @ weights``: ``128 * sum(w)``
    (the requantiser's bias takes it back)."""
    return INPUT_OFFSET * np.asarray(weights, np.int64).sum(axis=0)


def check_int8(name, array, shape=None):
    """Return `array` as int64 after checking it holds int8 values (and `shape`, if given)."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, not {array.dtype}")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, not {array.shape}")
    if array.size and (array.min() < -128 or array.max() > 127):
        bad = np.argwhere((array < -128) | (array > 127))[0]
        raise ValueError(f"{name}{[int(i) for i in bad]} = {array[tuple(bad)]} is outside int8")
    return array.astype(np.int64)


def weight_slices(config, weights):
    """Split int8 weights into the cell values of the differential pairs.

    Returns ``(g_pos, g_neg)``, each of shape ``(slices, rows, cols)``: slice ``s``
    holds bits ``s*cell_bits ..`` of ``w+ = max(w, 0)`` and ``w- = max(-w, 0)``.
    """
    w = check_int8("weights", weights, (config.rows, config.cols))
    shifts = (np.arange(config.slices) * config.cell_bits)[:, None, None]
    mask = (1 << config.cell_bits) - 1
    g_pos = (np.maximum(w, 0)[None] >> shifts) & mask
    g_neg = (np.maximum(-w, 0)[None] >> shifts) & mask
    return g_pos, g_neg


def read_weights(config, weights, stuck):
    """The int8-scale weights a tile reads back from cells programmed with `weights` when
    `stuck` (its cell states, `golden.faults`) holds some: ``sum_s (g+_s - g-_s) <<
    (s * cell_bits)``, in -255..255. What an exact (lossless) product multiplies by."""
    g_pos, g_neg = apply_stuck(config, *weight_slices(config, weights), stuck)
    shifts = (np.arange(config.slices) * config.cell_bits)[:, None, None]
    return ((g_pos - g_neg) << shifts).sum(axis=0)


def input_levels(config, x, offset_inputs=False):
    """The DAC level of every input at every step, shape ``(steps, batch, rows)``.

    Step ``k`` applies bits ``k*dac_bits ..`` of the input's byte. In two's complement
    (the default) every step but the last is an unsigned chunk; the last carries the sign
    bit and is applied as a signed (bipolar) level, so that the shift-add only ever adds
    (with ``dac_bits=1`` it is 0 or -1: the sign step is subtracted). With `offset_inputs`
    the byte is offset binary, ``x + 128`` (the sign bit flipped), and every step is
    unsigned: the product gains ``128 * sum(w)``, which the requantiser's bias takes back.
    A ReLU's outputs sit just above -128, so offset binary makes their top steps nearly
    empty instead of nearly full: far smaller column counts for the ADC.
    """
    x = check_int8("inputs", x)
    byte = (x + INPUT_OFFSET if offset_inputs else x) & 0xFF
    shifts = (np.arange(config.steps) * config.dac_bits)[:, None, None]
    levels = (byte[None] >> shifts) & ((1 << config.dac_bits) - 1)
    if not offset_inputs:
        top = levels[-1]
        levels[-1] = np.where(top >= 1 << (config.dac_bits - 1), top - (1 << config.dac_bits), top)
    return levels


def column_counts(config, x, weights, offset_inputs=False, stuck=None):
    """Signed bit-line difference counts, shape ``(steps, slices, batch, cols)``; `stuck`
    (the tile's cell states, `golden.faults`) makes stuck cells read their level."""
    g_pos, g_neg = weight_slices(config, weights)
    if stuck is not None:
        g_pos, g_neg = apply_stuck(config, g_pos, g_neg, stuck)
    levels = input_levels(config, x, offset_inputs).astype(np.float64)
    # Exact in float64 (|count| < 2**53 by far), and BLAS instead of an integer einsum.
    return np.rint(levels[:, None] @ (g_pos - g_neg)[None].astype(np.float64)).astype(np.int64)


def adc_round(counts, adc_shift):
    """``counts / 2**adc_shift`` rounded to the nearest integer, ties up: a mid-tread ADC
    whose step is 2**adc_shift counts. (Truncating instead would bias every code by half a
    step, and the shift-add multiplies that bias by the sum of its weights.)"""
    return (np.asarray(counts) + ((1 << adc_shift) >> 1)) >> adc_shift


def adc_convert(config, counts, adc_shift=0):
    """The ADC: a count in steps of ``2**adc_shift`` (`adc_round`; the MVM's choice of
    range, at most ``config.max_adc_shift``), saturated to a signed ``adc_bits`` code at
    both ends. The only place precision is lost."""
    if not 0 <= adc_shift <= config.max_adc_shift:
        raise ValueError(f"adc_shift must be in 0..{config.max_adc_shift} for this config, "
                         f"not {adc_shift!r}")
    lo, hi = -(1 << (config.adc_bits - 1)), (1 << (config.adc_bits - 1)) - 1
    return np.clip(adc_round(counts, adc_shift), lo, hi)


def shift_add(config, codes, adc_shift=0):
    """``sum_{k,s} codes[k, s] << (k*dac_bits + s*cell_bits + adc_shift)``: the column
    results of ADC codes shaped ``(steps, slices, batch, cols)``."""
    weight_exp = (np.arange(config.steps)[:, None] * config.dac_bits
                  + np.arange(config.slices)[None, :] * config.cell_bits + adc_shift)
    return np.einsum("ksbc,ks->bc", codes, np.int64(1) << weight_exp)


def crossbar_mvm(config, x, weights, adc_shift=0, offset_inputs=False, stuck=None):
    """The tile's int32 result for each input vector.

    Parameters
    ----------
    x : int8 array, shape ``(batch, rows)`` or ``(rows,)``
    weights : int8 array, shape ``(rows, cols)``

    Returns an int64 array of shape ``(batch, cols)`` (or ``(cols,)``) holding
    ``sum_{k,s} adc(count[k, s]) << (k*dac_bits + s*cell_bits + adc_shift)``,
    which is ``x @ weights`` exactly when the config is lossless (`adc_shift` 0), or
    ``(x + 128) @ weights`` with `offset_inputs`. `stuck` gives the tile's stuck cells
    (`golden.faults`).
    """
    x = np.asarray(x)
    single = x.ndim == 1
    batch = np.atleast_2d(x)
    if batch.ndim != 2 or batch.shape[1] != config.rows:
        raise ValueError(f"inputs must have shape (batch, {config.rows}), not {x.shape}")
    counts = column_counts(config, batch, weights, offset_inputs, stuck)
    result = shift_add(config, adc_convert(config, counts, adc_shift), adc_shift)
    return result[0] if single else result


def reference_mvm(x, weights):
    """The exact product ``x @ w`` in int64: what a lossless tile must return."""
    return check_int8("inputs", x) @ check_int8("weights", weights)


# float32 holds every integer of magnitude up to 2**24. A product of an int8 input and an
# int8 weight is at most 128 * 128, so every partial sum of this many of them, in whatever
# order BLAS adds, stays exact.
FLOAT32_EXACT_TERMS = (1 << 24) // (INPUT_OFFSET * INPUT_OFFSET)
# An offset input (x + 128, up to 255) is added in while its sum stays exact this long;
# past it, the offset's share is added after, from the weights' column sums.
FLOAT32_OFFSET_TERMS = (1 << 24) // ((2 * INPUT_OFFSET - 1) * INPUT_OFFSET)


def int8_matmul(x, weights, offset=0, weight_bound=INPUT_OFFSET, dtype=np.int64):
    """``(x + offset) @ weights`` for integer arrays of int8 inputs and weights of
    magnitude at most `weight_bound` (or those values already as float32), exactly,
    through BLAS in float32: a sum of more terms than float32 holds exactly runs in chunks
    that it does, added in `dtype`. (NumPy's integer matmul does not use BLAS: several times
    slower.) The results are `dtype`: int32 for a caller that knows every sum fits, half
    the bytes to convert and store."""
    x, weights = np.asarray(x, np.float32), np.asarray(weights, np.float32)
    terms = x.shape[-1]
    largest = max(INPUT_OFFSET - 1 + offset, INPUT_OFFSET - offset)   # of |x + offset|
    late_offset = offset and terms * largest * weight_bound > 1 << 24
    if offset and not late_offset:
        x = x + np.float32(offset)
    else:
        largest = INPUT_OFFSET
    exact = (1 << 24) // (largest * weight_bound)
    chunk = exact if terms <= exact else 1 << (exact.bit_length() - 1)   # BLAS-aligned
    if terms <= chunk:
        result = (x @ weights).astype(dtype)
    else:
        result = np.zeros((*x.shape[:-1], weights.shape[-1]), dtype)
        for first in range(0, terms, chunk):
            part = slice(first, first + chunk)
            result += (x[..., part] @ weights[part]).astype(dtype)
    if late_offset:
        result += offset * weights.sum(axis=0, dtype=np.float64).astype(dtype)
    return result
