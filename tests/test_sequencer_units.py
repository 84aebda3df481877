"""The sequencer's units, each alone in Amaranth's simulator: outputs against a hand
computation from the ISA's text (or golden's check), cycles against golden.timing. The
random programs on Verilator (test_accelerator_rtl) are the second tier."""

from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from golden import AccelConfig, crossbar_mvm, requantize
from golden.device import check_instruction
from golden.isa import (FIELDS, ErrorCode, Instruction, decode, mvm, program, requant,
                        vmax)
from golden.timing import max_cycles, mvm_cycles, program_cycles, requant_cycles
from rtl.crossbar_tile import CrossbarTile
from rtl.sequencer import (AdderTree, InstructionDecoder, MaxUnit, MVMUnit, ProgramUnit,
                           RequantUnit)
from rtl.sequencer.mvm_unit import connect_mvm

SMALL = AccelConfig(tiles=4, rows=4, cols=2, cell_bits=2, dac_bits=4, imem_depth=16,
                    wmem_depth=16, amem_depth=64, psum_depth=64, qmem_depth=4)
SHARED = AccelConfig(tiles=2, rows=4, cols=4, cell_bits=4, dac_bits=2, adc_bits=6, adc_share=2,
                     imem_depth=16, wmem_depth=16, amem_depth=64, psum_depth=64, qmem_depth=4)


def value_of(instruction):
    return sum(getattr(instruction, name) << lsb for name, (lsb, _) in FIELDS.items())


def simulate(dut, bench, top=None, clocked=True):
    sim = Simulator(top if top is not None else dut)
    if clocked:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def lanes(value, count, bits, signed=True):
    out = [(value >> (i * bits)) & ((1 << bits) - 1) for i in range(count)]
    return [v - (1 << bits) if signed and v >> (bits - 1) else v for v in out]


def pack(values, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(values))


class Memories:
    """Python memories behind a unit's ports: a read's data the cycle after its enable,
    seeing a write of the same cycle (as the accelerator's ports do)."""

    def __init__(self, dut, contents, lane_bits):
        self.dut, self.contents, self.lane_bits = dut, contents, lane_bits
        self.pending = {}

    async def cycle(self, ctx):
        members = self.dut.signature.members
        for name, value in self.pending.items():
            ctx.set(getattr(self.dut, f"{name}_data"), value)
        for name, memory in self.contents.items():
            if f"{name}_wen" in members and ctx.get(getattr(self.dut, f"{name}_wen")):
                enables = ctx.get(getattr(self.dut, f"{name}_wen"))
                addr = ctx.get(getattr(self.dut, f"{name}_waddr"))
                data = ctx.get(getattr(self.dut, f"{name}_wdata"))
                if name in self.lane_bits:         # byte lanes
                    bits, old = self.lane_bits[name], memory.get(addr, 0)
                    for lane in range(len(getattr(self.dut, f"{name}_wen"))):
                        if enables >> lane & 1:
                            mask = ((1 << bits) - 1) << (lane * bits)
                            old = (old & ~mask) | (data & mask)
                    data = old
                memory[addr] = data
        self.pending = {name: memory.get(ctx.get(getattr(self.dut, f"{name}_addr")), 0)
                        for name, memory in self.contents.items()
                        if f"{name}_en" in members and ctx.get(getattr(self.dut, f"{name}_en"))}


async def run(ctx, dut, instruction, memories, limit=2000, each_cycle=None):
    """Start `instruction` and step until done; returns the cycles from start to done."""
    ctx.set(dut.instruction.as_value(), value_of(instruction))
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    for cycle in range(1, limit):
        await memories.cycle(ctx)
        if each_cycle is not None:
            each_cycle(ctx)
        if ctx.get(dut.done):
            await ctx.tick()
            await memories.cycle(ctx)        # the done cycle's write lands
            return cycle
        await ctx.tick()
    raise AssertionError(f"{instruction} not done in {limit} cycles")


# -- decoder ----------------------------------------------------------------------------

