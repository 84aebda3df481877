"""The device model: runs a program binary on NumPy state, predicting every counter exactly,
per the timing contract of :mod:`golden.timing`."""

import functools
from dataclasses import dataclass, field

import numpy as np

from .config import AccelConfig
from .crossbar import INPUT_OFFSET, crossbar_mvm, int8_matmul
from .interface import QPARAM_BITS, QPARAM_FIELDS, pack_fields, unpack_fields
from .isa import WORDS_PER_INSTRUCTION, ErrorCode, Opcode, decode, program_lanes
from .nonideal import AnalogTiles
from .regmap import COUNTERS
from .requant import requantize
from .timing import (FETCH_DECODE_CYCLES, max_cycles, mvm_cycles, program_cycles,
                     requant_cycles)

__all__ = ["Device", "RunResult", "QuantParams", "pack_quant_params", "unpack_quant_params",
           "check_instruction"]


@dataclass(frozen=True)
class QuantParams:
    bias: int
    multiplier: int
    shift: int
    zero_point: int = 0
    clamp_min: int = -128
    clamp_max: int = 127


def pack_quant_params(params):
    """Four qmem words, by `golden.interface.QPARAM_FIELDS`."""
    value = pack_fields(QPARAM_FIELDS, **{name: getattr(params, name) for name in QPARAM_FIELDS})
    return [(value >> (32 * i)) & 0xFFFF_FFFF for i in range(QPARAM_BITS // 32)]


def unpack_quant_params(words):
    """Vectorised inverse of `pack_quant_params`: a dict of int64 arrays from (n, 4) words."""
    return unpack_fields(QPARAM_FIELDS, words)


@dataclass
class RunResult:
    done: bool
    error: ErrorCode
    error_pc: int
    counters: dict = field(default_factory=dict)
    trace: list = field(default_factory=list)   # per executed instruction: (pc, counter deltas)


def _run_fits(base, stride, count, depth, extra=0):
    """Whether entries base + i*stride + extra (i < count) all lie inside a memory of `depth`."""
    return not count or base + stride * (count - 1) + extra < depth


def check_instruction(ins, config):
    """The `ErrorCode` the sequencer reports for `ins` at CHECK, before anything executes
    (`ErrorCode.NONE` when it runs). Programs have no branches, so checking every
    instruction up to HALT proves that a program runs without error."""
    c = config
    if ins.opcode == Opcode.HALT:
        return ErrorCode.NONE
    if ins.opcode == Opcode.PROGRAM:
        if ins.count == 0 or ins.tile + ins.count > c.tiles:
            return ErrorCode.BAD_TILE
        if ins.src % c.rows:
            return ErrorCode.MISALIGNED
        if not _run_fits(ins.src, 1, c.rows, c.wmem_depth):
            return ErrorCode.BAD_ADDRESS
        return ErrorCode.NONE
    if ins.opcode == Opcode.MVM:
        if ins.tile % ins.ktiles or ins.tile + ins.mvm_tiles > c.tiles:
            return ErrorCode.BAD_TILE
        if ins.adc_shift > c.max_adc_shift:
            return ErrorCode.BAD_SHIFT
        if not (_run_fits(ins.src, ins.src_stride, ins.count, c.amem_depth,
                          ins.aux * (ins.ktiles - 1))
                and _run_fits(ins.dst, ins.dst_stride, ins.count, c.psum_depth,
                              ins.aux2 * (ins.ngroups - 1))):
            return ErrorCode.BAD_ADDRESS
        return ErrorCode.NONE
    if ins.opcode == Opcode.REQUANT:
        if ins.aux2 >= c.rows // c.cols:
            return ErrorCode.MISALIGNED
        if not (_run_fits(ins.src, ins.src_stride, ins.count, c.psum_depth)
                and _run_fits(ins.dst, ins.dst_stride, ins.count, c.amem_depth)
                and _run_fits(ins.aux, 1, 1, c.qmem_depth)):
            return ErrorCode.BAD_ADDRESS
        return ErrorCode.NONE
    if ins.opcode == Opcode.MAX:
        if not all(_run_fits(base, stride, ins.count, c.amem_depth) for base, stride in
                   ((ins.src, ins.src_stride), (ins.aux, ins.aux2), (ins.dst, ins.dst_stride))):
            return ErrorCode.BAD_ADDRESS
        return ErrorCode.NONE
    return ErrorCode.ILLEGAL_OPCODE


def _wrap_int32(values):
    return np.asarray(values, np.int64).astype(np.int32).astype(np.int64)  # casts wrap


def _distinct(base, stride, count, inner_stride=0, inner=1):
    """Whether the addresses base + i*stride + j*inner_stride (i < count, j < inner) are
    all different: at once when each run of `inner` is spread out and the runs do not
    overlap, else by counting them."""
    if (inner == 1 or inner_stride > 0) and (count == 1 or stride > inner_stride * (inner - 1)):
        return True
    addresses = base + stride * np.arange(count)[:, None] + inner_stride * np.arange(inner)
    return len(np.unique(addresses)) == count * inner


def _reads_before_writes(src, other, dst):
    """Whether a MAX run may be done at once: no two entries write one address and no
    entry writes an address a later entry reads (entry i may write what it reads)."""
    if len(np.unique(dst)) != len(dst):
        return False
    entries = np.arange(len(dst))
    last_read = np.full(int(max(src.max(), other.max(), dst.max())) + 1, -1)
    np.maximum.at(last_read, src, entries)      # address -> the latest entry that reads it
    np.maximum.at(last_read, other, entries)
    return bool(np.all(last_read[dst] <= entries))


def _disjoint_max(count, src, other, dst):
    """Whether a MAX run (each a (base, stride)) writes distinct entries, none that it
    reads, except each entry's own first operand: the cheap, common case of
    `_reads_before_writes`, decided from the runs' ends."""
    end = lambda run: run[0] + run[1] * (count - 1)
    lo, hi = dst[0], end(dst)
    apart = lambda run: end(run) < lo or run[0] > hi
    distinct = count == 1 or dst[1] > 0
    return distinct and apart(other) and (apart(src) or src == dst)


def _run_slice(base, stride, count):
    """The entries of a run as a slice (a view, not a copy); a stride of 0 repeats one."""
    if stride == 0:
        return np.full(count, base)
    return slice(base, base + stride * (count - 1) + 1, stride)


def _run_addresses(base, stride, count):
    return base + stride * np.arange(count, dtype=np.int64)


@functools.lru_cache(maxsize=1 << 16)
def _decoded(words, config):
    """(Instruction, its check) of instruction words: decoded and checked once per process,
    whatever device runs them (programs are run again batch after batch)."""
    instruction = decode(words)
    return instruction, check_instruction(instruction, config)


@functools.lru_cache(maxsize=1 << 16)
def _mvm_plan(ins, config):
    return _MvmPlan(ins, config)


class _MvmPlan:
    """What an MVM instruction does that does not depend on the data, worked out once per
    instruction and config (and shared, read-only, by every device): the amem entries each vector reads, each replica's tiles and vectors,
    the psum addresses written, and the counters it adds."""

    def __init__(self, ins, c):
        K, G, R = ins.ktiles, ins.ngroups, ins.replicas
        n = self.n = ins.count
        vectors = np.arange(n, dtype=np.int64)
        # tiles[r, g, k]: replica r's tile for K block k and output block g (isa.mvm_tile)
        self.tiles = ins.tile + np.arange(R * G * K).reshape(R, G, K)
        self.entries = (ins.src + ins.src_stride * vectors[:, None]
                        + ins.aux * np.arange(K, dtype=np.int64)[None, :])     # (n, K)
        self.replicas = [slice(r, None, R) for r in range(min(R, n))]
        self.addresses = (ins.dst + ins.dst_stride * vectors[:, None]
                          + ins.aux2 * np.arange(G, dtype=np.int64)[None, :]).ravel()
        self.distinct = _distinct(ins.dst, ins.dst_stride, n, ins.aux2, G)
        self.offset = INPUT_OFFSET if ins.offset_inputs else 0
        for shared in (self.tiles, self.entries, self.addresses):   # cached: every device's
            shared.setflags(write=False)
        products = n * K * G
        self.counters = {
            "cycles": mvm_cycles(c, n, K, G, R),
            "tile_busy_cycles": products * c.steps * c.adc_share,
            "mvm_products": products,
            "dac_conversions": products * c.rows * c.steps,
            "adc_conversions": products * c.cols * c.slices * c.steps,
            "cell_reads": products * 2 * c.rows * c.cols * c.slices * c.steps,
            "amem_reads": n * K,
            "psum_reads": n * G if ins.accumulate else 0,
            "psum_writes": n * G}


class Device:
    """NumPy state of one accelerator and an interpreter of its binary programs.

    Memories are public arrays: ``imem`` (words), ``wmem`` (int8 rows, ``cols`` lanes per
    tile), ``amem`` (int8
    vectors), ``psum`` (int32 vectors), ``qmem`` (words: ``cols`` channels of
    `pack_quant_params` per entry); ``tile_weights`` holds what
    each tile has been programmed with (read it: only PROGRAM writes it, and clears the
    products' cached weight matrices).
    """

    def __init__(self, config, nonideal=None):
        """`nonideal` (a `golden.NonIdealities`) perturbs the analog side of every MVM;
        the counters and timing are those of the ideal device."""
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be a golden.AccelConfig, not {config!r}")
        self.config = c = config
        self.analog = AnalogTiles(c, nonideal) if nonideal is not None and nonideal.active else None
        self.imem = np.zeros((c.imem_depth, WORDS_PER_INSTRUCTION), np.int64)
        self.wmem = np.zeros((c.wmem_depth, c.tiles * c.cols), np.int64)   # a lane per tile
        self.amem = np.zeros((c.amem_depth, c.rows), np.int64)
        self.psum = np.zeros((c.psum_depth, c.cols), np.int64)
        self.qmem = np.zeros((c.qmem_depth, 4 * c.cols), np.int64)
        self.tile_weights = np.zeros((c.tiles, c.rows, c.cols), np.int64)
        self._params = {}                # qmem entry bytes -> its unpacked parameters
        self._stacked = {}               # (first tile, ktiles, ngroups) -> stacked weights

    def soft_reset(self):
        """What CONTROL.soft_reset does to the state modelled here: nothing. The sequencer
        stops (status and counters clear in the register map); memories and the tiles'
        weights are kept, as a crossbar's non-volatile cells keep theirs. Weights are zero
        at power-on (a new Device) and no reset clears them."""

    def load_program(self, words):
        words = np.asarray(words, np.int64).reshape(-1, WORDS_PER_INSTRUCTION)
        if len(words) > self.config.imem_depth:
            raise ValueError(f"program of {len(words)} instructions exceeds imem_depth "
                             f"{self.config.imem_depth}")
        self.imem[:len(words)] = words & 0xFFFF_FFFF

    def run(self, max_instructions=1 << 20, trace=False):
        """Run from pc 0 until HALT or an error; return a `RunResult` with the counters
        (and, with `trace`, each instruction's share of them)."""
        counters = dict.fromkeys(COUNTERS, 0)
        self.counters = counters
        pc = 0
        steps = []
        for _ in range(max_instructions):
            if trace:
                before = dict(counters)
                steps.append((pc, before))
            if pc >= self.config.imem_depth:
                counters["cycles"] += 1          # the FETCH that finds no instruction
                return RunResult(False, ErrorCode.PC_OVERFLOW, pc, counters)
            counters["cycles"] += FETCH_DECODE_CYCLES
            counters["imem_reads"] += 1
            words = tuple(self.imem[pc].tolist())
            instruction, error = _decoded(words, self.config)
            if error != ErrorCode.NONE:
                return RunResult(False, error, pc, counters, self._deltas(steps))
            if instruction.opcode == Opcode.HALT:
                counters["instructions"] += 1
                return RunResult(True, ErrorCode.NONE, 0, counters, self._deltas(steps))
            {Opcode.PROGRAM: self._program, Opcode.MVM: self._mvm,
             Opcode.REQUANT: self._requant, Opcode.MAX: self._max}[instruction.opcode](instruction)
            counters["instructions"] += 1
            pc += 1
        raise RuntimeError(f"program ran {max_instructions} instructions without halting")

    def _deltas(self, steps):
        """(pc, counters spent by that instruction) from the snapshots taken before each."""
        ends = [before for _, before in steps[1:]] + [self.counters]
        return [(pc, {k: end[k] - before[k] for k in end}) for (pc, before), end in zip(steps, ends)]

    # Execution, once `check_instruction` has passed --------------------------------------

    def _program(self, ins):
        c = self.config
        lanes = self.wmem[ins.src:ins.src + c.rows].reshape(c.rows, c.tiles, c.cols)
        tiles = slice(ins.tile, ins.tile + ins.count)
        self.tile_weights[tiles] = lanes[:, program_lanes(ins, c.tiles)].transpose(1, 0, 2)
        self._stacked.clear()
        if self.analog is not None:
            for t in range(ins.tile, ins.tile + ins.count):
                self.analog.program(t, self.tile_weights[t])
        k = self.counters
        k["cycles"] += program_cycles(c)
        k["tile_programs"] += ins.count
        k["wmem_reads"] += c.rows * ins.count           # one row of each programmed tile's lane
        k["cell_writes"] += ins.count * 2 * c.rows * c.cols * c.slices

    def _tile_product(self, tile, x, ins):
        """Tile `tile`'s results for vectors `x` at the MVM's ADC range and encoding."""
        if self.analog is not None:
            return self.analog.mvm(tile, x, ins.adc_shift, ins.offset_inputs)
        return crossbar_mvm(self.config, x, self.tile_weights[tile], ins.adc_shift,
                            ins.offset_inputs)

    def _mvm(self, ins):
        c, plan = self.config, _mvm_plan(ins, self.config)
        if plan.n:
            inputs = self.amem[plan.entries]                                   # (n, K, rows)
            results = np.empty((plan.n, ins.ngroups, c.cols), np.int64)
            for r, mine in enumerate(plan.replicas):
                if c.is_lossless and self.analog is None:
                    results[mine] = int8_matmul(
                        inputs[mine].reshape(-1, ins.ktiles * c.rows) + plan.offset,
                        self._stacked_weights(plan.tiles[r])).reshape(-1, ins.ngroups, c.cols)
                else:
                    # Lossy or analog: each tile's bit-serial product, then the adder tree's sum.
                    results[mine] = sum(
                        np.stack([self._tile_product(plan.tiles[r, g, k], inputs[mine, k], ins)
                                  for g in range(ins.ngroups)], axis=1)
                        for k in range(ins.ktiles))
            results = results.reshape(-1, c.cols)
            if plan.distinct:                                   # no write lands on another
                base = self.psum[plan.addresses] if ins.accumulate else 0
                self.psum[plan.addresses] = _wrap_int32(base + results)
            else:
                # Vector by vector, output block by block: the order in which the writes land.
                for address, result in zip(plan.addresses, results):
                    base = self.psum[address] if ins.accumulate else 0
                    self.psum[address] = _wrap_int32(base + result)
        for name, value in plan.counters.items():
            self.counters[name] += value

    def _stacked_weights(self, tiles):
        """The adder tree's sum as one product: the weights of `tiles` (G, K) stacked as
        ``(K * rows, G * cols)`` float64, kept until a PROGRAM changes the tiles."""
        c = self.config
        key = (int(tiles[0, 0]),) + tiles.shape
        stacked = self._stacked.get(key)
        if stacked is None:
            G, K = tiles.shape
            weights = self.tile_weights[tiles]                                 # (G, K, rows, cols)
            stacked = self._stacked[key] = np.asarray(
                weights.transpose(1, 2, 0, 3).reshape(K * c.rows, G * c.cols), np.float64)
        return stacked

    def _requant(self, ins):
        c = self.config
        n = ins.count
        entry = self.qmem[ins.aux]
        params = self._params.get(entry.tobytes())      # the words are the key
        if params is None:
            params = self._params[entry.tobytes()] = unpack_quant_params(entry.reshape(c.cols, 4))
        outputs = requantize(self.psum[_run_addresses(ins.src, ins.src_stride, n)], **params)
        lanes = slice(ins.aux2 * c.cols, (ins.aux2 + 1) * c.cols)
        addresses = _run_addresses(ins.dst, ins.dst_stride, n)
        if _distinct(ins.dst, ins.dst_stride, n):
            self.amem[addresses, lanes] = outputs
        else:                                                  # the last write of each wins
            for address, output in zip(addresses, outputs):
                self.amem[address, lanes] = output
        k = self.counters
        k["cycles"] += requant_cycles(c, n)
        k["psum_reads"] += n
        k["qmem_reads"] += n
        k["requantizations"] += n * c.cols
        k["amem_writes"] += n

    def _max(self, ins):
        c = self.config
        n = ins.count
        src, other, dst = runs = ((ins.src, ins.src_stride), (ins.aux, ins.aux2),
                                  (ins.dst, ins.dst_stride))
        if n and _disjoint_max(n, *runs):
            self.amem[_run_slice(*dst, n)] = np.maximum(self.amem[_run_slice(*src, n)],
                                                        self.amem[_run_slice(*other, n)])
        elif n:
            src, other, dst = (_run_addresses(*run, n) for run in runs)
            if _reads_before_writes(src, other, dst):
                self.amem[dst] = np.maximum(self.amem[src], self.amem[other])
            else:
                # Entry by entry, so that a run writing what a later entry reads sees it.
                for a, b, d in zip(src, other, dst):
                    self.amem[d] = np.maximum(self.amem[a], self.amem[b])
        k = self.counters
        k["cycles"] += max_cycles(c, n)
        k["amem_reads"] += 2 * n
        k["amem_writes"] += n
