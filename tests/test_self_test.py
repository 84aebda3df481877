"""The built-in self test finds every stuck cell that can matter, and no others: on the
golden device (every check config, 1, 5 and 10 % stuck) and on the RTL with injected
faults. The injected map is the independent source; where the test cannot tell two
assignments of stuck-at-1 apart, the found map must compute exactly as the injected one."""

import numpy as np
import pytest

import golden
from firmware.runtime.self_test import SelfTestError, self_test, untestable_cells
from firmware.runtime.targets import drive_golden
from golden.device import Device
from golden.faults import STUCK_AT_0, STUCK_AT_1, FaultMap
from sim.check_configs import CONFIGS


def visible(faults):
    """The injected cells a self test can see: all but stuck-at-0 on untestable cells."""
    hidden = untestable_cells(faults.config)
    return {cell for cell in faults.faulty
            if not ((cell[1], cell[2]) in hidden and faults.states[cell] == STUCK_AT_0)}


def assert_computes_alike(found, injected, seed=0):
    """Random weights and inputs through every tile: the same results under both maps."""
    c, rng = injected.config, np.random.default_rng(seed)
    for tile in range(c.tiles):
        weights = rng.integers(-128, 128, (c.rows, c.cols))
        x = rng.integers(-128, 128, (64, c.rows))
        assert np.array_equal(
            golden.crossbar_mvm(c, x, weights, stuck=found.tile_states(tile)),
            golden.crossbar_mvm(c, x, weights, stuck=injected.tile_states(tile))), tile


def golden_self_test(faults):
    return drive_golden(Device(faults.config, faults=faults), self_test)


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.10])
@pytest.mark.parametrize("name", CONFIGS)
def test_golden_self_test_finds_every_visible_stuck_cell(name, fraction):
    injected = FaultMap.random(CONFIGS[name], fraction, seed=int(fraction * 100) + 3)
    report = golden_self_test(injected)
    assert set(report.faults.faulty) == visible(injected)
    assert_computes_alike(report.faults, injected)


def test_one_stuck_cell_found_with_its_type():
    config = golden.AccelConfig(tiles=2, rows=4, cols=2, cell_bits=2, adc_bits=8)
    states = np.zeros((2, 2, config.slices, 4, 2), np.uint8)
    states[1, 1, 2, 3, 0] = STUCK_AT_1          # tile 1, w- slice 2, row 3, column 0
    states[0, 0, 0, 1, 1] = STUCK_AT_0          # tile 0, w+ slice 0, row 1, column 1
    report = golden_self_test(FaultMap(config, states))
    assert report.faults.faulty == [(0, 0, 0, 1, 1), (1, 1, 2, 3, 0)]
    assert report.faults.states[1, 1, 2, 3, 0] == STUCK_AT_1
    assert report.faults.states[0, 0, 0, 1, 1] == STUCK_AT_0
    assert report.ambiguous_weights == 0


def test_a_healthy_device_has_no_stuck_cells():
    config = CONFIGS["lossy_shared_adc"]
    assert golden_self_test(FaultMap.none(config)).faults.faulty == []


def test_an_adc_too_narrow_for_one_cell_is_refused():
    config = golden.AccelConfig(tiles=1, rows=4, cols=2, cell_bits=4, adc_bits=4)
    with pytest.raises(SelfTestError, match="4-bit ADC tops out at 7, below a cell's 15"):
        golden_self_test(FaultMap.none(config))


RTL_CONFIGS = ("lossy_shared_adc", "narrow_cells_shifted_adc", "twelve_tiles_one_step")


@pytest.mark.parametrize("name", RTL_CONFIGS)
def test_rtl_self_test_finds_every_injected_stuck_cell(name, record_property):
    from sim.accelerator import run_accelerator_check

    config = CONFIGS[name]
    injected = FaultMap.random(config, 0.05, seed=RTL_CONFIGS.index(name) + 40)
    run = run_accelerator_check(config, order=("self_test",), faults=injected)
    assert run.tests == 1 and run.failed == 0, run.log_tail()
    figures = run.results["self_test"]
    found = FaultMap.from_json(figures["found"])
    record_property("rtl_check", (
        f"self test on the RTL {name} ({config.name}): {len(injected.faulty)} cells stuck "
        f"({injected.fraction:.1%}; {len(visible(injected))} can show), {len(found.faulty)} "
        f"found, {len(set(found.faulty) - set(injected.faulty))} false, {figures['runs']} runs, "
        f"{figures['device_cycles']} device cycles"))
    assert set(found.faulty) == visible(injected)
    assert_computes_alike(found, injected)


def test_bist_command_writes_the_map_it_found(tmp_path, capsys):
    from tessera.cli import main

    out = tmp_path / "faults.json"
    small = ["--tiles", "2", "--rows", "8", "--cols", "4"]
    assert main(["bist", "--inject", "0.05", "--seed", "2", "-o", str(out), *small]) == 0
    printed = capsys.readouterr().out
    config = golden.AccelConfig(tiles=2, rows=8, cols=4)
    injected = FaultMap.random(config, 0.05, seed=2)
    assert f"{len(injected.faulty)} injected, {len(injected.faulty)} found, 0 missed, 0 false" \
        in printed
    assert set(FaultMap.load(out).faulty) == set(injected.faulty)
    # The map found, injected again, is found again; a map of another config is refused.
    assert main(["bist", "--inject-map", str(out), "-o", str(tmp_path / "again.json"),
                 *small]) == 0
    assert FaultMap.load(tmp_path / "again.json") == FaultMap.load(out)
    with pytest.raises(SystemExit) as exit:
        main(["bist", "--inject-map", str(out), "-o", str(tmp_path / "x.json")])
    assert exit.value.code == 2 and "is for t2_r8_c4" in capsys.readouterr().err
