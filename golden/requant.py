"""Requantisation of int32 accumulators to int8: the hardware's convention and two others.

The hardware implements :func:`requantize` (TFLite single rounding). The other
conventions differ from it by one LSB on ties only; they exist so that comparisons
against onnxruntime or gemmlowp can name their expected +-1 cases.
"""

import numpy as np

__all__ = ["INT32_MIN", "INT32_MAX", "MULTIPLIER_MAX", "SHIFT_MAX", "quantize_multiplier",
           "saturate_int32", "check_params", "checked_params", "requantize",
           "requantize_checked", "folded_params", "requantize_in_range",
           "requantize_gemmlowp", "requantize_float"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MULTIPLIER_MAX = INT32_MAX      # Q0.31 multiplier, non-negative
SHIFT_MAX = 31                  # extra right shift after the Q31 product


def quantize_multiplier(scale):
    """Return ``(multiplier, shift)`` with ``scale ~= multiplier * 2**-(31 + shift)``.

    `scale` must lie in ``[2**-32, 1)``, the range the hardware's right-only shift covers.
    """
    scale = float(scale)
    if not 2.0 ** -32 <= scale < 1.0:
        raise ValueError(f"requantisation scale must be in [2**-32, 1), not {scale!r}")
    mantissa, exponent = np.frexp(scale)          # scale = mantissa * 2**exponent, mantissa in [0.5, 1)
    multiplier = int(round(mantissa * (1 << 31)))
    if multiplier == 1 << 31:                    # mantissa rounded up to 1.0
        multiplier //= 2
        exponent += 1
    if exponent > 0:                             # scale within 2**-32 of 1: no left shift
        return MULTIPLIER_MAX, 0
    return multiplier, -int(exponent)


def saturate_int32(values):
    return np.minimum(np.maximum(values, INT32_MIN), INT32_MAX)   # np.clip, without its overhead


def check_params(multiplier, shift):
    """The multipliers and shifts as int64 arrays; ValueError when one is out of range."""
    multiplier, shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
    if np.any((multiplier < 0) | (multiplier > MULTIPLIER_MAX)):
        raise ValueError(f"multiplier must be in 0..{MULTIPLIER_MAX}, not {multiplier!r}")
    if np.any((shift < 0) | (shift > SHIFT_MAX)):
        raise ValueError(f"shift must be in 0..{SHIFT_MAX}, not {shift!r}")
    return multiplier, shift


def _finish(scaled, zero_point, clamp_min, clamp_max):
    return np.minimum(np.maximum(scaled + np.asarray(zero_point, np.int64), clamp_min),
                      clamp_max).astype(np.int64)


def requantize(acc, bias, multiplier, shift, zero_point=0, clamp_min=-128, clamp_max=127):
    """The hardware's requantisation, per output channel (parameters broadcast over `acc`).

    1. ``a = saturate_int32(acc + bias)``
    2. ``y = (a * multiplier + 2**(30 + shift)) >> (31 + shift)``: TFLite's single
       rounding, one rounding step, **ties toward +infinity** (the shift floors).
    3. ``clamp(y + zero_point, clamp_min, clamp_max)``; ``clamp_min = zero_point``
       gives ReLU.
    """
    return requantize_checked(acc, checked_params(bias, multiplier, shift, zero_point,
                                                  clamp_min, clamp_max))


def checked_params(bias, multiplier, shift, zero_point=0, clamp_min=-128, clamp_max=127):
    """`requantize`'s parameters checked (ValueError when out of range) and made ready:
    int64 arrays, the shift as the total right shift and its rounding constant. For a
    caller that uses one set many times (the device, per qmem entry)."""
    multiplier, shift = check_params(multiplier, shift)
    total = 31 + shift
    as_array = lambda value: np.asarray(value, np.int64)
    return {"bias": as_array(bias), "multiplier": multiplier, "total": total,
            "rounding": np.int64(1) << (total - 1), "zero_point": as_array(zero_point),
            "clamp_min": as_array(clamp_min), "clamp_max": as_array(clamp_max)}


def requantize_checked(acc, params):
    """`requantize` with parameters from `checked_params`: the same steps, in place."""
    a = np.asarray(np.add(acc, params["bias"], dtype=np.int64))      # a new array, 0-d too
    np.maximum(a, INT32_MIN, out=a)                             # saturate_int32 (np.clip
    np.minimum(a, INT32_MAX, out=a)                             # checks its bounds: slower)
    a *= params["multiplier"]
    a += params["rounding"]
    a >>= params["total"]
    a += params["zero_point"]
    np.maximum(a, params["clamp_min"], out=a)
    return np.minimum(a, params["clamp_max"], out=a)


def folded_params(params):
    """`checked_params` with what `requantize_in_range` needs: ``bias * multiplier +
    rounding`` as one constant (below 2**63: the bias is int32, the multiplier below
    2**31, the rounding at most 2**61) and the largest bias magnitude."""
    folded = params["bias"] * params["multiplier"] + params["rounding"]
    return {**params, "folded": folded, "bias_bound": int(np.abs(params["bias"]).max())}


def requantize_in_range(acc, params):
    """`requantize_checked` for accumulators that the caller knows lie within
    ``INT32_MAX - params["bias_bound"]`` of zero, so that ``acc + bias`` never saturates:
    ``(acc * multiplier + folded) >> total``, the same value in three passes fewer."""
    a = np.asarray(np.multiply(acc, params["multiplier"], dtype=np.int64))     # 0-d too
    a += params["folded"]
    a >>= params["total"]
    a += params["zero_point"]
    np.maximum(a, params["clamp_min"], out=a)
    return np.minimum(a, params["clamp_max"], out=a)


def requantize_gemmlowp(acc, bias, multiplier, shift, zero_point=0, clamp_min=-128, clamp_max=127):
    """gemmlowp's double rounding: SaturatingRoundingDoublingHighMul (its nudge makes
    **ties go up**), then RoundingDivideByPOT (**ties away from zero**)."""
    multiplier, shift = check_params(multiplier, shift)
    a = saturate_int32(np.asarray(acc, np.int64) + np.asarray(bias, np.int64))
    product = a * multiplier
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    # C integer division truncates toward zero.
    nudged = product + nudge
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    mask = (np.int64(1) << shift) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    scaled = (high >> shift) + (remainder > threshold)
    return _finish(scaled, zero_point, clamp_min, clamp_max)


def requantize_float(acc, bias, multiplier, shift, zero_point=0, clamp_min=-128, clamp_max=127):
    """onnxruntime's convention: a float scale, rounding **ties to even**."""
    multiplier, shift = check_params(multiplier, shift)
    a = saturate_int32(np.asarray(acc, np.int64) + np.asarray(bias, np.int64))
    scale = multiplier.astype(np.float64) / np.exp2(31 + shift.astype(np.float64))
    scaled = np.rint(a.astype(np.float64) * scale).astype(np.int64)
    return _finish(scaled, zero_point, clamp_min, clamp_max)
