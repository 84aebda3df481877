"""The instruction encoding and the golden device model's semantics, errors and timing."""

import numpy as np
import pytest

from golden import AccelConfig, isa, requantize, timing
from golden.device import Device, QuantParams, pack_quant_params, unpack_quant_params
from golden.isa import ErrorCode
from golden.regmap import memory_windows

CONFIG = AccelConfig(imem_depth=16, wmem_depth=64, amem_depth=32, psum_depth=32, qmem_depth=32)


def test_encode_decode_round_trip():
    ins = isa.mvm(4, 3, 5, 7, src_stride=2, dst_stride=3, k_stride=4, n_stride=6, ktiles=2,
                  replicas=4, accumulate=True)
    words = isa.encode(ins)
    # By hand from the field table: src [43:32], src_stride [55:44], dst [67:56] (its low
    # byte ends word 1), dst_stride [79:68], aux [91:80], aux2 [103:92] (its low nibble ends
    # word 2), log2 ktiles [107:104], log2 ngroups [111:108], log2 replicas [115:112].
    assert words[0] == isa.Opcode.MVM | 1 << 4 | 4 << 8 | 3 << 16
    assert words[1] == 5 | 2 << 12 | 7 << 24
    assert words[2] == 3 << 4 | 4 << 16 | 6 << 28
    assert words[3] == 1 << 8 | 2 << 16
    assert isa.decode(words) == ins
    assert (ins.ktiles, ins.ngroups, ins.replicas, ins.mvm_tiles) == (2, 1, 4, 8)


def test_instruction_fields_are_checked():
    with pytest.raises(ValueError, match=r"instruction field count must be an integer in 0..65535, not 70000"):
        isa.mvm(1, 70000, 0, 0)
    with pytest.raises(ValueError, match="instruction field tile"):
        isa.program(-1, 0)
    with pytest.raises(ValueError, match="instruction field src must be an integer in 0..4095"):
        isa.vmax(1, 4096, 0, 0)
    with pytest.raises(ValueError, match="MVM ktiles must be a power of two, not 3"):
        isa.mvm(0, 1, 0, 0, ktiles=3)


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


def lane(device, tile, first_row=0):
    """The 16 weight rows from `first_row` of `tile`'s wmem lane."""
    return device.wmem[first_row:first_row + 16, tile * 16:(tile + 1) * 16]


def test_k_reduction_layer_computes_and_counts():
    """K = 32 over two tiles summed by the adder tree: one psum write per vector."""
    rng = np.random.default_rng(1)
    device = small_device(rng)
    params = [QuantParams(bias=int(b), multiplier=1 << 30, shift=6, zero_point=0,
                          clamp_min=0, clamp_max=127) for b in rng.integers(-100, 100, 16)]
    device.qmem[0] = np.concatenate([pack_quant_params(p) for p in params])
    program = [isa.program(0, 0, tiles=2),
               isa.mvm(0, 4, 0, 0, src_stride=2, k_stride=1, ktiles=2),
               isa.requant(4, 0, 20, 0), isa.halt()]
    device.load_program(isa.encode_program(program))
    result = device.run()
    assert result.done and result.error == ErrorCode.NONE

    x = device.amem[0:8].reshape(4, 32)                    # vector v: entries 2v, 2v + 1
    w = np.vstack([lane(device, 0), lane(device, 1)])
    acc = x.astype(np.int64) @ w    # int64: int8 products overflow
    assert np.array_equal(device.psum[0:4], acc)
    bias = np.array([p.bias for p in params])
    expected = requantize(acc, bias, 1 << 30, 6, 0, 0, 127)
    assert np.array_equal(device.amem[20:24], expected)

    # By hand, for 16x16 tiles of 2-bit cells (4 slices) and a 1-bit DAC (8 steps, N = 8):
    # 4 instructions x 3 (fetch, decode, check) = 12; PROGRAM 16 rows + 1 = 17 for both
    # tiles; MVM: 2 feeds (E) + 1 before the first conversion, 3 more rounds of
    # P = max(8, E + 2, 1 + 1) = 8, the last conversion 8, its one write (G = 1) + 2 = 38;
    # REQUANT 4 entries + 4 = 8. Total 75.
    k = result.counters
    assert k["cycles"] == 75
    assert k["mvm_products"] == 8 and k["psum_reads"] == 4 and k["psum_writes"] == 4
    assert k["amem_reads"] == 8 and k["wmem_reads"] == 32     # 4 vectors x 2; 16 rows x 2 lanes
    assert k["adc_conversions"] == 4096          # 8 products x 16 cols x 4 slices x 8 steps
    assert k["cell_writes"] == 4096              # 2 tiles x 2 cells x 16 x 16 x 4 slices
    assert k["tile_busy_cycles"] == 64 and k["tile_programs"] == 2
    assert k["requantizations"] == 64 and k["instructions"] == 4    # 4 entries x 16 lanes


