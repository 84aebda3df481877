"""The device model: runs a program binary on NumPy state, predicting every counter exactly.

Timing contract (the RTL's sequencer implements exactly this; N = steps * adc_share):

=============  =====================================================================
every instr.   FETCH 1 + DECODE 1 (the run-end products are registered) + CHECK 1
               (bounds compared, dispatch; HALT and errors end here; PC_OVERFLOW ends
               at FETCH)
PROGRAM        rows + 1 cycles (one wmem read a cycle, the tile write one cycle later)
MVM            per vector: amem read 1 + feed 1 + convert N + 2 per selected tile
               (partial-sum read, then write)
REQUANT        entries + 4: one psum and parameter read a cycle into the requantiser
               pipeline (all cols lanes at once); entry i is written 4 cycles after
               its read (an empty run: 0)
MAX            per entry: 3 (read one operand, read the other, write the maximum)
=============  =====================================================================
"""

from dataclasses import dataclass, field

import numpy as np

from .config import AccelConfig
from .crossbar import tile_products
from .isa import WORDS_PER_INSTRUCTION, ErrorCode, Opcode, decode
from .regmap import COUNTERS
from .requant import requantize

__all__ = ["Device", "RunResult", "QuantParams", "pack_quant_params", "unpack_quant_params",
           "program_cycles", "mvm_vector_cycles", "requant_cycles", "max_entry_cycles"]

FETCH_DECODE_CYCLES = 3
REQUANT_LATENCY = 4             # psum read 1 + requantiser stages 3


def program_cycles(config):
    return config.rows + 1


def mvm_vector_cycles(config, tiles):
    return 2 + config.steps * config.adc_share + 2 * tiles


def requant_cycles(config, entries):
    return entries + REQUANT_LATENCY if entries else 0


def max_entry_cycles(config):
    return 3


@dataclass(frozen=True)
class QuantParams:
    bias: int
    multiplier: int
    shift: int
    zero_point: int = 0
    clamp_min: int = -128
    clamp_max: int = 127


def pack_quant_params(params):
    """Four qmem words: bias, multiplier, shift | zero_point << 8 | clamp_min << 16 |
    clamp_max << 24 (int8 fields in two's complement), 0."""
    byte = lambda v: int(v) & 0xFF
    return [int(params.bias) & 0xFFFF_FFFF, int(params.multiplier) & 0xFFFF_FFFF,
            byte(params.shift) | byte(params.zero_point) << 8 | byte(params.clamp_min) << 16
            | byte(params.clamp_max) << 24, 0]


def unpack_quant_params(words):
    """Vectorised inverse of `pack_quant_params`: a dict of int64 arrays from (n, 4) words."""
    words = np.asarray(words, np.int64)
    s8 = lambda v: ((v & 0xFF) ^ 0x80) - 0x80
    return dict(bias=((words[..., 0] & 0xFFFF_FFFF) ^ 0x8000_0000) - 0x8000_0000,
                multiplier=words[..., 1] & 0xFFFF_FFFF, shift=words[..., 2] & 0xFF,
                zero_point=s8(words[..., 2] >> 8), clamp_min=s8(words[..., 2] >> 16),
                clamp_max=s8(words[..., 2] >> 24))


@dataclass
class RunResult:
    done: bool
    error: ErrorCode
    error_pc: int
    counters: dict = field(default_factory=dict)
    trace: list = field(default_factory=list)   # per executed instruction: (pc, counter deltas)


class ProgramError(Exception):
    def __init__(self, code):
        self.code = code


