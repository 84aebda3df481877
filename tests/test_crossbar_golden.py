"""Properties of the golden crossbar model, against independent references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scalar_crossbar import scalar_crossbar

from golden import (AccelConfig, adc_convert, column_counts, crossbar_mvm, input_levels, isa,
                    reference_mvm, weight_slices)


@st.composite
def configs(draw, lossless=True):
    cols = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    fields = dict(
        rows=cols * draw(st.integers(1, 40 // cols)), cols=cols,
        cell_bits=draw(st.sampled_from([1, 2, 4, 8])), dac_bits=draw(st.sampled_from([1, 2, 4, 8])))
    if not lossless:
        lossless_bits = AccelConfig(**fields).lossless_adc_bits
        fields["adc_bits"] = draw(st.integers(max(2, lossless_bits - isa.MAX_ADC_SHIFT),
                                              lossless_bits))
    return AccelConfig(**fields)


int8 = st.integers(-128, 127)


@st.composite
def problems(draw, lossless=True):
    config = draw(configs(lossless))
    batch = draw(st.integers(1, 6))
    x = draw(hnp.arrays(np.int64, (batch, config.rows), elements=int8))
    w = draw(hnp.arrays(np.int64, (config.rows, config.cols), elements=int8))
    return config, x, w, draw(st.integers(0, config.max_adc_shift)), draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(problems(lossless=True))
def test_lossless_config_is_exact(problem):
    config, x, w, _, offset = problem
    assert np.array_equal(crossbar_mvm(config, x, w, offset_inputs=offset),
                          (x + (128 if offset else 0)) @ w)


@settings(max_examples=150, deadline=None)
@given(problems(lossless=False))
def test_vectorised_model_equals_naive_statement(problem):
    config, x, w, adc_shift, offset = problem
    expected = [scalar_crossbar(config, row, w, adc_shift, offset) for row in x]
    assert crossbar_mvm(config, x, w, adc_shift, offset).tolist() == expected


def test_extremes_are_exact():
    config = AccelConfig()
    x = np.array([[-128] * 16, [127] * 16, [-128, 127] * 8])
    w = np.tile(np.array([-128, 127, -1, 0]), (16, 4))
    assert np.array_equal(crossbar_mvm(config, x, w), reference_mvm(x, w))


def test_counts_never_exceed_the_lossless_bound():
    rng = np.random.default_rng(3)
    for fields in [dict(), dict(dac_bits=2, cell_bits=4), dict(dac_bits=8, cell_bits=8)]:
        config = AccelConfig(**fields)
        x = np.vstack([rng.integers(-128, 128, (200, 16)), np.full((1, 16), -128)])
        w = np.vstack([rng.integers(-128, 128, (15, 16)), np.full((1, 16), -128)])
        counts = column_counts(config, x, w)
        assert np.abs(counts).max() <= config.max_column_count


def test_lossy_adc_saturates_at_both_ends():
    config = AccelConfig(adc_bits=4)
    counts = np.array([-100, -9, -8, 0, 7, 8, 100])
    assert adc_convert(config, counts).tolist() == [-8, -8, -8, 0, 7, 7, 7]
    # Steps of 4 counts, to the nearest (ties up): -9/4 = -2.25 -> -2, 7/4 = 1.75 -> 2.
    assert adc_convert(config, counts, adc_shift=2).tolist() == [-8, -2, -2, 0, 2, 2, 7]


def test_adc_shift_beyond_the_range_is_refused():
    config = AccelConfig(adc_bits=4)          # lossless is 7 bits: shifts 0..3
    assert config.max_adc_shift == 3
    with pytest.raises(ValueError, match="adc_shift must be in 0..3"):
        adc_convert(config, [0], adc_shift=4)
    assert AccelConfig().max_adc_shift == 0


def test_lossy_adc_loses_little_on_zero_mean_weights():
    """Why differential weights (docs/architecture.md): on a 128x128-class array with ReLU
    inputs, a 7-bit ADC against 10-bit lossless costs < 0.01 %; one bit fewer saturates,
    still under 1 %."""
    rng = np.random.default_rng(7)
    config = AccelConfig(rows=128, cols=32)
    assert config.lossless_adc_bits == 10
    w = np.clip(np.round(rng.normal(0, 30, (128, 32))), -128, 127).astype(np.int64)
    x = np.clip(np.round(np.abs(rng.normal(0, 40, (256, 128)))), 0, 127).astype(np.int64)
    exact = crossbar_mvm(config, x, w)

    def relative_error(adc_bits):
        lossy = AccelConfig(rows=128, cols=32, adc_bits=adc_bits)
        return np.abs(crossbar_mvm(lossy, x, w) - exact).sum() / np.abs(exact).sum()

    assert relative_error(7) < 1e-4
    assert 0 < relative_error(6) < 0.01


def test_encodings():
    config = AccelConfig()
    g_pos, g_neg = weight_slices(config, np.full((16, 16), -128))
    assert g_pos.sum() == 0 and g_neg[:, 0, 0].tolist() == [0, 0, 0, 2]
    levels = input_levels(config, np.array([[-1] * 16]))
    assert levels[:, 0, 0].tolist() == [1] * 7 + [-1]


@pytest.mark.parametrize("shape, message", [
    ((16, 15), r"weights must have shape \(16, 16\)"),
])
def test_bad_weight_shape(shape, message):
    with pytest.raises(ValueError, match=message):
        crossbar_mvm(AccelConfig(), np.zeros(16, int), np.zeros(shape, int))


def test_bad_values_name_the_position():
    w = np.zeros((16, 16), int)
    w[3, 5] = 200
    with pytest.raises(ValueError, match=r"weights\[3, 5\] = 200 is outside int8"):
        crossbar_mvm(AccelConfig(), np.zeros(16, int), w)
    with pytest.raises(TypeError, match="inputs must hold integers, not float64"):
        crossbar_mvm(AccelConfig(), np.zeros(16), np.zeros((16, 16), int))
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 16\)"):
        crossbar_mvm(AccelConfig(), np.zeros((2, 8), int), np.zeros((16, 16), int))


def test_int8_matmul_is_exact_at_the_extremes():
    """The float64 BLAS path equals integer arithmetic, even where every product is the
    largest (-128 x -128) and 4,096 of them add up."""
    from golden.crossbar import int8_matmul

    x = np.full((3, 4096), -128)
    w = np.full((4096, 5), -128)
    w[:, 1] = 127
    expected = [[4096 * 16384, -4096 * 16256] + [4096 * 16384] * 3] * 3
    assert np.array_equal(int8_matmul(x, w), np.array(expected))
    rng = np.random.default_rng(0)
    x, w = rng.integers(-128, 128, (50, 300)), rng.integers(-128, 128, (300, 40))
    assert np.array_equal(int8_matmul(x, w), reference_mvm(x, w))


def test_int8_matmul_is_exact_at_the_float32_limit_and_beyond():
    """int8 inputs: up to 1,024 terms a product runs in float32 at once, 1,024 x 128 x 128
    = 2**24 being the largest sum float32 still holds; longer sums run in chunks. Offset
    inputs (x + 128, up to 255) are added in up to 514 terms (514 x 255 x 128 =
    16,776,960 <= 2**24 < 515 x 255 x 128); past that the offset's share comes from the
    weights' column sums. All-extreme operands on both sides of each limit, and random
    ones, equal the sums worked out by hand and integer arithmetic."""
    from golden.crossbar import FLOAT32_EXACT_TERMS, FLOAT32_OFFSET_TERMS, int8_matmul

    assert 1024 * 128 * 128 == 1 << 24 and 514 * 255 * 128 <= 1 << 24 < 515 * 255 * 128
    assert (FLOAT32_EXACT_TERMS, FLOAT32_OFFSET_TERMS) == (1024, 514)
    for terms in (1024, 1025, 2100):                # a sum past 2**24 needs chunks
        x = np.full((2, terms), -128)
        w = np.full((terms, 3), -128)
        w[:, 1] = 127
        assert np.array_equal(int8_matmul(x, w), np.array(
            [[terms * 16384, -terms * 128 * 127, terms * 16384]] * 2))
    for terms in (514, 515, 1100):                  # offset inputs of 255
        x = np.full((2, terms), 127)
        w = np.full((terms, 3), -128)
        w[:, 1] = 127
        assert np.array_equal(int8_matmul(x, w, offset=128), np.array(
            [[-terms * 255 * 128, terms * 255 * 127, -terms * 255 * 128]] * 2))
    assert 1100 * 255 * 128 == 35_904_000 > 1 << 24
    rng = np.random.default_rng(1)
    for terms in (514, 515, 1024, 1025, 2100):
        x = rng.choice([-128, 127, 126, -127, 0, 1], (40, terms))
        w = rng.choice([-128, 127, -127, 126, 0], (terms, 24))
        exact = x.astype(np.int64) @ w.astype(np.int64)
        assert np.array_equal(int8_matmul(x, w), exact)
        offset_exact = (x.astype(np.int64) + 128) @ w.astype(np.int64)
        assert np.array_equal(int8_matmul(x, w, offset=128), offset_exact)
    # the weights a stuck cell makes reach 255: 2**24 // (255 * 255) = 258 terms at once
    x = np.full((1, 300), 127)
    w = np.full((300, 2), 255)
    assert np.array_equal(int8_matmul(x, w, offset=128, weight_bound=255),
                          np.array([[300 * 255 * 255] * 2]))
