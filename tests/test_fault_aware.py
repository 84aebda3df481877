"""Mapping around stuck cells (`firmware.compiler.fault_aware`): hand-derived writes, exact
outputs where the stuck cells' rows rest, and the user's flow bist -> compile -> run."""

import numpy as np

import golden
from firmware.compiler.build import build_executable
from firmware.compiler.fault_aware import compensate
from firmware.frontend.network import Dense, Network
from firmware.runtime.targets import GoldenTarget
from golden.crossbar import read_weights
from golden.faults import OK, STUCK_AT_0, STUCK_AT_1, FaultMap, cell_shape

CONFIG = golden.AccelConfig(tiles=1, rows=16, cols=16)


def test_a_weight_is_written_on_the_other_side_when_that_reads_exact():
    # w = 5 with its w+ slice-1 cell stuck at 3 reads 1 + 3*4 = 13 written as 5; written
    # -7 it reads 12 (the stuck cell) - 7 (w-) = 5.
    config = golden.AccelConfig(tiles=1, rows=4, cols=2)
    states = np.zeros(cell_shape(config), np.uint8)
    states[0, 1, 0, 0] = STUCK_AT_1
    weights = np.zeros((4, 2), np.int64)
    weights[0, 0] = 5
    assert read_weights(config, weights, states)[0, 0] == 13
    written = compensate(config, weights, states)
    assert written[0, 0] == -7 and read_weights(config, written, states)[0, 0] == 5
    assert (written[1:] == 0).all() and written[0, 1] == 0


def rest_row_network(rng):
    """One layer, so that one tile block holds every weight (a second layer on the same
    tile would read the faulty row with active inputs)."""
    return Network((Dense("fc0", rng.normal(0, 0.4, (16, 10)), rng.normal(0, 0.1, 10),
                          relu=False),), (16,))


def test_stuck_cells_on_resting_rows_cost_nothing_once_mapped_around():
    """Feature 3 is always 0 (its zero point): stuck cells anywhere on its row add only a
    constant, which the remapped bias takes back exactly, top slices included; the
    unaware executable's outputs differ. The reference is the int8 network's own forward
    pass."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (200, 16))
    x[:, 3] = 0.0
    build = build_executable(rest_row_network(rng), CONFIG, x)
    exe = build.executable
    row = exe.input.row_index[3]                      # where the host puts feature 3
    states = np.zeros((1, *cell_shape(CONFIG)), np.uint8)
    states[0, :, :, row, :] = rng.choice([OK, STUCK_AT_0, STUCK_AT_1], (2, CONFIG.slices, 16))
    states[0, 0, CONFIG.slices - 1, row, 0] = STUCK_AT_1          # a top slice: +192
    faults = FaultMap(CONFIG, states)
    x_q = exe.input.quantize(x)
    assert exe.input.quantize(np.zeros((1, 16)))[0, 3] == build.quantized.input.zero_point
    reference = build.quantized.forward(x_q)
    unaware = GoldenTarget(faults=faults).run(exe, x_q).outputs
    aware = build_executable(build.quantized, CONFIG, faults=faults).executable
    assert not np.array_equal(unaware, reference)
    assert np.array_equal(GoldenTarget(faults=faults).run(aware, x_q).outputs, reference)


def test_calibration_means_take_back_what_a_constant_input_adds():
    """Feature 3 is always 0.5, not its zero point: the bias corrected for inputs at rest
    leaves its row's stuck cells in the outputs; corrected for the calibration means
    (here exactly that constant) it takes them back exactly."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (200, 16))
    x[:, 3] = 0.5
    build = build_executable(rest_row_network(rng), CONFIG, x)
    exe = build.executable
    states = np.zeros((1, *cell_shape(CONFIG)), np.uint8)
    states[0, 0, CONFIG.slices - 1, exe.input.row_index[3], :] = STUCK_AT_1
    faults = FaultMap(CONFIG, states)
    x_q = exe.input.quantize(x)
    reference = build.quantized.forward(x_q)
    at_rest = build_executable(build.quantized, CONFIG, faults=faults).executable
    calibrated = build_executable(build.quantized, CONFIG, faults=faults,
                                  adc_calibration=x).executable
    assert not np.array_equal(GoldenTarget(faults=faults).run(at_rest, x_q).outputs, reference)
    assert np.array_equal(GoldenTarget(faults=faults).run(calibrated, x_q).outputs, reference)


def test_no_stuck_cells_change_nothing():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (50, 16))
    build = build_executable(rest_row_network(rng), CONFIG, x)
    aware = build_executable(build.quantized, CONFIG, faults=FaultMap.none(CONFIG)).executable
    x_q = build.executable.input.quantize(x)
    assert np.array_equal(GoldenTarget().run(aware, x_q).outputs, build.quantized.forward(x_q))


