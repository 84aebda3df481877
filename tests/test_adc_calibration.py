"""Per-layer ADC calibration: errors measured against a naive model, the least-error shift
chosen, the shift carried into the MVMs, and a warning when a lossy ADC is not calibrated."""

import warnings

import numpy as np
import pytest

from firmware.compiler.adc_calibration import choose_adc_ranges, measure_ranges
from firmware.compiler.pipeline import LossyAdcWarning, compile_network, map_network
from firmware.frontend.network import Dense, Network
from firmware.compiler.quantize import quantize
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig, isa
from scalar_crossbar import scalar_crossbar

LOSSY = AccelConfig(adc_bits=4)          # 7 bits lossless: shifts 0..3


def one_layer(rng, k=32, n=16, weights=None):
    weights = rng.normal(0, 1, (k, n)) if weights is None else weights
    network = Network((Dense("fc", weights, np.zeros(n), relu=False),))
    x = rng.uniform(0, 1, (40, k))
    return network, x


def test_measured_errors_equal_a_naive_model():
    rng = np.random.default_rng(4)
    network, x = one_layer(rng)
    qnet = quantize(network, x)
    layer_map = map_network(qnet, LOSSY).layers[0]
    x_q = qnet.input.quantize(x)
    measured = measure_ranges(LOSSY, layer_map, x_q)
    w = qnet.layers[0].weights
    exact = x_q @ w
    for (offset, shift), (_, error, power) in measured.items():
        # Element by element: each 16-row block of K through the scalar statement, summed;
        # offset-binary inputs less 128 x the column sums of the weights.
        naive = np.array([sum(np.array(scalar_crossbar(LOSSY, row[b:b + 16], w[b:b + 16], shift,
                                                       offset)) for b in range(0, 32, 16))
                          for row in x_q]) - (128 * w.sum(axis=0) if offset else 0)
        assert error == pytest.approx(float(np.sum((naive - exact) ** 2)))
        assert power == pytest.approx(float(np.sum(exact.astype(float) ** 2)))
    assert len(measured) == 2 * (LOSSY.max_adc_shift + 1)


def test_large_counts_take_a_shift_and_small_ones_none():
    """Every weight at full scale (127: slices 3, 3, 3, 1): a column count of a slice sums
    3 over every row whose input bit is set, up to 48, far past a 4-bit code's 7, in either
    encoding (the inputs are uniform), so the least error is at a larger shift. One weight
    a column: a count is at most 3, it fits, and the first choice (two's complement, shift
    0) is exact."""
    rng = np.random.default_rng(5)
    for weights, expect_shift in ((np.ones((32, 16)), True), (np.eye(32, 16), False)):
        network, x = one_layer(rng, weights=weights)
        qnet = quantize(network, x)
        network_map = map_network(qnet, LOSSY)
        chosen = choose_adc_ranges(qnet, network_map, qnet.input.quantize(x))["fc"]
        measured = measure_ranges(LOSSY, network_map.layers[0], qnet.input.quantize(x))
        best_error = min(error for _, error, _ in measured.values())
        assert measured[chosen.offset_inputs, chosen.shift][1] == best_error
        assert (chosen.shift > 0) == expect_shift, chosen
        if not expect_shift:
            assert (chosen.offset_inputs, chosen.shift, best_error) == (False, 0, 0.0)
        assert chosen.sqnr_db >= chosen.sqnr_db_at_zero


def relu_mlp(rng):
    network = Network((Dense("fc0", rng.normal(0, 0.3, (32, 32)), np.zeros(32)),
                       Dense("fc1", rng.normal(0, 0.3, (32, 16)), np.zeros(16), relu=False)))
    return network, rng.uniform(0, 1, (60, 32))


