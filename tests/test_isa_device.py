"""The instruction encoding and the golden device model's semantics, errors and timing."""

import numpy as np
import pytest

from golden import AccelConfig, crossbar_mvm, isa, requantize
from golden.device import Device, QuantParams, pack_quant_params, unpack_quant_params
from golden.isa import ErrorCode
from golden.regmap import memory_windows

CONFIG = AccelConfig(imem_depth=16, wmem_depth=64, amem_depth=32, psum_depth=32, qmem_depth=32)


def test_encode_decode_round_trip():
    ins = isa.mvm([0, 2], 3, 5, 7, src_stride=2, dst_stride=3, tile_stride=4, accumulate=True)
    words = isa.encode(ins)
    assert words[0] == isa.Opcode.MVM | 1 << 4 | 0b101 << 8 | 3 << 16
    assert words[1] == 5 | 2 << 16 and words[2] == 7 | 3 << 16 and words[3] == 4
    assert isa.decode(words) == ins


def test_instruction_fields_are_checked():
    with pytest.raises(ValueError, match=r"instruction field count must be an integer in 0..65535, not 70000"):
        isa.mvm(1, 70000, 0, 0)
    with pytest.raises(ValueError, match="instruction field tile"):
        isa.program(-1, 0)


def test_quant_params_pack_round_trip():
    params = QuantParams(bias=-5, multiplier=(1 << 31) - 1, shift=31, zero_point=-3,
                         clamp_min=-3, clamp_max=100)
    unpacked = unpack_quant_params(np.array([pack_quant_params(params)]))
    assert {k: int(v[0]) for k, v in unpacked.items()} == params.__dict__


def test_memory_windows_pack_round_trip():
    windows = memory_windows(CONFIG)
    rng = np.random.default_rng(0)
    for name, low, high in [("wmem", -128, 128), ("amem", -128, 128), ("psum", -(1 << 31), 1 << 31)]:
        entries = rng.integers(low, high, (5, windows[name].lanes))
        assert np.array_equal(windows[name].unpack(windows[name].pack(entries)), entries)


def small_device(rng):
    device = Device(CONFIG)
    device.wmem[:] = rng.integers(-128, 128, device.wmem.shape)
    device.amem[:] = rng.integers(-128, 128, device.amem.shape)
    return device


def test_layer_program_computes_and_counts():
    """A two-tile layer (K = 32 split over tiles by accumulation) against NumPy."""
    rng = np.random.default_rng(1)
    device = small_device(rng)
    params = [QuantParams(bias=int(b), multiplier=1 << 30, shift=6, zero_point=0,
                          clamp_min=0, clamp_max=127) for b in rng.integers(-100, 100, 16)]
    device.qmem[0] = np.concatenate([pack_quant_params(p) for p in params])
    program = [isa.program(0, 0), isa.program(1, 16),
               isa.mvm([0], 4, 0, 0), isa.mvm([1], 4, 4, 0, accumulate=True),
               isa.requant(4, 0, 20, 0), isa.halt()]
    device.load_program(isa.encode_program(program))
    result = device.run()
    assert result.done and result.error == ErrorCode.NONE

    x = np.hstack([device.amem[0:4], device.amem[4:8]])
    w = np.vstack([device.wmem[0:16], device.wmem[16:32]])
    acc = x @ w
    assert np.array_equal(device.psum[0:4], acc)
    bias = np.array([p.bias for p in params])
    expected = requantize(acc, bias, 1 << 30, 6, 0, 0, 127)
    assert np.array_equal(device.amem[20:24], expected)

    # By hand, from the timing contract, for 16x16 tiles of 2-bit cells (4 slices) and a
    # 1-bit DAC (8 steps): 6 instructions x 3 (fetch, decode, check) = 18; 2 PROGRAMs x
    # (16 rows + 1) = 34; 2 MVMs x 4 vectors x (read 1 + feed 1 + convert 8 + 2 for one
    # tile) = 96; REQUANT 4 entries + 4 = 8. Total 156.
    k = result.counters
    assert k["cycles"] == 156
    # psum reads: 4 by the accumulating MVM, 4 by REQUANT
    assert k["mvm_products"] == 8 and k["psum_reads"] == 8 and k["psum_writes"] == 8
    assert k["adc_conversions"] == 4096          # 8 products x 16 cols x 4 slices x 8 steps
    assert k["cell_writes"] == 4096              # 2 PROGRAMs x 2 cells x 16 x 16 x 4 slices
    assert k["requantizations"] == 64 and k["instructions"] == 6    # 4 entries x 16 lanes