def test_n_split_replicas_accumulate():
    """Two output blocks on two replicas: vector v runs on tiles 2 (v % 2) and 2 (v % 2) + 1."""
    rng = np.random.default_rng(2)
    device = small_device(rng)
    device.psum[:] = rng.integers(-1000, 1000, device.psum.shape)
    before = device.psum.copy()
    program = [isa.program(0, 16, tiles=4),
               isa.mvm(0, 3, 0, 10, dst_stride=2, n_stride=1, ngroups=2, replicas=2,
                       accumulate=True),
               isa.halt()]
    device.load_program(isa.encode_program(program))
    result = device.run()
    assert result.done
    for v in range(3):
        for n in range(2):
            tile = 2 * (v % 2) + n
            expected = (before[10 + 2 * v + n]
                        + device.amem[v].astype(np.int64) @ lane(device, tile, 16))
            assert np.array_equal(device.psum[10 + 2 * v + n], expected)
    assert np.array_equal(device.psum[16:], before[16:])
    # By hand: 3 instructions x 3 = 9; PROGRAM 17; MVM with E = 2 feeds, G = 4 writes,
    # P = max(8, 4, 5) = 8, 2 rounds: 3 + 8 + 8 + 4 + 2 = 25. Total 51.
    k = result.counters
    assert k["cycles"] == 51
    assert (k["mvm_products"], k["amem_reads"], k["psum_reads"], k["psum_writes"]) == (6, 3, 6, 6)


def test_feeds_set_the_round_when_conversion_is_short():
    """An 8-bit DAC converts in one step (N = 1): the round is the feeds, E + 2."""
    config = AccelConfig(dac_bits=8, cell_bits=8, imem_depth=16, wmem_depth=64, amem_depth=32,
                         psum_depth=32, qmem_depth=32)
    device = Device(config)
    program = [isa.mvm(0, 5, 0, 0, src_stride=2, k_stride=1, ktiles=2, replicas=2), isa.halt()]
    device.load_program(isa.encode_program(program))
    # 2 x 3; E = 4, G = 2, P = max(1, 6, 3) = 6, 3 rounds: 5 + 2 x 6 + 1 + 2 + 2 = 22. 28.
    assert device.run().counters["cycles"] == 28


def test_a_lossy_shared_adc_config_times_by_hand():
    """3 tiles of 8x4, 4-bit cells (2 slices), 2-bit DAC (4 steps), ADCs shared by 2 columns:
    a step converts in 2 cycles, so a round converts in N = 8."""
    config = AccelConfig(tiles=3, rows=8, cols=4, cell_bits=4, dac_bits=2, adc_share=2,
                         imem_depth=16, wmem_depth=64, amem_depth=32, psum_depth=32, qmem_depth=32)
    device = Device(config)
    program = [isa.program(0, 0, tiles=3), isa.mvm(0, 5, 0, 0, src_stride=2, k_stride=1, ktiles=2),
               isa.requant(3, 0, 20, 0), isa.vmax(4, 0, 8, 24), isa.halt()]
    device.load_program(isa.encode_program(program))
    k = device.run().counters
    # 5 x 3 = 15; PROGRAM 8 rows x 2 phases + 1 = 17 (the cells sit in a memory of one
    # entry per phase); MVM E = 2, P = 8, 5 rounds: 3 + 4 x 8 + 8 + 1 + 2 = 46; REQUANT
    # 3 + 4 = 7; MAX 4 + 1 = 5: 90 cycles.
    assert k["cycles"] == 90
    # 10 products x 4 cols x 2 slices x 4 steps; x 8 rows x 2 cells for the cells sensed
    assert k["adc_conversions"] == 320 and k["cell_reads"] == 5120
    assert k["dac_conversions"] == 10 * 8 * 4 and k["requantizations"] == 3 * 4
    # Every tile's ADCs converting every cycle: 3 tiles x 2 ADCs a slice x 2 slices = 12
    # conversions a cycle, so 320 take at least 26.67 cycles.
    assert timing.adc_bound_cycles(config, k["adc_conversions"]) == pytest.approx(320 / 12)