def random_instructions(rng, config, n):
    """Fields near the config's limits, so that each check both passes and fails."""
    out = []
    for _ in range(n):
        near = lambda depth: int(rng.choice([0, 1, depth // 2, depth - 2, depth - 1, depth,
                                             rng.integers(0, 1 << 12)]))
        fields = dict(opcode=int(rng.integers(0, 7)), flags=int(rng.integers(0, 16)),
                      tile=int(rng.choice([0, 1, 2, config.tiles - 1, config.tiles, 255])),
                      count=int(rng.choice([0, 1, 2, 3, 17, 65535])),
                      src=near(config.amem_depth), src_stride=int(rng.choice([0, 1, 3, 4095])),
                      dst=near(config.psum_depth), dst_stride=int(rng.choice([0, 1, 2, 4095])),
                      aux=near(config.qmem_depth), aux2=int(rng.choice([0, 1, 2, 5, 4095])),
                      ktiles_log2=int(rng.choice([0, 0, 1, 2, 15])),
                      ngroups_log2=int(rng.choice([0, 0, 1, 3])),
                      replicas_log2=int(rng.choice([0, 0, 1, 2])),
                      adc_shift=int(rng.integers(0, 16)),
                      qentry=int(rng.choice([0, 1, config.qmem_depth - 1, config.qmem_depth,
                                             255])))
        out.append(Instruction(**fields))
    return out


@pytest.mark.parametrize("config", [SMALL, SHARED], ids=["small", "shared_adc"])
def test_the_decoder_finds_the_error_golden_check_gives(config, record_property):
    rng = np.random.default_rng(7)
    instructions = random_instructions(rng, config, 800) + [   # spans that meet or not
        mvm(0, 3, 0, 6, src_stride=3, qentry=0), mvm(0, 3, 0, 7, src_stride=3, qentry=0),
        mvm(0, 2, 8, 4, ktiles=2, k_stride=1, dst_stride=4, qentry=0),
        mvm(0, 2, 9, 4, ktiles=2, k_stride=1, dst_stride=4, qentry=0),
        mvm(0, 2, 4, 9, ngroups=2, n_stride=2, dst_stride=1, qentry=0)]
    dut = InstructionDecoder(config)
    found = []

    async def bench(ctx):
        for instruction in instructions:
            ctx.set(dut.word, value_of(instruction))
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            found.append(ErrorCode(ctx.get(dut.error)))

    simulate(dut, bench)
    expected = [check_instruction(decode(words_of(i)), config) for i in instructions]
    kinds = {code.name for code in expected}
    record_property("rtl_check", f"decoder: {len(instructions)} random instructions, "
                                 f"error codes {sorted(kinds)}")
    assert len(kinds) >= 8                   # the draw reaches most checks
    assert found == expected


def words_of(instruction):
    value = value_of(instruction)
    return [(value >> (32 * i)) & 0xFFFF_FFFF for i in range(4)]


# -- adder tree -------------------------------------------------------------------------

def test_every_adder_tree_node_sums_its_aligned_tiles():
    config = AccelConfig(tiles=6, rows=4, cols=2)
    dut = AdderTree(config)
    rng = np.random.default_rng(3)
    results = rng.integers(-(1 << 31), 1 << 31, (config.tiles, config.cols))
    results[0] = (1 << 31) - 1                      # sums that wrap
    results[1] = (1 << 31) - 1
    seen = {}

    async def bench(ctx):
        for t in range(config.tiles):
            for k in range(config.cols):
                ctx.set(dut.results[t][k], int(results[t, k]))
        for node in range(dut.nodes):
            ctx.set(dut.node, node)
            seen[node] = [ctx.get(dut.sum[k]) for k in range(config.cols)]

    simulate(dut, bench, clocked=False)
    # By hand: 8 leaves (6 tiles, 2 zero), then 4 pairs, 2 quads, 1 octet.
    padded = np.vstack([results, np.zeros((2, config.cols), np.int64)])
    wrap = lambda v: ((v + (1 << 31)) % (1 << 32)) - (1 << 31)
    expected = [padded[i] for i in range(8)] + [padded[2 * i:2 * i + 2].sum(0) for i in range(4)]
    expected += [padded[4 * i:4 * i + 4].sum(0) for i in range(2)] + [padded.sum(0)]
    assert dut.nodes == 15
    assert [seen[n] for n in range(15)] == [[int(wrap(v)) for v in row] for row in expected]


