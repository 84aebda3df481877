"""Requantisation of int32 accumulators to int8: the hardware's convention and two others.

The hardware implements :func:`requantize` (TFLite single rounding). The other
conventions differ from it by one LSB on ties only; they exist so that comparisons
against onnxruntime or gemmlowp can name their expected +-1 cases.
"""

import numpy as np

__all__ = ["INT32_MIN", "INT32_MAX", "MULTIPLIER_MAX", "SHIFT_MAX", "quantize_multiplier",
           "saturate_int32", "check_params", "checked_params", "requantize",
           "requantize_checked", "clamped_params", "requantize_clamped",
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


def clamped_params(params):
    """`checked_params` in the form `requantize_clamped` runs, or None where that form could
    overflow int64 (a clamp bound past int8's, or a total shift past 55 bits).

    Each channel's output is a non-decreasing function of ``s = saturate_int32(acc +
    bias)`` that rises by at most 1 a step (the scale is below 1), so the clamp to
    ``clamp_min .. clamp_max`` is a clamp of `acc` to ``low .. high`` (saturation
    included: both are worked out within int32), after which ``(acc * multiplier +
    folded) >> total`` lies within the clamp bounds, with ``folded = bias * multiplier +
    rounding + zero_point << total``. A channel whose output is the same for every `s`
    becomes that constant (multiplier 0, total 0)."""
    names = ("bias", "multiplier", "total", "zero_point", "clamp_min", "clamp_max")
    shape = np.broadcast_shapes(*(np.shape(params[name]) for name in names))
    channels = zip(*(np.broadcast_to(params[name], shape).ravel().tolist() for name in names))
    columns = [_clamped_channel(*channel) for channel in channels]
    if None in columns:
        return None
    low, high, multiplier, folded, total = (np.array(column, np.int64).reshape(shape)
                                            for column in zip(*columns))
    return {"low": low, "high": high, "multiplier": multiplier, "folded": folded,
            "total": total}


def _clamped_channel(bias, multiplier, total, zero_point, clamp_min, clamp_max):
    """(low, high, multiplier, folded, total) of one channel for `clamped_params` (exact,
    in Python's integers), or None."""
    if max(abs(clamp_min), abs(clamp_max) + 1) << total >= 1 << 63:
        return None
    rounding = 1 << (total - 1)
    output = lambda s: ((s * multiplier + rounding) >> total) + zero_point
    bottom, top = output(INT32_MIN), output(INT32_MAX)
    if clamp_min > clamp_max or top <= clamp_min or bottom >= clamp_max:
        constant = min(max(bottom if bottom >= clamp_max else top, clamp_min), clamp_max)
        return 0, 0, 0, constant, 0
    # the first s whose output reaches clamp_min, and the last that stays within clamp_max
    first = INT32_MIN if bottom >= clamp_min else \
        -((rounding - ((clamp_min - zero_point) << total)) // multiplier)
    last = INT32_MAX if top <= clamp_max else \
        (((clamp_max - zero_point + 1) << total) - rounding - 1) // multiplier
    folded = bias * multiplier + rounding + (zero_point << total)
    folded = (folded + (1 << 63)) % (1 << 64) - (1 << 63)     # int64 arithmetic wraps
    return first - bias, last - bias, multiplier, folded, total


def requantize_clamped(acc, params):
    """`requantize_checked` with parameters from `clamped_params`: a clamp of `acc` and
    ``(acc * multiplier + folded) >> total``, four passes fewer. The product and the sum
    may wrap int64 on the way; their result does not (`clamped_params`), so it is exact."""
    a = np.asarray(np.maximum(acc, params["low"], dtype=np.int64))    # 0-d too: wraps
    np.minimum(a, params["high"], out=a)
    a *= params["multiplier"]
    a += params["folded"]
    a >>= params["total"]
    return a


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