def _qmem_entry(params):
    return np.concatenate([pack_quant_params(p) for p in params])


def test_requantizing_mvm_writes_int8_into_amem_and_pools_with_max():
    """Two output blocks, requantised with qmem entries 3 and 4 into amem entries 20 + 3v
    + n; a second MVM on other inputs takes the maximum with them (pooling)."""
    rng = np.random.default_rng(3)
    device = small_device(rng)
    device.psum[:] = rng.integers(-1000, 1000, device.psum.shape)
    psum_before = device.psum.copy()
    params = [[QuantParams(bias=int(b), multiplier=1 << 30, shift=7, zero_point=2,
                           clamp_min=-100, clamp_max=100) for b in rng.integers(-500, 500, 16)]
              for _ in range(2)]
    device.qmem[3], device.qmem[4] = _qmem_entry(params[0]), _qmem_entry(params[1])
    program = [isa.program(0, 0, tiles=2),
               isa.mvm(0, 3, 0, 20, dst_stride=3, n_stride=1, ngroups=2, qentry=3),
               isa.mvm(0, 3, 5, 20, dst_stride=3, n_stride=1, ngroups=2, qentry=3,
                       max_into=True),
               isa.halt()]
    inputs = device.amem[:8].astype(np.int64)
    device.load_program(isa.encode_program(program))
    result = device.run()
    assert result.done and result.error == ErrorCode.NONE
    for v in range(3):
        for n in range(2):
            p = params[n]
            bias = np.array([q.bias for q in p])
            first, second = (requantize(inputs[base + v] @ lane(device, n), bias, 1 << 30, 7,
                                        2, -100, 100) for base in (0, 5))
            assert np.array_equal(device.amem[20 + 3 * v + n], np.maximum(first, second))
    assert np.array_equal(device.psum, psum_before)              # psum untouched
    # By hand (R = 1 pass): 4 x 3 = 12; PROGRAM 17; each MVM E = 1, G = 2, P = max(8, 3,
    # 2 + 1) = 8, 3 rounds: 1 + 1 + 2 x 8 + 8, then G x R = 2 writes and 6 (the last
    # group's: its read, its forward, 1 pass, 3 stages, the write) = 34. Total 97.
    k = result.counters
    assert k["cycles"] == 97
    assert (k["psum_reads"], k["psum_writes"], k["qmem_reads"], k["amem_writes"]) == (0, 0, 12, 12)
    assert k["requantizations"] == 12 * 16
    assert k["amem_reads"] == 3 + 3 + 6          # the feeds, and max's reads of its outputs


def test_requantizing_mvms_need_a_requantiser_per_column():
    """4 requantisers for 16 columns: an MVM may not requantise (BAD_FLAGS), whatever its
    addresses."""
    config = AccelConfig(requant_lanes=4, imem_depth=16, wmem_depth=64, amem_depth=32,
                         psum_depth=32, qmem_depth=32)
    assert not config.requantizing_mvms and AccelConfig().requantizing_mvms
    for mvm, code in [(isa.mvm(0, 3, 0, 20, dst_stride=2, n_stride=1, ngroups=2, qentry=0),
                       ErrorCode.BAD_FLAGS),
                      (isa.mvm(0, 2, 0, 31, qentry=0), ErrorCode.BAD_FLAGS),
                      (isa.mvm(0, 3, 0, 6, src_stride=3, qentry=0), ErrorCode.BAD_FLAGS)]:
        device = Device(config)
        device.load_program(isa.encode_program([mvm, isa.halt()]))
        assert device.run().error == code