# -- PROGRAM ----------------------------------------------------------------------------

@pytest.mark.parametrize("config,first,tiles,lanes", [
    (SMALL, 0, 1, None), (SMALL, 1, 2, None), (SMALL, 0, 4, 2), (SHARED, 1, 1, None),
    (SHARED, 0, 2, 1)], ids=["one_tile", "two_own_lanes", "four_of_two_lanes",
                             "shared_adc_tile1", "shared_adc_one_lane"])
def test_program_offers_each_tile_its_lane_rows_in_time(config, first, tiles, lanes):
    dut = ProgramUnit(config)
    rng = np.random.default_rng(first * 10 + tiles)
    src = config.rows
    wmem = {src + r: int(rng.integers(0, 1 << 62)) << 2 for r in range(config.rows)}
    offers, programs = [], [0]
    lane_bits = config.cols * 8

    def watch(ctx):
        programs[0] += ctx.get(dut.tile_programs)
        for t in range(config.tiles):
            if ctx.get(dut.valid[t]):
                offers.append((t, ctx.get(dut.rows[t].row),
                               [ctx.get(dut.rows[t].weights[k]) for k in range(config.cols)]))

    async def bench(ctx):
        memories = Memories(dut, {"wmem": wmem}, {})
        cycles = await run(ctx, dut, program(first, src, tiles, lanes), memories, each_cycle=watch)
        assert cycles == dut.delay == program_cycles(config)

    simulate(dut, bench)
    assert programs[0] == tiles
    for t in range(first, first + tiles):
        lane = t % lanes if lanes else t
        rows = [(row, weights) for tile, row, weights in offers if tile == t]
        assert len(rows) == config.rows * config.adc_share      # each row for adc_share cycles
        for row, weights in rows:
            assert weights == lanes_of(wmem[src + row], lane, lane_bits, config.cols)
    assert {t for t, _, _ in offers} == set(range(first, first + tiles))


def lanes_of(entry, lane, lane_bits, cols):
    return lanes(entry >> (lane * lane_bits), cols, 8)


# -- REQUANT ----------------------------------------------------------------------------

# Requantisers: one per column (an entry a cycle), or fewer, each entry in passes.
REQUANT_CONFIGS = {"a requantiser per column": SMALL,
                   "1 requantiser for 2 columns": replace(SMALL, requant_lanes=1),
                   "2 requantisers for 8 columns": AccelConfig(tiles=2, rows=8, cols=8,
                                                               requant_lanes=2)}


