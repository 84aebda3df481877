"""Requantisation: the hardware's convention pinned on ties and edges, the others named."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import quantize_multiplier, requantize, requantize_float, requantize_gemmlowp
from golden.requant import (INT32_MAX, INT32_MIN, checked_params, clamped_params,
                            requantize_clamped)

HALF = 1 << 30          # Q31 multiplier for a scale of 0.5
WIDE = dict(clamp_min=-(1 << 40), clamp_max=1 << 40)   # to see the unclamped value


@pytest.mark.parametrize("acc, shift, tflite, gemmlowp, onnx", [
    # value = acc * 0.5 / 2**shift; exact ties of both signs. With shift 0 the tie falls
    # in gemmlowp's doubling high-mul (ties up); with shift > 0 in its divide (ties away).
    (1, 0, 1, 1, 0),        # +0.5
    (-1, 0, 0, 0, 0),       # -0.5
    (3, 0, 2, 2, 2),        # +1.5
    (-3, 0, -1, -1, -2),    # -1.5
    (5, 0, 3, 3, 2),        # +2.5
    (-5, 0, -2, -2, -2),    # -2.5
    (2, 1, 1, 1, 0),        # +0.5 through the extra shift
    (-2, 1, 0, -1, 0),      # -0.5 through the extra shift
    (-6, 1, -1, -2, -2),    # -1.5 through the extra shift
    (4, 0, 2, 2, 2),        # not a tie
])
def test_ties_per_convention(acc, shift, tflite, gemmlowp, onnx):
    assert requantize(acc, 0, HALF, shift, **WIDE) == tflite
    assert requantize_gemmlowp(acc, 0, HALF, shift, **WIDE) == gemmlowp
    assert requantize_float(acc, 0, HALF, shift, **WIDE) == onnx


def test_int32_extremes_and_largest_multiplier():
    m = INT32_MAX        # scale 1 - 2**-31
    assert requantize(INT32_MIN, 0, m, 0, **WIDE) == INT32_MIN + 1
    assert requantize(INT32_MAX, 0, m, 0, **WIDE) == INT32_MAX - 1
    assert requantize(INT32_MIN, 0, m, 0) == -128
    assert requantize(INT32_MAX, 0, m, 0) == 127
    assert requantize_gemmlowp(INT32_MIN, 0, m, 0, **WIDE) == INT32_MIN + 1


def test_shift_31():
    m = INT32_MAX        # value = acc * (1 - 2**-31) / 2**31
    assert requantize(INT32_MAX, 0, m, 31) == 1
    assert requantize(1 << 30, 0, m, 31) == 0          # just under +0.5
    assert requantize(INT32_MIN, 0, m, 31) == -1       # just over -1.0 ... rounds to -1
    assert requantize(-(1 << 30), 0, m, 31) == 0       # just over -0.5


def test_bias_saturates_and_clamp_gives_relu():
    assert requantize(INT32_MAX, 1, HALF, 0, **WIDE) == 1 << 30     # saturated, then halved
    assert requantize(INT32_MIN, -1, HALF, 0, **WIDE) == -(1 << 30)
    relu = dict(zero_point=-20, clamp_min=-20, clamp_max=127)
    assert requantize(np.array([-100, 0, 100]), 0, HALF, 0, **relu).tolist() == [-20, -20, 30]
    assert requantize(400, 0, HALF, 0, zero_point=5) == 127
    assert requantize(-400, 0, HALF, 0, zero_point=5) == -128


def test_per_channel_parameters_broadcast():
    acc = np.array([[10, 10, 10], [-10, -10, -10]])
    out = requantize(acc, np.array([0, 2, -2]), np.array([HALF, HALF, HALF]), np.array([0, 1, 0]))
    assert out.tolist() == [[5, 3, 4], [-5, -2, -6]]


def test_bad_parameters():
    with pytest.raises(ValueError, match="shift must be in 0..31"):
        requantize(1, 0, HALF, 32)
    with pytest.raises(ValueError, match="multiplier must be in 0..2147483647"):
        requantize(1, 0, -1, 0)
    for scale in (0.0, 1.0, -0.5, 2.0 ** -40):
        with pytest.raises(ValueError, match=r"scale must be in \[2\*\*-32, 1\)"):
            quantize_multiplier(scale)


def test_quantize_multiplier_examples():
    assert quantize_multiplier(0.5) == (HALF, 0)
    assert quantize_multiplier(0.25) == (HALF, 1)


int32 = st.integers(INT32_MIN, INT32_MAX)


@settings(max_examples=500, deadline=None)
@given(acc=int32, bias=st.integers(-(1 << 20), 1 << 20),
       multiplier=st.integers(0, INT32_MAX), shift=st.integers(0, 31))
def test_single_rounding_is_round_half_up_of_the_exact_value(acc, bias, multiplier, shift):
    a = min(max(acc + bias, INT32_MIN), INT32_MAX)
    exact = Fraction(a * multiplier, 1 << (31 + shift))
    expected = floor(exact + Fraction(1, 2))
    assert requantize(acc, bias, multiplier, shift, **WIDE) == expected
    # The other conventions differ by at most one LSB (ties, double rounding, float).
    assert abs(requantize_gemmlowp(acc, bias, multiplier, shift, **WIDE) - expected) <= 1
    assert abs(requantize_float(acc, bias, multiplier, shift, **WIDE) - expected) <= 1


def _by_hand(acc, bias, multiplier, shift, zero_point, clamp_min, clamp_max):
    """The hardware's requantisation of one value, worked out from its definition."""
    a = min(max(acc + bias, INT32_MIN), INT32_MAX)
    y = floor(Fraction(a * multiplier, 1 << (31 + shift)) + Fraction(1, 2)) + zero_point
    return min(max(y, clamp_min), clamp_max)