@pytest.mark.parametrize("program, code, pc", [
    ([isa.halt().__class__(opcode=9)], ErrorCode.ILLEGAL_OPCODE, 0),
    ([isa.mvm(1, 0, 0, 0), isa.program(4, 0)], ErrorCode.BAD_TILE, 1),
    ([isa.program(3, 0, tiles=2)], ErrorCode.BAD_TILE, 0),
    ([isa.program(0, 0, tiles=0)], ErrorCode.BAD_TILE, 0),
    ([isa.mvm(1, 1, 0, 0, ktiles=2)], ErrorCode.BAD_TILE, 0),      # not aligned to ktiles
    ([isa.mvm(0, 1, 0, 0, ktiles=4, replicas=2)], ErrorCode.BAD_TILE, 0),
    ([isa.mvm(4, 1, 0, 0)], ErrorCode.BAD_TILE, 0),
    ([isa.program(0, 8)], ErrorCode.MISALIGNED, 0),
    ([isa.program(0, 64)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(1, 3, 30, 0)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(0, 1, 31, 0, ktiles=2, k_stride=1)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(0, 1, 0, 31, ngroups=2, n_stride=1)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.requant(1, 0, 0, 32)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.requant(1, 0, 0, 0, lane_block=1)], ErrorCode.MISALIGNED, 0),
    ([isa.vmax(2, 0, 30, 4, other_stride=2)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.vmax(2, 0, 4, 31, dst_stride=1)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(1, 0, 0, 0)] * 16, ErrorCode.PC_OVERFLOW, 16),
    # requantizing: flags, the amem run and qmem entries, and inputs apart from outputs
    ([isa.Instruction(isa.Opcode.MVM, flags=isa.FLAG_REQUANTIZE | isa.FLAG_ACCUMULATE,
                      count=1, dst=8)], ErrorCode.BAD_FLAGS, 0),
    ([isa.Instruction(isa.Opcode.MVM, flags=isa.FLAG_MAX, count=1, dst=8)],
     ErrorCode.BAD_FLAGS, 0),
    ([isa.mvm(0, 2, 0, 31, qentry=0)], ErrorCode.BAD_ADDRESS, 0),   # amem is 32 deep
    ([isa.mvm(0, 1, 0, 8, ngroups=2, n_stride=1, qentry=31)], ErrorCode.BAD_ADDRESS, 0),
    ([isa.mvm(0, 3, 0, 6, src_stride=3, qentry=0)], ErrorCode.OVERLAP, 0),  # reads 0..6
    ([isa.mvm(0, 2, 8, 4, ktiles=2, k_stride=1, dst_stride=4, qentry=0)],
     ErrorCode.OVERLAP, 0),                     # reads 8..10, writes 4 and 8
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
    program = [isa.vmax(3, 0, 8, 20, other_stride=2), isa.vmax(2, 20, 21, 21),
               isa.vmax(0, 0, 0, 0), isa.halt()]
    device.load_program(isa.encode_program(program))
    result = device.run()
    expected = np.maximum(before[0:3], before[8:13:2])
    assert np.array_equal(device.amem[20], expected[0])
    first = np.maximum(expected[0], expected[1])
    assert np.array_equal(device.amem[21], first)
    assert np.array_equal(device.amem[22], np.maximum(first, expected[2]))
    k = result.counters
    # 4 instructions; a cycle an entry + 1 for each run (both operands read at once, on
    # amem's two read ports); the empty run costs nothing more
    assert k["cycles"] == 4 * 3 + (3 + 1) + (2 + 1)
    assert (k["amem_reads"], k["amem_writes"], k["instructions"]) == (10, 5, 4)


def test_program_too_long():
    with pytest.raises(ValueError, match="program of 17 instructions exceeds imem_depth 16"):
        Device(CONFIG).load_program(isa.encode_program([isa.halt()] * 17))


@pytest.mark.parametrize("lanes, expected", [(None, [0, 1, 2, 3]), (1, [0, 0, 0, 0]),
                                             (2, [0, 1, 0, 1]), (4, [0, 1, 2, 3]),
                                             (8, [0, 1, 2, 3])])
def test_program_with_a_lane_period_fills_replicas_from_one_staged_copy(lanes, expected):
    """PROGRAM with `lanes` = 2**j: tile t takes lane t mod 2**j (by hand, the lanes each
    of 4 tiles reads); without it, its own lane. The cycles and counters do not change."""
    rng = np.random.default_rng(12)
    device = small_device(rng)
    device.load_program(isa.encode_program([isa.program(0, 16, tiles=4, lanes=lanes), isa.halt()]))
    result = device.run()
    assert result.done and result.counters["cycles"] == 3 * 2 + 17     # as without a period
    for tile, source in enumerate(expected):
        assert np.array_equal(device.tile_weights[tile], lane(device, source, 16))
    assert result.counters["tile_programs"] == 4