@pytest.mark.parametrize("name", REQUANT_CONFIGS)
@pytest.mark.parametrize("count,lane_block,strides", [(1, 0, (1, 1)), (7, 1, (3, 2))])
def test_requant_writes_each_entry_to_its_lane_block_in_time(count, lane_block, strides,
                                                             name, record_property):
    config = REQUANT_CONFIGS[name]
    if lane_block >= config.rows // config.cols:
        lane_block = 0
    dut = RequantUnit(config)
    rng = np.random.default_rng(count)
    params = dict(bias=rng.integers(-1000, 1000, config.cols),
                  multiplier=rng.integers(1 << 29, 1 << 31, config.cols),
                  shift=rng.integers(0, 12, config.cols), zero_point=rng.integers(-5, 5, config.cols),
                  clamp_min=np.full(config.cols, -100), clamp_max=np.full(config.cols, 120))
    qmem = {2: sum(pack_lane(params, k) << (128 * k) for k in range(config.cols))}
    sums = rng.integers(-(1 << 20), 1 << 20, (count, config.cols))
    src, dst = 5, 9
    psum = {src + i * strides[0]: pack(sums[i], 32) for i in range(count)}
    background = rng.integers(-128, 128, (64, config.rows))
    amem = {a: pack(background[a], 8) for a in range(64)}
    requantized = [0]

    async def bench(ctx):
        memories = Memories(dut, {"psum": psum, "qmem": qmem, "amem": amem}, {"amem": 8})
        cycles = await run(ctx, dut, requant(count, src, dst, 2, lane_block, *strides), memories,
                           each_cycle=lambda ctx: requantized.__setitem__(
                               0, requantized[0] + ctx.get(dut.requantizations)))
        # By hand: an entry every cols / requant_lanes cycles, the last written 4 later.
        assert cycles == count * (config.cols // config.requant_lanes) + 4
        assert cycles == dut.delay(count) == requant_cycles(config, count)

    simulate(dut, bench)
    expected = background.copy()
    lanes_written = slice(lane_block * config.cols, (lane_block + 1) * config.cols)
    for i in range(count):
        expected[dst + i * strides[1], lanes_written] = requantize(sums[i], **params)
    got = np.array([lanes(amem[a], config.rows, 8) for a in range(64)])
    record_property("rtl_check", f"requant unit: {count} entries x {config.cols} lanes, "
                                 f"{config.requant_lanes} requantisers")
    assert requantized[0] == count * config.cols
    assert (got == expected).all()


def pack_lane(params, k):
    """A qmem lane by golden's documented layout: bias, multiplier, then shift, zero
    point, clamp min and max a byte each (written here from the docs, not the packer)."""
    byte = lambda v: int(v) & 0xFF
    word2 = (byte(params["shift"][k]) | byte(params["zero_point"][k]) << 8
             | byte(params["clamp_min"][k]) << 16 | byte(params["clamp_max"][k]) << 24)
    return (int(params["bias"][k]) & 0xFFFF_FFFF) | int(params["multiplier"][k]) << 32 | word2 << 64


# -- MAX --------------------------------------------------------------------------------

@pytest.mark.parametrize("count,src,other,dst,strides,cycles", [
    (1, 0, 1, 2, (1, 1, 1), 2), (6, 0, 20, 40, (2, 1, 3), 7),
    (5, 10, 11, 11, (1, 1, 1), 6)],              # a chain: each entry reads the last one written
    ids=["one", "strided", "chain"])
def test_max_writes_lane_maxima_entry_by_entry_in_time(count, src, other, dst, strides, cycles):
    """An entry's two operands are read in one cycle (amem's two read ports) and its maximum
    written in the next, while the next entry's are read: count reads, then the last
    write, count + 1 cycles."""
    config = SMALL
    dut = MaxUnit(config)
    rng = np.random.default_rng(count + src)
    start = rng.integers(-128, 128, (64, config.rows))
    amem = {a: pack(start[a], 8) for a in range(64)}

    async def bench(ctx):
        memories = Memories(dut, {"amem": amem, "amem2": amem}, {"amem": 8})
        taken = await run(ctx, dut, vmax(count, src, other, dst, *strides), memories)
        assert taken == cycles == dut.delay(count) == max_cycles(config, count)

    simulate(dut, bench)
    expected = start.copy()
    for i in range(count):            # the ISA's text: entry by entry
        expected[dst + i * strides[2]] = np.maximum(expected[src + i * strides[0]],
                                                    expected[other + i * strides[1]])
    got = np.array([lanes(amem[a], config.rows, 8) for a in range(64)])
    assert (got == expected).all()


# -- MVM --------------------------------------------------------------------------------

class MVMHarness:
    """The MVM unit with real tiles and the adder tree, wired as in the sequencer."""

    def __init__(self, config):
        self.config = config
        self.mvm = MVMUnit(config)
        self.tiles = [CrossbarTile(config) for _ in range(config.tiles)]
        self.tree = AdderTree(config)
        self.module = m = Module()
        m.submodules.mvm = self.mvm
        m.submodules.tree = self.tree
        for t, tile in enumerate(self.tiles):
            m.submodules[f"tile{t}"] = tile
        connect_mvm(m, self.mvm, self.tiles, self.tree, self.mvm.amem_data, self.mvm.instruction)

    async def program(self, ctx, weights):
        for tile, matrix in zip(self.tiles, weights):
            for r, row in enumerate(matrix):
                ctx.set(tile.w_stream.valid, 1)
                ctx.set(tile.w_stream.payload.row, r)
                for k, w in enumerate(row):
                    ctx.set(tile.w_stream.payload.weights[k], int(w))
                while True:
                    ready = ctx.get(tile.w_stream.ready)
                    await ctx.tick()
                    if ready:
                        break
            ctx.set(tile.w_stream.valid, 0)


MVM_CASES = [
    (SMALL, dict(tile=0, count=3)),
    (SMALL, dict(tile=0, count=5, ktiles=2, ngroups=2, k_stride=1, n_stride=1, src_stride=2,
                 dst_stride=2, accumulate=True)),
    (SMALL, dict(tile=0, count=7, ktiles=1, ngroups=2, replicas=2, n_stride=1, dst_stride=2)),
    (SMALL, dict(tile=2, count=4, ktiles=2, k_stride=1, src_stride=2, offset_inputs=True)),
    (SHARED, dict(tile=0, count=3, ktiles=2, k_stride=1, src_stride=2, adc_shift=2,
                  accumulate=True)),
    (SHARED, dict(tile=0, count=5, replicas=2, adc_shift=1)),
]


@pytest.mark.parametrize("config,shape", MVM_CASES,
                         ids=["one_tile", "k2_n2_accumulate", "replicas", "offset_inputs",
                              "shared_adc_k2", "shared_adc_replicas"])
def test_mvm_writes_every_group_sum_in_time(config, shape, record_property):
    harness = MVMHarness(config)
    rng = np.random.default_rng(shape["count"] * 7 + shape["tile"])
    weights = rng.integers(-128, 128, (config.tiles, config.rows, config.cols))
    inputs = rng.integers(-128, 128, (64, config.rows))
    old = rng.integers(-(1 << 31), 1 << 31, (64, config.cols))
    amem = {a: pack(inputs[a], 8) for a in range(64)}
    psum = {a: pack(old[a], 32) for a in range(64)}
    instruction = mvm(src=1, dst=3, **shape)
    K, G, R = (1 << instruction.ktiles_log2, 1 << instruction.ngroups_log2,
               1 << instruction.replicas_log2)

    async def bench(ctx):
        await harness.program(ctx, weights)
        memories = Memories(harness.mvm, {"amem": amem, "psum": psum}, {"amem": 8})
        cycles = await run(ctx, harness.mvm, instruction, memories)
        assert (cycles == harness.mvm.delay(instruction.count, K, G, R)
                == mvm_cycles(config, instruction.count, K, G, R))

    simulate(harness.mvm, bench, top=harness.module)
    # The ISA's text: vector v on replica v % R; group n sums its K tiles' products.
    expected = old.copy()
    wrap = lambda v: ((v + (1 << 31)) % (1 << 32)) - (1 << 31)
    for v in range(instruction.count):
        r = v % R
        for n in range(G):
            total = np.zeros(config.cols, np.int64)
            for k in range(K):
                tile = instruction.tile + (r * G + n) * K + k
                x = inputs[1 + v * instruction.src_stride + k * instruction.aux]
                total += crossbar_mvm(config, x, weights[tile], instruction.adc_shift,
                                      shape.get("offset_inputs", False))
            entry = 3 + v * instruction.dst_stride + n * instruction.aux2
            expected[entry] = wrap(total + (expected[entry] if shape.get("accumulate") else 0))
    got = np.array([lanes(psum[a], config.cols, 32) for a in range(64)])
    record_property("rtl_check", f"MVM unit: {instruction.count} vectors on {K}x{G}x{R} tiles")
    assert (got == expected).all()
