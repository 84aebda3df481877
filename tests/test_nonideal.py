"""Non-idealities of the golden model: off is the ideal device, hand-derivable extremes,
and seeded reproducibility; and `tessera run` reporting them against the ideal run."""

import json
import re

import numpy as np
import pytest

from golden import AccelConfig, NonIdealities, crossbar_mvm, isa
from golden.device import Device
from golden.nonideal import AnalogTiles
from tessera.cli import main


def one_mvm(config, weights, x, nonideal=None, adc_shift=0):
    device = Device(config, nonideal)
    device.wmem[:config.rows, :config.cols] = weights
    device.amem[:len(x)] = x
    device.load_program(isa.encode_program([isa.program(0, 0), isa.mvm(0, len(x), 0, 0,
                                                                       adc_shift=adc_shift),
                                            isa.halt()]))
    assert device.run().done
    return device.psum[:len(x)]


@pytest.mark.parametrize("config", [AccelConfig(), AccelConfig(adc_bits=4)])
def test_perturbations_of_zero_are_the_ideal_crossbar(config):
    """A perturbation that never fires (a stuck rate of 1e-300) still takes the analog
    path: it must equal crossbar_mvm, ties rounded alike."""
    rng = np.random.default_rng(1)
    w, x = rng.integers(-128, 128, (16, 16)), rng.integers(-128, 128, (10, 16))
    tiles = AnalogTiles(config, NonIdealities(stuck_at_0=1e-300))
    tiles.program(0, w)
    for shift in range(config.max_adc_shift + 1):
        assert np.array_equal(tiles.mvm(0, x, shift), crossbar_mvm(config, x, w, shift))


def test_all_cells_stuck_read_nothing():
    """Every cell stuck at 0, or both cells of every pair stuck at the top level: each
    column count is 0, so every result is 0 whatever the weights."""
    rng = np.random.default_rng(2)
    w, x = rng.integers(-128, 128, (16, 16)), rng.integers(-128, 128, (5, 16))
    for stuck in (dict(stuck_at_0=1.0), dict(stuck_at_1=1.0)):
        assert not one_mvm(AccelConfig(), w, x, NonIdealities(**stuck)).any()
    assert one_mvm(AccelConfig(), w, x).any()


def test_seeded_and_reproducible():
    rng = np.random.default_rng(3)
    w, x = rng.integers(-128, 128, (16, 16)), rng.integers(-128, 128, (20, 16))
    noisy = lambda seed: one_mvm(AccelConfig(), w, x, NonIdealities(
        conductance_sigma=0.05, read_noise_sigma=0.5, adc_offset_sigma=0.3, adc_noise_sigma=0.3,
        stuck_at_0=0.01, seed=seed))
    assert np.array_equal(noisy(7), noisy(7))
    assert not np.array_equal(noisy(7), noisy(8))
    assert not np.array_equal(noisy(7), x @ w)
    assert not NonIdealities(seed=5).active