def test_relu_outputs_take_offset_binary_inputs():
    """fc1's inputs are fc0's ReLU outputs, quantised with zero point -128: in two's
    complement nearly every one has its sign bit set, so the sign step's count sums the
    whole column; offset binary leaves that step nearly empty."""
    network, x = relu_mlp(np.random.default_rng(8))
    qnet = quantize(network, x)
    assert qnet.layers[1].input.zero_point == -128
    ranges = choose_adc_ranges(qnet, map_network(qnet, LOSSY), qnet.input.quantize(x))
    assert ranges["fc1"].offset_inputs
    assert ranges["fc1"].sqnr_db > ranges["fc1"].sqnr_db_at_zero + 6


def test_offset_inputs_are_exact_on_a_lossless_config(monkeypatch):
    """The bias's correction, 128 x each column's weight sum, is exact: with every layer
    forced to offset-binary inputs, a lossless config still equals the int8 reference."""
    import firmware.compiler.pipeline as compiler

    network, x = relu_mlp(np.random.default_rng(9))
    qnet = quantize(network, x)
    mapped = compiler.map_network

    def every_layer_offset(*args, **kwargs):
        network_map = mapped(*args, **kwargs)
        for lm in network_map.layers:
            lm.offset_inputs = True
        return network_map

    monkeypatch.setattr(compiler, "map_network", every_layer_offset)
    exe = compile_network(qnet, AccelConfig())
    flags = {isa.decode(words).offset_inputs for run in exe.plans[exe.batch] for words in run.program
             if isa.decode(words).opcode == isa.Opcode.MVM}
    x_q = qnet.input.quantize(x)
    assert flags == {True}
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))


def mvm_shifts(exe):
    return {isa.decode(words).adc_shift for run in exe.plans[exe.batch] for words in run.program
            if isa.decode(words).opcode == isa.Opcode.MVM}


def test_calibrated_shifts_reach_the_program_and_lower_the_error():
    rng = np.random.default_rng(6)
    network, x = one_layer(rng, weights=rng.uniform(0.8, 1, (32, 16)))   # near full scale: counts clip
    qnet = quantize(network, x)
    x_q = qnet.input.quantize(x)
    reference = qnet.forward(x_q)
    with pytest.warns(LossyAdcWarning, match="4-bit ADC is below the lossless 7 bits"):
        plain = compile_network(qnet, LOSSY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibrated = compile_network(qnet, LOSSY, adc_calibration=x)
    assert mvm_shifts(plain) == {0}
    chosen = choose_adc_ranges(qnet, map_network(qnet, LOSSY), x_q)["fc"].shift
    assert chosen > 0 and mvm_shifts(calibrated) == {chosen}
    assert any("calibrated per layer" in line for line in calibrated.summary)
    errors = [np.abs(GoldenTarget().run(exe, x_q).outputs - reference).mean() for exe in (plain, calibrated)]
    assert errors[1] < errors[0]


def test_calibration_at_the_widest_shift_compiles_and_runs():
    """A crossbar 15 bits above its ADC, the most an MVM's shift field reaches: calibration
    may choose any shift up to 15 and the program encodes it."""
    config = AccelConfig(tiles=4, rows=64, cols=16, cell_bits=8, dac_bits=8, adc_bits=7)
    rng = np.random.default_rng(9)
    network, x = one_layer(rng, k=64, weights=rng.uniform(0.8, 1, (64, 16)))
    qnet = quantize(network, x)
    exe = compile_network(qnet, config, adc_calibration=x)
    assert max(mvm_shifts(exe)) > 0 and mvm_shifts(exe) <= set(range(16))
    x_q = qnet.input.quantize(x)
    reference = qnet.forward(x_q)
    # measured: shift 12, every output within one LSB of the exact int8 network's
    assert np.abs(GoldenTarget().run(exe, x_q).outputs.astype(int) - reference).max() <= 1


def test_lossless_config_needs_no_calibration():
    rng = np.random.default_rng(7)
    network, x = one_layer(rng)
    qnet = quantize(network, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exe = compile_network(qnet, AccelConfig())
    assert mvm_shifts(exe) == {0}
    assert np.array_equal(GoldenTarget().run(exe, qnet.input.quantize(x)).outputs,
                          qnet.forward(qnet.input.quantize(x)))
