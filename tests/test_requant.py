"""Requantisation: the hardware's convention pinned on ties and edges, the others named."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import quantize_multiplier, requantize, requantize_float, requantize_gemmlowp
from golden.requant import (INT32_MAX, INT32_MIN, checked_params, folded_params,
                            requantize_in_range)

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


@settings(max_examples=500, deadline=None)
@given(data=st.data(), bias=st.integers(INT32_MIN + 1, INT32_MAX),
       multiplier=st.integers(0, INT32_MAX), shift=st.integers(0, 31),
       zero_point=st.integers(-128, 127))
def test_the_folded_form_is_exact_wherever_the_bias_cannot_saturate(
        data, bias, multiplier, shift, zero_point):
    """`requantize_in_range` (bias and rounding folded into one constant, no saturation)
    against the exact value by hand, for accumulators up to the bound it is given."""
    bound = INT32_MAX - abs(bias)
    acc = data.draw(st.integers(-bound, bound))
    params = folded_params(checked_params(bias, multiplier, shift, zero_point, **WIDE))
    assert params["bias_bound"] == abs(bias)
    exact = Fraction((acc + bias) * multiplier, 1 << (31 + shift))
    assert requantize_in_range(acc, params) == floor(exact + Fraction(1, 2)) + zero_point


@settings(max_examples=300, deadline=None)
@given(st.floats(2.0 ** -32, 1.0, exclude_max=True))
def test_quantize_multiplier_is_accurate(scale):
    multiplier, shift = quantize_multiplier(scale)
    assert 0 <= shift <= 31 and (1 << 30) <= multiplier <= INT32_MAX
    assert abs(multiplier / 2.0 ** (31 + shift) - scale) <= scale * 2.0 ** -31