@pytest.mark.parametrize("bad, message", [
    (dict(conductance_sigma=-0.1), "NonIdealities.conductance_sigma must be a finite number >= 0"),
    (dict(stuck_at_0=0.7, stuck_at_1=0.5), "stuck_at_0 + stuck_at_1 must be at most 1"),
])
def test_bad_nonidealities_are_refused(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        NonIdealities(**bad)


def test_run_reports_the_impact_against_the_ideal_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mlp.npz", w0=rng.normal(0, 0.3, (40, 24)), b0=np.zeros(24),
             w1=rng.normal(0, 0.3, (24, 10)), b1=np.zeros(10))
    np.save(tmp_path / "x.npy", rng.uniform(0, 1, (60, 40)))
    np.save(tmp_path / "y.npy", rng.integers(0, 10, 60))
    compiled, out = tmp_path / "net.tessera", tmp_path / "run.json"
    assert main(["compile", str(tmp_path / "mlp.npz"), "--calibration", str(tmp_path / "x.npy"),
                 "--out", str(compiled)]) == 0
    argv = ["run", str(compiled), "--inputs", str(tmp_path / "x.npy"), "--labels",
            str(tmp_path / "y.npy"), "--out", str(out), "--conductance-sigma", "0.2",
            "--read-noise", "1", "--seed", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["nonideal"]["conductance_sigma"] == 0.2 and record["nonideal"]["seed"] == 3
    assert "against the ideal run" in printed and "points" in printed
    assert 0 <= record["top1_agreement_with_ideal"] < 1
    assert record["mean_abs_output_error_int8"] > 0
    assert main(argv) == 0                                        # seeded: the same again
    assert json.loads(out.read_text())["outputs_int8"] == record["outputs_int8"]
    with pytest.raises(SystemExit):
        main(argv + ["--stuck-at-0", "-1"])
    assert "--stuck-at-0: NonIdealities.stuck_at_0 must be a finite number >= 0" in capsys.readouterr().err


# Magnitudes: one conversion per column (8-bit cells, an 8-bit DAC: one slice, one step),
# a lossless ADC at shift 0, so each output is round(count + perturbation) and its spread
# is the perturbation's, derived by hand below.
WIDE = AccelConfig(rows=128, cols=128, cell_bits=8, dac_bits=8)


def outputs_of(nonideal, weights, x):
    """Every tile programmed with `weights`, run on `x`: (tiles, vectors, cols)."""
    tiles = AnalogTiles(WIDE, nonideal)
    for tile in range(WIDE.tiles):
        tiles.program(tile, weights)
    return np.stack([tiles.mvm(tile, x, 0) for tile in range(WIDE.tiles)])


@pytest.mark.parametrize("field, sigma", [("read_noise_sigma", 3.0), ("adc_noise_sigma", 2.0)])
def test_per_conversion_noise_has_its_sigma(field, sigma):
    """Zero weights: the count is 0, the output round(N(0, sigma)), whose standard
    deviation is sqrt(sigma**2 + 1/12) (rounding adds a uniform LSB's variance); 4 tiles x
    250 vectors x 128 columns = 128,000 conversions put the estimate within 1 %."""
    x = np.random.default_rng(2).integers(-128, 128, (250, WIDE.rows))
    out = outputs_of(NonIdealities(**{field: sigma}, seed=4), np.zeros((128, 128), int), x)
    assert abs(out.mean()) < 0.05
    assert abs(out.std() / np.sqrt(sigma ** 2 + 1 / 12) - 1) < 0.02


def test_adc_offsets_are_fixed_per_adc_with_their_sigma():
    """Each ADC's offset is drawn once: the same on every vector, N(0, 1.5) across the
    512 ADCs (sigma of the estimate ~3 %; rounding adds 1/12)."""
    x = np.random.default_rng(2).integers(-128, 128, (20, WIDE.rows))
    out = outputs_of(NonIdealities(adc_offset_sigma=1.5, seed=4), np.zeros((128, 128), int), x)
    assert (out == out[:, :1, :]).all()
    assert abs(out[:, 0, :].std() / np.sqrt(1.5 ** 2 + 1 / 12) - 1) < 0.12


def one_hot_reads(nonideal, weight=100):
    """Every cell read alone: row r's input 1, the others 0, weights all `weight` (a
    positive cell at that level, its negative cell at 0): (tiles * rows * cols,) counts."""
    return outputs_of(nonideal, np.full((128, 128), weight), np.eye(WIDE.rows, dtype=int)).ravel()


def test_conductance_variation_scales_each_cell():
    """A level-100 cell reads round(100 (1 + N(0, 0.05))): mean 100, sigma 5.0 over the
    65,536 cells (sigma of the estimate 0.3 %)."""
    reads = one_hot_reads(NonIdealities(conductance_sigma=0.05, seed=4))
    assert abs(reads.mean() - 100) < 0.3
    assert abs(reads.std() / np.sqrt(5.0 ** 2 + 1 / 12) - 1) < 0.015


def test_stuck_cells_come_at_their_rates():
    """Stuck at 0 with p0 = 0.2, at the top level (255) with p1 = 0.1, each cell of a pair
    drawn apart; a pair (100, 0) then reads, by hand: 100 if the positive cell is sound and
    the negative not stuck high, (1 - p0 - p1)(1 - p1) = 0.63; 0 if both read 0 or both
    255, p0 (1 - p1) + p1 p1 = 0.19; 255 for a high positive and a low negative, p1 (1 - p1)
    = 0.09; -155 for a sound positive and a high negative, 0.07; -255, p0 p1 = 0.02.
    65,536 pairs: each rate within 0.006 (3 sigma at most 0.0057)."""
    reads = one_hot_reads(NonIdealities(stuck_at_0=0.2, stuck_at_1=0.1, seed=4))
    expected = {100: 0.63, 0: 0.19, 255: 0.09, -155: 0.07, -255: 0.02}
    assert set(np.unique(reads)) == set(expected)
    for value, rate in expected.items():
        assert abs(np.mean(reads == value) - rate) < 0.006, value