def test_multi_tile_mvm_writes_by_rank():
    rng = np.random.default_rng(2)
    device = small_device(rng)
    program = [isa.program(1, 0), isa.program(3, 16), isa.mvm([1, 3], 2, 0, 10, tile_stride=5),
               isa.halt()]
    device.load_program(isa.encode_program(program))
    result = device.run()
    assert result.done
    assert np.array_equal(device.psum[10:12], crossbar_mvm(CONFIG, device.amem[0:2], device.wmem[0:16]))
    assert np.array_equal(device.psum[15:17], crossbar_mvm(CONFIG, device.amem[0:2], device.wmem[16:32]))
    # By hand: 4 instructions x 3 = 12; 2 PROGRAMs x 17 = 34; 2 vectors x (1 + 1 + 8 + 2 x 2
    # tiles) = 28: 74 cycles. Busy: per vector, rank 0 holds its product 8 + 2 cycles and
    # rank 1 two more (its psum write waits for rank 0's): 10 + 12 = 22, x 2 vectors = 44.
    assert result.counters["cycles"] == 74 and result.counters["tile_busy_cycles"] == 44


def test_a_lossy_shared_adc_config_times_by_hand():
    """3 tiles of 8x4, 4-bit cells (2 slices), 2-bit DAC (4 steps), ADCs shared by 2 columns:
    a step converts in 2 cycles, so a vector takes 1 + 1 + 4 x 2 + 2 x tiles."""
    config = AccelConfig(tiles=3, rows=8, cols=4, cell_bits=4, dac_bits=2, adc_share=2,
                         imem_depth=16, wmem_depth=64, amem_depth=32, psum_depth=32, qmem_depth=32)
    device = Device(config)
    program = [isa.program(0, 0), isa.program(2, 8), isa.mvm([0, 2], 5, 0, 0, tile_stride=8),
               isa.requant(3, 0, 20, 0), isa.vmax(4, 0, 8, 24), isa.halt()]
    device.load_program(isa.encode_program(program))
    k = device.run().counters
    # 6 x 3 = 18; PROGRAM 2 x (8 + 1) = 18; MVM 5 x (1 + 1 + 8 + 4) = 70; REQUANT 3 + 4 = 7;
    # MAX 4 x 3 = 12: 125 cycles.
    assert k["cycles"] == 125
    # 10 products x 4 cols x 2 slices x 4 steps; x 8 rows x 2 cells for the cells sensed
    assert k["adc_conversions"] == 320 and k["cell_reads"] == 5120
    assert k["dac_conversions"] == 10 * 8 * 4 and k["requantizations"] == 3 * 4


@pytest.mark.parametrize("program, code, pc", [
    ([isa.halt().__class__(opcode=9)], ErrorCode.ILLEGAL_OPCODE, 0),
    ([isa.mvm(1, 0, 0, 0), isa.program(4, 0)], ErrorCode.BAD_TILE, 1),
    ([isa.mvm(0, 1, 0, 0)], ErrorCode.BAD_TILE, 0),
    ([isa.mvm(1 << 4, 1, 0, 0)], ErrorCode.BAD_TILE, 0),
    ([isa.program(0, 8)], ErrorCode.MISALIGNED, 0),
    ([isa.program(0, 64)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(1, 3, 30, 0)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(3, 1, 0, 31, tile_stride=1)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.requant(1, 0, 0, 32)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.requant(1, 0, 0, 0, lane_block=1)], ErrorCode.MISALIGNED, 0),
    ([isa.vmax(2, 0, 30, 4, other_stride=2)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.vmax(2, 0, 4, 31, dst_stride=1)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(1, 0, 0, 0)] * 16, ErrorCode.PC_OVERFLOW, 16),
])
def test_errors_stop_with_their_code(program, code, pc):
    device = Device(CONFIG)
    device.load_program(isa.encode_program(program))
    result = device.run()
    assert (result.done, result.error, result.error_pc) == (False, code, pc)
    assert result.counters["instructions"] == min(pc, 16)


def test_max_is_lane_wise_and_sequential():
    rng = np.random.default_rng(3)
    device = small_device(rng)
    before = device.amem.copy()
    # Entries 0..2 against 8..10 into 20..22, then a run that reads what it writes.
    program = [isa.vmax(3, 0, 8, 20, other_stride=2), isa.vmax(2, 20, 21, 21), isa.halt()]
    device.load_program(isa.encode_program(program))
    result = device.run()
    expected = np.maximum(before[0:3], before[8:13:2])
    assert np.array_equal(device.amem[20], expected[0])
    first = np.maximum(expected[0], expected[1])
    assert np.array_equal(device.amem[21], first)
    assert np.array_equal(device.amem[22], np.maximum(first, expected[2]))
    k = result.counters
    assert k["cycles"] == 3 * 3 + 5 * 3            # 3 instructions; 5 MAX entries of 3 cycles
    assert (k["amem_reads"], k["amem_writes"], k["instructions"]) == (10, 5, 3)


def test_program_too_long():
    with pytest.raises(ValueError, match="program of 17 instructions exceeds imem_depth 16"):
        Device(CONFIG).load_program(isa.encode_program([isa.halt()] * 17))