def mlp_build(config, seed, samples):
    """An MLP 64-48-10 of random weights built for `config`: (build, float inputs, int8
    inputs, the int8 reference's outputs)."""
    rng = np.random.default_rng(seed)
    network = Network((Dense("fc0", rng.normal(0, 0.2, (64, 48)), np.zeros(48)),
                       Dense("fc1", rng.normal(0, 0.2, (48, 10)), np.zeros(10), relu=False)),
                      (64,))
    x = rng.uniform(0, 1, (samples, 64))
    build = build_executable(network, config, x)
    x_q = build.executable.input.quantize(x)
    return build, x, x_q, build.quantized.forward(x_q)


def test_mapping_around_random_stuck_cells_brings_outputs_closer():
    """1 % stuck cells on a two-tile device: the remapped executable's outputs lie nearer the
    int8 reference than the unaware one's."""
    config = golden.AccelConfig(tiles=2, rows=16, cols=16)
    build, x, x_q, reference = mlp_build(config, seed=2, samples=300)
    errors = []
    for seed in range(3):
        faults = FaultMap.random(config, 0.01, seed)
        aware = build_executable(build.quantized, config, faults=faults).executable
        errors.append([np.abs(GoldenTarget(faults=faults).run(exe, x_q).outputs - reference).mean()
                       for exe in (build.executable, aware)])
    unaware, aware = np.mean(errors, axis=0)
    assert aware < 0.5 * unaware, errors


def test_user_flow_bist_compile_run(tmp_path, capsys):
    """`tessera bist` writes the device's map, `compile --fault-map` maps around it, and
    `run --fault-map` runs it on the golden device with those cells stuck."""
    import json

    from tessera.cli import main

    rng = np.random.default_rng(3)
    np.savez(tmp_path / "mlp.npz", w0=rng.normal(0, 0.3, (40, 24)), b0=np.zeros(24),
             w1=rng.normal(0, 0.3, (24, 10)), b1=np.zeros(10))
    np.save(tmp_path / "calib.npy", rng.uniform(0, 1, (100, 40)))
    np.save(tmp_path / "inputs.npy", rng.uniform(0, 1, (60, 40)))
    small = ["--tiles", "2"]
    faults, compiled = tmp_path / "faults.json", tmp_path / "net.tessera"
    assert main(["bist", "--inject", "0.01", "--seed", "4", "-o", str(faults), *small]) == 0
    assert main(["compile", str(tmp_path / "mlp.npz"), "--calibration",
                 str(tmp_path / "calib.npy"), "--fault-map", str(faults), "--fault-pairs",
                 "--out", str(compiled), *small]) == 0
    assert "each block split over two tiles" in capsys.readouterr().out
    run_json = tmp_path / "run.json"
    assert main(["run", str(compiled), "--inputs", str(tmp_path / "inputs.npy"), "--fault-map",
                 str(faults), "--out", str(run_json)]) == 0
    printed = capsys.readouterr().out
    record = json.loads(run_json.read_text())
    assert record["fault_map"]["stuck_cells"] == len(FaultMap.load(faults).faulty) > 0
    assert "stuck cells" in printed and "against the ideal run" not in printed


def test_pairs_split_a_block_around_both_tiles_cells():
    """Tile 0's top w+ cell of weight (0, 0) is stuck at 1: alone it reads at least
    192 - 128 = 64 there, whatever is written, for a weight of 10. Split over tile 0 and
    a fault-free tile 1 (tile 1 writing about 10 - 64), the pair reads every weight
    exactly; the other weights stay (w, 0)."""
    from firmware.compiler.fault_aware import FaultAwareWrites

    config = golden.AccelConfig(tiles=2, rows=4, cols=2)
    states = np.zeros((2, *cell_shape(config)), np.uint8)
    states[0, 0, config.slices - 1, 0, 0] = STUCK_AT_1
    weights = np.array([[10, 3], [0, -5], [7, 1], [-2, 0]])
    faults = FaultMap(config, states)
    first, second = FaultAwareWrites(faults).write_pair([0, 1], weights)
    reads = (read_weights(config, first, faults.tile_states(0))
             + read_weights(config, second, faults.tile_states(1)))
    assert np.array_equal(reads, weights)
    assert read_weights(config, first, faults.tile_states(0))[0, 0] >= 64
    assert np.array_equal(first[1:], weights[1:]) and not second[1:].any()


def test_pairs_compile_to_exact_outputs_without_faults_and_closer_with():
    config = golden.AccelConfig(tiles=4, rows=16, cols=16)
    build, x, x_q, reference = mlp_build(config, seed=5, samples=200)
    none = FaultMap.none(config)
    paired = build_executable(build.quantized, config, faults=none, fault_pairs=True)
    run = GoldenTarget(faults=none).run(paired.executable, x_q)
    assert np.array_equal(run.outputs, reference)
    assert run.counters["cycles"] > GoldenTarget().run(build.executable, x_q).counters["cycles"]
    faults = FaultMap.random(config, 0.05, seed=1)
    errors = [np.abs(GoldenTarget(faults=faults).run(build_executable(
        build.quantized, config, faults=faults, adc_calibration=x, fault_pairs=pairs
    ).executable, x_q).outputs - reference).mean() for pairs in (False, True)]
    assert errors[1] < 0.5 * errors[0], errors
