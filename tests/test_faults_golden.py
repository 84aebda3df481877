"""The fault model: hand-derived products with stuck cells, the fault map's file format and
its errors."""

import json

import numpy as np
import pytest

import golden
from golden.device import Device
from golden.faults import STUCK_AT_0, STUCK_AT_1, FaultMap, FaultMapError, cell_shape

CONFIG = golden.AccelConfig(tiles=2, rows=4, cols=2, cell_bits=2, adc_bits=8)


def one_stuck(config, side, s, row, col, state):
    states = np.zeros(cell_shape(config), np.uint8)
    states[side, s, row, col] = state
    return states


def test_stuck_at_1_cell_adds_its_top_level_at_its_slice():
    # w = 0 everywhere; the w+ cell of slice 1 (bits 2-3) at row 0, column 0 reads 3:
    # the weight reads 3 << 2 = 12, so x = 5 on row 0 gives 60 in column 0, 0 in column 1.
    stuck = one_stuck(CONFIG, 0, 1, 0, 0, STUCK_AT_1)
    x = np.array([5, 0, 0, 0])
    zero = np.zeros((4, 2), np.int64)
    assert golden.crossbar_mvm(CONFIG, x, zero, stuck=stuck).tolist() == [60, 0]


def test_stuck_at_0_cell_drops_its_bits():
    # w = -128 at row 2, column 1 is w- = 128 = 2 << 6: only slice 3's w- cell holds it.
    # Stuck at 0 it reads 0; x = -3 on row 2 then gives 0 instead of 384.
    weights = np.zeros((4, 2), np.int64)
    weights[2, 1] = -128
    x = np.array([0, 0, -3, 0])
    stuck = one_stuck(CONFIG, 1, 3, 2, 1, STUCK_AT_0)
    assert golden.crossbar_mvm(CONFIG, x, weights).tolist() == [0, 384]
    assert golden.crossbar_mvm(CONFIG, x, weights, stuck=stuck).tolist() == [0, 0]


def test_a_whole_byte_cell_stuck_at_1_reads_128_not_255():
    config = golden.AccelConfig(tiles=1, rows=2, cols=1, cell_bits=8, dac_bits=8)
    stuck = one_stuck(config, 1, 0, 1, 0, STUCK_AT_1)        # the w- cell of row 1
    weights = np.array([[0], [100]])
    # w+ = 100 and w- = 128 on row 1: it reads -28; x = 2 gives -56.
    assert golden.crossbar_mvm(config, np.array([0, 2]), weights, stuck=stuck).tolist() == [-56]


def test_random_map_fraction_and_seed():
    a = FaultMap.random(CONFIG, 0.25, seed=4)
    assert a == FaultMap.random(CONFIG, 0.25, seed=4)
    assert a != FaultMap.random(CONFIG, 0.25, seed=5)
    cells = CONFIG.tiles * np.prod(cell_shape(CONFIG))
    assert 0.1 < len(a.faulty) / cells < 0.4
    assert {int(a.states[f]) for f in a.faulty} == {STUCK_AT_0, STUCK_AT_1}


def test_json_round_trip(tmp_path):
    faults = FaultMap.random(CONFIG, 0.1, seed=2)
    faults.save(tmp_path / "faults.json")
    assert FaultMap.load(tmp_path / "faults.json") == faults
    record = json.loads((tmp_path / "faults.json").read_text())
    assert len(record["faults"]) == len(faults.faulty)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["faults"][0].update(side="x"), "faults[0]: field 'side'"),
    (lambda r: r["faults"][0].update(row=4), "faults[0]: field 'row' must be an integer in 0..3"),
    (lambda r: r["faults"][0].update(tile=True), "faults[0]: field 'tile'"),
    (lambda r: r["faults"][0].update(stuck_at=2), "faults[0]: field 'stuck_at'"),
    (lambda r: r.update(format="other"), "not a tessera-fault-map file"),
    (lambda r: r.update(version=9), "version 9"),
    (lambda r: r["config"].update(rows=-1), "field 'config'"),
])
def test_bad_fault_map_files_name_the_field(tmp_path, change, message):
    record = json.loads(FaultMap.random(CONFIG, 0.2, seed=1).to_json())
    change(record)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(FaultMapError, match=message.replace("[", r"\[").replace("]", r"\]")):
        FaultMap.load(path)


def test_not_json_and_missing_file(tmp_path):
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(FaultMapError, match="x.json: not JSON"):
        FaultMap.load(tmp_path / "x.json")
    with pytest.raises(FaultMapError, match="missing.json"):
        FaultMap.load(tmp_path / "missing.json")


def test_device_refuses_a_map_of_another_config():
    other = golden.AccelConfig(tiles=1, rows=4, cols=2)
    with pytest.raises(ValueError, match="fault map is for"):
        Device(CONFIG, faults=FaultMap.none(other))


@pytest.mark.parametrize("name", ["default_tiles", "twelve_tiles_one_step"])
def test_lossless_device_with_stuck_cells_equals_the_bit_serial_tile(name):
    """A lossless device multiplies by the weights the cells read, in one product; 60
    random programs give the same memories as each tile's bit-serial, sliced product."""
    from sim.check_configs import CONFIGS
    from sim.random_programs import random_memories, random_program

    config, rng = CONFIGS[name], np.random.default_rng(0)
    faults = FaultMap.random(config, 0.05, seed=1)
    for _ in range(60):
        memories = random_memories(config, rng)
        program = golden.isa.encode_program(
            random_program(config, rng, int(rng.integers(1, config.imem_depth))))
        devices = [Device(config, faults=faults) for _ in range(2)]
        slow = devices[1]
        slow._tile_product = lambda tile, x, ins: golden.crossbar_mvm(
            config, x, slow.tile_weights[tile], ins.adc_shift, ins.offset_inputs,
            faults.tile_states(tile))
        for device in devices:
            for memory, entries in memories.items():
                getattr(device, memory)[:] = entries
            device.load_program(program)
            device.run()
        assert np.array_equal(devices[0].psum, slow.psum)
        assert np.array_equal(devices[0].amem, slow.amem)