int8 = st.integers(-128, 127)


@settings(max_examples=1000, deadline=None)
@given(acc=st.lists(st.one_of(int32, st.integers(-(1 << 33), 1 << 33)), min_size=1, max_size=8),
       bias=int32, multiplier=st.one_of(st.integers(0, INT32_MAX), st.just(0)),
       shift=st.integers(0, 24), zero_point=int8, clamp_min=int8, clamp_max=int8)
def test_the_clamped_form_equals_the_definition(acc, bias, multiplier, shift, zero_point,
                                                clamp_min, clamp_max):
    """`requantize_clamped` (one clamp of the accumulator, then one multiply-add-shift)
    against the definition by hand, saturating sums, constant channels (a multiplier of
    0, a clamp range that the values never reach, clamp_min above clamp_max) and
    accumulators beyond int32 included."""
    params = clamped_params(checked_params(bias, multiplier, shift, zero_point, clamp_min,
                                           clamp_max))
    got = requantize_clamped(np.array(acc, np.int64), params)
    assert got.tolist() == [_by_hand(a, bias, multiplier, shift, zero_point, clamp_min,
                                     clamp_max) for a in acc]


def test_the_clamped_form_at_its_thresholds_and_its_limits():
    """Channel by channel at the accumulators where the output first reaches the clamp
    bounds and where the sum saturates; and no clamped form where int64 could overflow."""
    bias = np.array([0, 100, -100, INT32_MAX, INT32_MIN])
    params = checked_params(bias, HALF, 4, 3, -5, 9)        # y = (acc + bias) / 32 + 3
    clamped = clamped_params(params)
    acc = np.array([-273, -272, -257, -256, 0, 207, 208, 209, INT32_MAX, INT32_MIN])
    got = requantize_clamped(acc[:, None], clamped)
    for column, b in enumerate(bias.tolist()):
        assert got[:, column].tolist() == [_by_hand(a, b, HALF, 4, 3, -5, 9)
                                           for a in acc.tolist()]
    assert clamped_params(checked_params(0, HALF, 24, 0)) is not None      # total 55
    assert clamped_params(checked_params(0, HALF, 25, 0)) is None          # 128 << 56
    assert clamped_params(checked_params(0, HALF, 0, 0, **WIDE)) is None


@settings(max_examples=300, deadline=None)
@given(st.floats(2.0 ** -32, 1.0, exclude_max=True))
def test_quantize_multiplier_is_accurate(scale):
    multiplier, shift = quantize_multiplier(scale)
    assert 0 <= shift <= 31 and (1 << 30) <= multiplier <= INT32_MAX
    assert abs(multiplier / 2.0 ** (31 + shift) - scale) <= scale * 2.0 ** -31
