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