def _wrap_int32(values):
    return ((np.asarray(values, np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def _reads_before_writes(src, other, dst):
    """Whether a MAX run may be done at once: no two entries write one address and no
    entry writes an address a later entry reads (entry i may write what it reads)."""
    if len(np.unique(dst)) != len(dst):
        return False
    last_read = {}                       # address -> the latest entry that reads it
    for index, (a, b) in enumerate(zip(src.tolist(), other.tolist())):
        last_read[a] = last_read[b] = index
    return all(last_read.get(address, -1) <= i for i, address in enumerate(dst.tolist()))


def _run_addresses(base, stride, count):
    return base + stride * np.arange(count, dtype=np.int64)


class Device:
    """NumPy state of one accelerator and an interpreter of its binary programs.

    Memories are public arrays: ``imem`` (words), ``wmem`` (int8 rows), ``amem`` (int8
    vectors), ``psum`` (int32 vectors), ``qmem`` (words: ``cols`` channels of
    `pack_quant_params` per entry); ``tile_weights`` holds what
    each tile has been programmed with.
    """

    def __init__(self, config):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be a golden.AccelConfig, not {config!r}")
        self.config = c = config
        self.imem = np.zeros((c.imem_depth, WORDS_PER_INSTRUCTION), np.int64)
        self.wmem = np.zeros((c.wmem_depth, c.cols), np.int64)
        self.amem = np.zeros((c.amem_depth, c.rows), np.int64)
        self.psum = np.zeros((c.psum_depth, c.cols), np.int64)
        self.qmem = np.zeros((c.qmem_depth, 4 * c.cols), np.int64)
        self.tile_weights = np.zeros((c.tiles, c.rows, c.cols), np.int64)
        self._decoded = {}               # instruction words -> Instruction (words are the key)

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
            instruction = self._decoded.get(words)
            if instruction is None:
                instruction = self._decoded[words] = decode(words)
            try:
                if instruction.opcode == Opcode.HALT:
                    counters["instructions"] += 1
                    return RunResult(True, ErrorCode.NONE, 0, counters, self._deltas(steps))
                execute = {Opcode.PROGRAM: self._program, Opcode.MVM: self._mvm,
                           Opcode.REQUANT: self._requant,
                           Opcode.MAX: self._max}.get(instruction.opcode)
                if execute is None:
                    raise ProgramError(ErrorCode.ILLEGAL_OPCODE)
                execute(instruction)
            except ProgramError as error:
                return RunResult(False, error.code, pc, counters, self._deltas(steps))
            counters["instructions"] += 1
            pc += 1
        raise RuntimeError(f"program ran {max_instructions} instructions without halting")

    def _deltas(self, steps):
        """(pc, counters spent by that instruction) from the snapshots taken before each."""
        ends = [before for _, before in steps[1:]] + [self.counters]
        return [(pc, {k: end[k] - before[k] for k in end}) for (pc, before), end in zip(steps, ends)]

    # Checks done at DECODE, before anything executes ------------------------------------

    @staticmethod
    def _check_run(base, stride, count, depth, extra=0):
        if count and base + stride * (count - 1) + extra >= depth:
            raise ProgramError(ErrorCode.BAD_ADDRESS)

    def _program(self, ins):
        c = self.config
        if ins.tile >= c.tiles:
            raise ProgramError(ErrorCode.BAD_TILE)
        if ins.src % c.rows:
            raise ProgramError(ErrorCode.MISALIGNED)
        self._check_run(ins.src, 1, c.rows, c.wmem_depth)
        self.tile_weights[ins.tile] = self.wmem[ins.src:ins.src + c.rows]
        k = self.counters
        k["cycles"] += program_cycles(c)
        k["tile_programs"] += 1
        k["wmem_reads"] += c.rows
        k["cell_writes"] += 2 * c.rows * c.cols * c.slices

    def _mvm(self, ins):
        c = self.config
        if ins.tile == 0 or ins.tile >> c.tiles:
            raise ProgramError(ErrorCode.BAD_TILE)
        tiles = [t for t in range(c.tiles) if ins.tile >> t & 1]
        self._check_run(ins.src, ins.src_stride, ins.count, c.amem_depth)
        self._check_run(ins.dst, ins.dst_stride, ins.count, c.psum_depth,
                        extra=ins.aux * (len(tiles) - 1))
        n, conv = ins.count, c.steps * c.adc_share
        inputs = self.amem[_run_addresses(ins.src, ins.src_stride, n)]
        weights = np.concatenate([self.tile_weights[tile] for tile in tiles], axis=1)
        results = tile_products(c, inputs, weights).reshape(n, len(tiles), c.cols)
        addresses = (ins.dst + ins.dst_stride * np.arange(n, dtype=np.int64)[:, None]
                     + ins.aux * np.arange(len(tiles), dtype=np.int64)[None, :]).ravel()
        results = results.reshape(-1, c.cols)
        if len(np.unique(addresses)) == len(addresses):       # no write lands on another
            base = self.psum[addresses] if ins.accumulate else 0
            self.psum[addresses] = _wrap_int32(base + results)
        else:
            # Vector by vector, tile rank by rank: the order in which overlapping runs land.
            for address, result in zip(addresses, results):
                base = self.psum[address] if ins.accumulate else 0
                self.psum[address] = _wrap_int32(base + result)
        k, products = self.counters, n * len(tiles)
        k["cycles"] += n * mvm_vector_cycles(c, len(tiles))
        # Tile of rank j holds its product from the cycle after the feed to its psum write.
        k["tile_busy_cycles"] += n * sum(conv + 2 + 2 * j for j in range(len(tiles)))
        k["mvm_products"] += products
        k["dac_conversions"] += products * c.rows * c.steps
        k["adc_conversions"] += products * c.cols * c.slices * c.steps
        k["cell_reads"] += products * 2 * c.rows * c.cols * c.slices * c.steps
        k["amem_reads"] += n
        k["psum_reads"] += products if ins.accumulate else 0
        k["psum_writes"] += products

    def _requant(self, ins):
        c = self.config
        if ins.aux2 >= c.rows // c.cols:
            raise ProgramError(ErrorCode.MISALIGNED)
        self._check_run(ins.src, ins.src_stride, ins.count, c.psum_depth)
        self._check_run(ins.dst, ins.dst_stride, ins.count, c.amem_depth)
        self._check_run(ins.aux, 1, 1, c.qmem_depth)
        n = ins.count
        params = unpack_quant_params(self.qmem[ins.aux].reshape(c.cols, 4))
        outputs = requantize(self.psum[_run_addresses(ins.src, ins.src_stride, n)], **params)
        lanes = slice(ins.aux2 * c.cols, (ins.aux2 + 1) * c.cols)
        addresses = _run_addresses(ins.dst, ins.dst_stride, n)
        if len(np.unique(addresses)) == n:
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
        self._check_run(ins.src, ins.src_stride, ins.count, c.amem_depth)
        self._check_run(ins.aux, ins.aux2, ins.count, c.amem_depth)
        self._check_run(ins.dst, ins.dst_stride, ins.count, c.amem_depth)
        n = ins.count
        src, other = _run_addresses(ins.src, ins.src_stride, n), _run_addresses(ins.aux, ins.aux2, n)
        dst = _run_addresses(ins.dst, ins.dst_stride, n)
        if _reads_before_writes(src, other, dst):
            self.amem[dst] = np.maximum(self.amem[src], self.amem[other])
        else:
            # Entry by entry, so that a run writing what a later entry reads sees the write.
            for a, b, d in zip(src, other, dst):
                self.amem[d] = np.maximum(self.amem[a], self.amem[b])
        k = self.counters
        k["cycles"] += n * max_entry_cycles(c)
        k["amem_reads"] += 2 * n
        k["amem_writes"] += n
