"""The device model: runs a program binary on NumPy state, predicting every counter exactly,
per the timing contract of :mod:`golden.timing`."""

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .config import WEIGHT_BITS, AccelConfig
from .crossbar import INPUT_OFFSET, crossbar_mvm, int8_matmul, read_weights
from .interface import QPARAM_BITS, QPARAM_FIELDS, pack_fields, unpack_fields
from .isa import FIELDS, WORDS_PER_INSTRUCTION, ErrorCode, Opcode, decode, program_lanes
from .nonideal import AnalogTiles
from .regmap import COUNTERS
from .requant import (INT32_MAX, checked_params, clamped_params, requantize_checked,
                      requantize_clamped)
from .timing import (FETCH_DECODE_CYCLES, max_cycles, mvm_cycles, program_cycles,
                     requant_cycles)

__all__ = ["Device", "DeviceStack", "RunResult", "QuantParams", "pack_quant_params", "unpack_quant_params",
           "check_instruction", "as_span"]


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


def _run_end(base, stride, count, extra=0):
    """The last entry of base + i*stride + extra (i < count, count > 0)."""
    return base + stride * (count - 1) + extra


def _run_fits(base, stride, count, depth, extra=0):
    """Whether entries base + i*stride + extra (i < count) all lie inside a memory of `depth`."""
    return not count or _run_end(base, stride, count, extra) < depth


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
        if ((ins.requantize and (ins.accumulate or not c.requantizing_mvms))
                or (ins.max_into and not ins.requantize)):
            return ErrorCode.BAD_FLAGS
        k_span, n_span = ins.aux * (ins.ktiles - 1), ins.aux2 * (ins.ngroups - 1)
        if not (_run_fits(ins.src, ins.src_stride, ins.count, c.amem_depth, k_span)
                and _run_fits(ins.dst, ins.dst_stride, ins.count,
                              c.amem_depth if ins.requantize else c.psum_depth, n_span)
                and (not ins.requantize or ins.qentry + ins.ngroups <= c.qmem_depth)):
            return ErrorCode.BAD_ADDRESS
        if ins.requantize and ins.count and not (
                _run_end(ins.src, ins.src_stride, ins.count, k_span) < ins.dst
                or _run_end(ins.dst, ins.dst_stride, ins.count, n_span) < ins.src):
            return ErrorCode.OVERLAP
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
    end = lambda run: _run_end(*run, count)
    lo, hi = dst[0], end(dst)
    apart = lambda run: end(run) < lo or run[0] > hi
    distinct = count == 1 or dst[1] > 0
    return distinct and apart(other) and (apart(src) or src == dst)


def _run_slice(base, stride, count):
    """The entries of a run as a slice (a view, not a copy); a stride of 0 repeats one
    (an index array, read-only: plans share it)."""
    if stride == 0:
        entries = np.full(count, base)
        entries.setflags(write=False)
        return entries
    return slice(base, base + stride * (count - 1) + 1, stride)


def _run_addresses(base, stride, count):
    return base + stride * np.arange(count, dtype=np.int64)


def as_span(indices):
    """`indices` as a slice when they are consecutive (a view, not a gather), else as a
    read-only array (plans and caches share it)."""
    indices = np.asarray(indices)
    if len(indices) and indices[-1] - indices[0] == len(indices) - 1 \
            and (np.diff(indices) == 1).all():
        return slice(int(indices[0]), int(indices[-1]) + 1)
    indices = indices.copy()
    indices.setflags(write=False)
    return indices


@functools.lru_cache(maxsize=1 << 16)
def _decoded(words, config):
    """(Instruction, its check) of instruction words: decoded and checked once per process,
    whatever device runs them (programs are run again batch after batch)."""
    instruction = decode(words)
    return instruction, check_instruction(instruction, config)


@functools.lru_cache(maxsize=1 << 12)
def _entry_params(entry, cols):
    """A qmem entry's parameters (its bytes are the key), unpacked and checked, and in the
    clamped form where that is exact (`golden.requant.clamped_params`, else None): made
    once per process, as every device, batch after batch, reads the same few entries."""
    words = np.frombuffer(entry, np.int64).reshape(cols, 4)
    params = checked_params(**unpack_quant_params(words))
    return params, clamped_params(params)


@functools.lru_cache(maxsize=1 << 16)
def _mvm_plan(ins, config):
    return _MvmPlan(ins, config)


class _MvmPlan:
    """What an MVM instruction does that does not depend on the data, worked out once per
    instruction and config (and shared, read-only, by every device): the amem entries
    each vector reads, each replica's tiles and vectors, the psum addresses written."""

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


def instruction_counters(ins, config):
    """The counters one instruction adds, FETCH to its last cycle: they depend on the
    instruction and the config only, never on the data."""
    c, n = config, ins.count
    counters = {"cycles": FETCH_DECODE_CYCLES, "imem_reads": 1, "instructions": 1}
    if ins.opcode == Opcode.PROGRAM:
        counters.update(tile_programs=ins.count, wmem_reads=c.rows * ins.count,
                        cell_writes=ins.count * 2 * c.rows * c.cols * c.slices)
        counters["cycles"] += program_cycles(c)
    elif ins.opcode == Opcode.MVM:
        products, outputs = n * ins.ktiles * ins.ngroups, n * ins.ngroups
        counters.update(
            tile_busy_cycles=products * c.steps * c.adc_share, mvm_products=products,
            dac_conversions=products * c.rows * c.steps,
            adc_conversions=products * c.cols * c.slices * c.steps,
            cell_reads=products * 2 * c.rows * c.cols * c.slices * c.steps,
            amem_reads=n * ins.ktiles + (outputs if ins.max_into else 0),
            psum_reads=outputs if ins.accumulate else 0)
        if ins.requantize:
            counters.update(qmem_reads=outputs, requantizations=outputs * c.cols,
                            amem_writes=outputs)
        else:
            counters.update(psum_writes=outputs)
        counters["cycles"] += mvm_cycles(c, n, ins.ktiles, ins.ngroups, ins.replicas,
                                         ins.requantize)
    elif ins.opcode == Opcode.REQUANT:
        counters.update(psum_reads=n, qmem_reads=n, requantizations=n * c.cols, amem_writes=n)
        counters["cycles"] += requant_cycles(c, n)
    elif ins.opcode == Opcode.MAX:
        counters.update(amem_reads=2 * n, amem_writes=n)
        counters["cycles"] += max_cycles(c, n)
    elif ins.opcode != Opcode.HALT:
        raise ValueError(f"no counters for opcode {ins.opcode}")
    return counters


@functools.lru_cache(maxsize=256)
def _program_plan(imem, config, fuse):
    return _ProgramPlan(np.frombuffer(imem, np.uint32).reshape(-1, WORDS_PER_INSTRUCTION),
                        config, fuse)


class _ProgramPlan:
    """A program (the instruction memory's words) as the device will run it, worked out
    once per program and config: each instruction decoded and checked, how the run ends,
    the counters (in total and per instruction, for a trace), and the steps that change
    the memories. Nothing here depends on the data, so a program run batch after batch is
    planned once.

    On an ideal lossless device the steps are fused (`fuse`): PROGRAMs only say which wmem
    rows each tile holds, so an MVM whose tiles a PROGRAM of the same run filled takes its
    weights from wmem directly, consecutive MVMs become one product where nothing can
    tell (`_Product`), and the tiles are written once, at the end. A lossy or analog
    device runs the instructions one by one: each tile's ADCs round its own sum, and
    the analog tiles keep state per programming."""

    def __init__(self, words, config, fuse=True):
        c = self.config = config
        self.trace = []             # (pc, counters of that instruction)
        instructions = []
        self.done, self.error, self.error_pc = False, ErrorCode.PC_OVERFLOW, len(words)
        for pc in range(len(words) + 1):
            if pc >= c.imem_depth:
                self.trace.append((pc, {"cycles": 1}))          # the FETCH that finds nothing
                self.error_pc = pc
                break
            instruction, error = _decoded(tuple(words[pc].tolist()), c)
            if error != ErrorCode.NONE:
                self.trace.append((pc, {"cycles": FETCH_DECODE_CYCLES, "imem_reads": 1}))
                self.error, self.error_pc = error, pc
                break
            self.trace.append((pc, instruction_counters(instruction, c)))
            if instruction.opcode == Opcode.HALT:
                self.done, self.error, self.error_pc = True, ErrorCode.NONE, 0
                break
            instructions.append(instruction)
        self.fetches = len(self.trace)
        self.counters = dict.fromkeys(COUNTERS, 0)
        for _, spent in self.trace:
            for name, value in spent.items():
                self.counters[name] += value
        self.trace = [(pc, {name: spent.get(name, 0) for name in COUNTERS})
                      for pc, spent in self.trace]
        self.steps = _fused_steps(instructions, c) if fuse else [
            (_RUN[ins.opcode], ins) for ins in instructions]


def _fused_steps(instructions, c):
    """(function, argument) steps of an ideal lossless device: see `_ProgramPlan`."""
    source = {}                      # tile -> (wmem row, lane) of its last PROGRAM so far
    steps = []
    for ins in instructions:
        if ins.opcode == Opcode.PROGRAM:
            for tile, lane in zip(range(ins.tile, ins.tile + ins.count),
                                  program_lanes(ins, c.tiles).tolist()):
                source[tile] = (ins.src, lane)
            continue
        if ins.opcode == Opcode.REQUANT and steps and ins.count:
            joined = _Requants.join(steps[-1], ins, c.cols)
            if joined is not None:
                steps[-1] = (Device._requants, joined)
                continue
        if ins.opcode != Opcode.MVM:
            steps.append((_RUN[ins.opcode], ins))
            continue
        plan = _mvm_plan(ins, c)
        if not plan.n:
            continue                                          # counts, changes nothing
        steps.append((Device._product, _Product(ins, plan, source, c)))
        while len(steps) > 1 and steps[-2][0] is steps[-1][0] is Device._product:
            merged = steps[-2][1].merge(steps[-1][1])
            if merged is None:
                break
            steps[-2:] = [(Device._product, merged)]
    if source:
        steps.append((Device._write_tiles, _tiles_written(source, c)))
    for run, step in steps:
        if run is Device._product:
            step.finish()
    return steps


LANE_BLOCKS = 1 << FIELDS["aux2"][1]        # the lane blocks a REQUANT's aux2 can name


class _Requants:
    """Consecutive REQUANTs as one requantisation: the psum entries of all of them, each
    with its own parameters (its qmem entry's, a row each), then each one's outputs
    written to its amem entries and lanes. Joined only when no two write the same lanes
    of one entry, so the order of the writes is moot; REQUANTs read psum and qmem and
    write amem only, so none sees another's writes. A run of one is `Device._requant`."""

    def __init__(self, parts, cols):
        self.parts = parts                      # the instructions, in order
        self.cols = cols
        src = np.concatenate([_run_addresses(i.src, i.src_stride, i.count) for i in parts])
        self.src = as_span(src)
        dst = np.concatenate([_run_addresses(i.dst, i.dst_stride, i.count) for i in parts])
        block = np.repeat([i.aux2 for i in parts], [i.count for i in parts])
        self.written = dst * LANE_BLOCKS + block                 # (entry, lane block)
        ends = np.cumsum([i.count for i in parts])
        self.writes = [(slice(end - i.count, end), _run_slice(i.dst, i.dst_stride, i.count),
                        _requant_plan(i, cols)[2])              # (outputs, entries, lanes)
                       for i, end in zip(parts, ends.tolist())]
        if len({i.aux2 for i in parts}) == 1:   # one lane block: distinct entries, one write
            self.writes = [(slice(0, int(ends[-1])), as_span(dst), self.writes[0][2])]
        self.aux = np.array([i.aux for i in parts])
        self.counts = tuple(i.count for i in parts)

    @classmethod
    def join(cls, step, ins, cols):
        """`step` (a fused step) then the REQUANT `ins` as one `_Requants`, or None."""
        run, argument = step
        if run is Device._requant:
            if not argument.count:
                return None
            argument = cls([argument], cols)
        elif run is not Device._requants:
            return None
        joined = cls([*argument.parts, ins], cols)
        return joined if len(np.unique(joined.written)) == len(joined.written) else None


@functools.lru_cache(maxsize=1 << 12)
def _stacked_params(entries, counts, cols):
    """(function, parameters) that requantise with the qmem `entries` (their bytes), each
    repeated over its `counts` psum entries, a row of parameters per psum entry (one row
    for a REQUANT, which broadcasts; a row each for joined REQUANTs and for the blocks of
    a requantising MVM): the clamped form where every entry's is exact, four passes
    fewer, else the checked one."""
    words = np.frombuffer(entries, np.int64).reshape(len(counts), -1)
    each = [_entry_params(row.tobytes(), cols) for row in words]
    if all(clamped is not None for _, clamped in each):
        requantize, each = requantize_clamped, [clamped for _, clamped in each]
    else:
        requantize, each = requantize_checked, [checked for checked, _ in each]
    return requantize, {name: np.repeat(np.stack([np.broadcast_to(p[name], (cols,))
                                                  for p in each]), counts, axis=0)
                        for name in each[0]}


def _wmem_block(src, lane, c):
    """Where in wmem, flat, the ``rows x cols`` weights programmed from rows ``src ..``
    of `lane` lie (`src`, `lane`: ints, or arrays for a block each)."""
    src, lane = np.asarray(src)[..., None, None], np.asarray(lane)[..., None, None]
    rows, cols = np.arange(c.rows)[:, None], np.arange(c.cols)[None, :]
    return (src + rows) * (c.tiles * c.cols) + lane * c.cols + cols


def _tiles_written(source, c):
    """(tiles, flat wmem index of their weights) for tiles -> (wmem row, lane)."""
    tiles = np.array(sorted(source))
    src, lane = (np.array([source[t][i] for t in tiles]) for i in (0, 1))
    return tiles, _wmem_block(src, lane, c)


class _Product:
    """MVMs as one int8-exact product (`int8_matmul`): ``results = X @ W``, where row v of X is the
    amem entries ``entries[v]`` side by side, W is gathered from wmem (tiles a PROGRAM of
    this run filled: the rows and lane it named) or from the tiles' weights (tiles filled
    before), and column block g of row v lands in psum entry ``addresses[v, g]``.

    One MVM is such a product. Two consecutive ones make one (`merge`) when nothing can
    tell: on the same weights (rows stacked), on the same inputs (columns side by side),
    or, the second accumulating, on the same psum entries (the K blocks side by side: the
    adder tree made longer); always with the same input encoding and no psum entry
    written twice, so the order of the writes is moot. int32 wrapping commutes with the
    sums. Replicas on different weights stay an MVM of their own."""

    def __init__(self, ins, plan, source, c):
        self.config = c
        self.accumulate, self.offset = ins.accumulate, plan.offset
        # a requantizing MVM writes amem, not psum: block g with qmem entry qentries[g]
        self.qentries = (np.arange(ins.qentry, ins.qentry + ins.ngroups) if ins.requantize
                         else None)
        self.max_into = ins.max_into
        n, K, G = plan.n, ins.ktiles, ins.ngroups
        self.entries = plan.entries
        self.addresses = plan.addresses.reshape(n, G)
        self.distinct = plan.distinct
        rows, cols = np.arange(c.rows)[:, None], np.arange(c.cols)[None, :]
        wmem_size = c.wmem_depth * c.tiles * c.cols
        replica_index = []
        for tiles in plan.tiles:                        # (G, K) tiles of each replica
            index = np.empty((K * c.rows, G * c.cols), np.int64)
            for g, k in np.ndindex(G, K):
                tile = int(tiles[g, k])
                if tile in source:                      # stacked[k*rows + i, g*cols + j]
                    block = _wmem_block(*source[tile], c)
                else:
                    block = wmem_size + (tile * c.rows + rows) * c.cols + cols
                index[k * c.rows:(k + 1) * c.rows, g * c.cols:(g + 1) * c.cols] = block
            replica_index.append(index)
        self.uniform = all(np.array_equal(i, replica_index[0]) for i in replica_index)
        self.index = replica_index[0] if self.uniform else replica_index
        self.vectors = None if self.uniform else [np.arange(r, n, ins.replicas)
                                                  for r in range(ins.replicas)]

    @property
    def requantize(self):
        return self.qentries is not None

    def merge(self, other):
        """One product doing what `self` then `other` do, or None."""
        if not (self.uniform and other.uniform and self.distinct and other.distinct
                and self.offset == other.offset and self.requantize == other.requantize
                and self.max_into == other.max_into):
            return None
        # Requantizing, `self` writes amem: `other` must not read what it wrote.
        if self.requantize and np.isin(other.entries, self.addresses).any():
            return None
        same = lambda a, b: a is b or (a.shape == b.shape and np.array_equal(a, b))
        if other.accumulate and same(self.addresses, other.addresses):
            return self._joined(np.hstack([self.entries, other.entries]),
                                np.vstack([self.index, other.index]), self.addresses)
        if other.accumulate != self.accumulate:
            return None
        if (same(self.index, other.index) and self.entries.shape[1] == other.entries.shape[1]
                and (not self.requantize or same(self.qentries, other.qentries))):
            joined = self._joined(np.vstack([self.entries, other.entries]), self.index,
                                  np.vstack([self.addresses, other.addresses]), self.qentries)
        elif same(self.entries, other.entries):
            joined = self._joined(self.entries, np.hstack([self.index, other.index]),
                                  np.hstack([self.addresses, other.addresses]),
                                  self.qentries if not self.requantize
                                  else np.concatenate([self.qentries, other.qentries]))
        else:
            return None
        written = joined.addresses.ravel()
        return joined if len(np.unique(written)) == len(written) else None

    def _joined(self, entries, index, addresses, qentries=None):
        joined = object.__new__(_Product)
        joined.__dict__.update(self.__dict__)
        joined.entries, joined.index, joined.addresses = entries, index, addresses
        joined.qentries = qentries
        return joined

    def finish(self):
        """Once no more MVMs join: where the weights come from, the psum entries as a
        slice when they are consecutive, whether a sum may leave int32."""
        c = self.config
        wmem_size = c.wmem_depth * c.tiles * c.cols
        indices = [self.index] if self.uniform else self.index
        from_tiles = [bool((i >= wmem_size).all()) for i in indices]
        from_wmem = [bool((i < wmem_size).all()) for i in indices]
        # 'wmem', 'tiles' (the index shifted to tile_weights) or 'both' (wmem, then tiles)
        self.source = ("wmem" if all(from_wmem) else "tiles" if all(from_tiles) else "both")
        if self.source == "tiles":
            indices = [i - wmem_size for i in indices]
        if self.source == "wmem":
            indices = [_WmemWeights(i, c.tiles * c.cols) for i in indices]
        self.index = indices[0] if self.uniform else indices
        self.written = as_span(self.addresses.ravel())
        if self.requantize:
            self.qentries = as_span(self.qentries)
        # The amem entries read, as a window and offsets into it. A convolution's vectors
        # read each entry several times: the window is converted to float once, then
        # gathered. Vectors that read few of the window's entries (a replica's strided
        # vectors) gather first and convert only those. No offsets when the vectors read
        # the window's entries in order, each once (a matrix's inputs, host-made
        # patches): no gather.
        first, end = int(self.entries.min()), int(self.entries.max()) + 1
        self.window, self.window_entries = slice(first, end), self.entries - first
        if np.array_equal(self.window_entries.ravel(), np.arange(end - first)):
            self.window_entries = None
        self.gather_first = self.window_entries is not None and self.entries.size < end - first
        # the largest magnitude a sum of this product can reach
        self.largest = self.entries.shape[1] * c.rows * (INPUT_OFFSET + 127) * 128
        self.dtype = np.int32 if self.largest <= INT32_MAX else np.int64    # of its sums


class _WmemWeights:
    """The weights a product gathers from wmem (at flat `index`), as int8_matmul's float32
    operand, remembered by the content of the wmem rows they lie in: a network run again
    writes the same weights, and gathering and converting them costs more than the product
    at small batches. Exact: a conversion is reused only when those rows' bytes equal the
    bytes it was made from."""

    FINGERPRINT_STRIDE = 61     # a fingerprint samples one byte in this many (then compared)

    def __init__(self, index, width):
        first, last = int(index.min()) // width, int(index.max()) // width
        self.rows = slice(first, last + 1)
        self.index = index - first * width          # into the rows, flat

    def gather(self, wmem):
        region = wmem[self.rows]
        content = region.tobytes()
        key = (self, content[::self.FINGERPRINT_STRIDE])
        weights = _REMEMBERED_WEIGHTS.get(key, content)
        if weights is None:
            weights = region.take(self.index).astype(np.float32)
            weights.flags.writeable = False
            # the key keeps this gather (and its index) alive too: counted with the entry
            _REMEMBERED_WEIGHTS.put(key, content, weights, self.index.nbytes)
        return weights


class _Remembered:
    """Values by key, each with the content it was made from (a hit needs equal content),
    least recently used dropped first to stay within `budget` bytes (content, value and
    what else an entry keeps alive). Locked: Dask sweeps run devices in threads."""

    def __init__(self, budget):
        self.budget, self.held = budget, 0
        self.entries = OrderedDict()        # key -> (content, value, bytes held)
        self.lock = threading.Lock()

    def get(self, key, content):
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry[0] != content:
                return None
            self.entries.move_to_end(key)
            return entry[1]

    def put(self, key, content, value, also_held=0):
        """`value` (its bytes counted when it is an array) made from `content` (bytes, or
        the objects it was made from); `also_held`: other bytes the entry keeps alive."""
        size = len(content) + getattr(value, "nbytes", 0) + also_held
        if size > self.budget // 4:
            return
        with self.lock:
            if key in self.entries:
                self.held -= self.entries.pop(key)[2]
            self.entries[key] = (content, value, size)
            self.held += size
            while self.held > self.budget:
                self.held -= self.entries.popitem(last=False)[1][2]


_REMEMBERED_WEIGHTS = _Remembered(64 << 20)


class Device:
    """NumPy state of one accelerator and an interpreter of its binary programs.

    Memories are public arrays: ``imem`` (32-bit words), ``wmem`` (int8 rows, ``cols``
    lanes per tile), ``amem`` (int8 vectors, stored as int8: a product converts an eighth
    of int64's bytes), ``psum`` (int32 vectors), ``qmem`` (words: ``cols`` channels of
    `pack_quant_params` per entry); ``tile_weights`` holds what each tile has
    been programmed with (read it; only PROGRAM writes it). A run follows the program's
    plan (`_ProgramPlan`), made once per program.
    """

    def __init__(self, config, nonideal=None, faults=None):
        """`nonideal` (a `golden.NonIdealities`) perturbs the analog side of every MVM;
        `faults` (a `golden.faults.FaultMap`) sticks cells; the counters and timing are
        those of the ideal device."""
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be a golden.AccelConfig, not {config!r}")
        if faults is not None and faults.config != config:
            raise ValueError(f"the fault map is for {faults.config.name}, the device is "
                             f"{config.name}")
        self.config = c = config
        self.analog = AnalogTiles(c, nonideal) if nonideal is not None and nonideal.active else None
        self.faults = faults if faults is not None and faults.states.any() else None
        # 32-bit words, as the memory holds them: a run looks its plan up by their bytes
        self.imem = np.zeros((c.imem_depth, WORDS_PER_INSTRUCTION), np.uint32)
        # wmem and psum in their lanes' own types: a fresh device per run allocates and
        # touches an eighth (a half) of int64's pages
        self.wmem = np.zeros((c.wmem_depth, c.tiles * c.cols), np.int8)    # a lane per tile
        self.amem = np.zeros((c.amem_depth, c.rows), np.int8)
        self.psum = np.zeros((c.psum_depth, c.cols), np.int32)
        self.qmem = np.zeros((c.qmem_depth, 4 * c.cols), np.int64)
        self.tile_weights = np.zeros((c.tiles, c.rows, c.cols), np.int64)
        # products made ahead for runs the host said are coming (`expect`)
        self.ahead = None

    def expect(self, runs):
        """The runs to come (`golden.lookahead.Expected`s, in order; None: unknown): an
        ideal lossless device then makes their products ahead, several as one
        (`golden.lookahead`). Results and counters are the same either way, as long as
        every host write to amem is declared or reported (`self.ahead.forget`, which the
        driver's golden bus calls)."""
        self.ahead = _products_ahead(self.config, runs) if runs and self.ideal else None

    @property
    def ideal(self):
        """Lossless, with no analog model and no stuck cells: runs fused plans."""
        return self.analog is None and self.faults is None and self.config.is_lossless

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
        plan = _program_plan(self.imem.tobytes(), self.config, self.ideal)
        if plan.fetches > max_instructions:
            raise RuntimeError(f"program ran {max_instructions} instructions without halting")
        if self.ahead is not None:
            self.ahead.begin(self, plan)
        for run, argument in plan.steps:
            run(self, argument)
        self.counters = dict(plan.counters)
        return RunResult(plan.done, plan.error, plan.error_pc, dict(plan.counters),
                         list(plan.trace) if trace else [])

    # Execution, once `check_instruction` has passed; the counters are the plan's -------

    def _program(self, ins):
        c = self.config
        lanes = self.wmem[ins.src:ins.src + c.rows].reshape(c.rows, c.tiles, c.cols)
        tiles = slice(ins.tile, ins.tile + ins.count)
        self.tile_weights[tiles] = lanes[:, program_lanes(ins, c.tiles)].transpose(1, 0, 2)
        if self.analog is not None:
            for t in range(ins.tile, ins.tile + ins.count):
                self.analog.program(t, self.tile_weights[t])

    def _write_tiles(self, written):
        """The tiles' weights as the PROGRAMs of a fused run leave them: (tiles, where
        their weights lie in wmem, flat), from `_tiles_written`."""
        tiles, index = written
        self.tile_weights[tiles] = self.wmem.take(index)

    def _weights(self, index, source):
        if source == "wmem":
            return index.gather(self.wmem)
        if source == "tiles":
            return self.tile_weights.take(index)
        return np.concatenate([self.wmem.ravel(), self.tile_weights.ravel()]).take(index)

    def _product(self, step):
        c = self.config
        results = None if self.ahead is None else self.ahead.take(self, step)
        if results is None:
            results = self._multiply(step)
        results = results.reshape(*self.amem.shape[:-2], -1, c.cols)  # (..., n * G, cols)
        written = step.written
        if step.requantize:
            self._store_requantized(step.qentries, step.max_into, written, step.distinct,
                                    results, step.largest)
            return
        if not step.distinct:                   # one MVM: vector by vector, block by block
            for i, address in enumerate(written):
                base = self.psum[..., address, :] if step.accumulate else 0
                self.psum[..., address, :] = _wrap_int32(base + results[..., i, :])
        elif step.accumulate:                   # int32 results add as psum does: wrapping
            total = self.psum[..., written, :] + results
            self.psum[..., written, :] = total if total.dtype == np.int32 else _wrap_int32(total)
        else:
            self.psum[..., written, :] = results            # a cast to int32 wraps too

    def _multiply(self, step):
        """A product step's ``X @ W``: (vectors of all devices, blocks x cols), in the
        step's `dtype` (int32 where every sum fits)."""
        c = self.config
        inputs = self.amem[..., step.window, :]                     # (..., n, K, rows)
        if step.gather_first:
            inputs = inputs.take(step.window_entries, axis=-2).astype(np.float32)
        else:
            inputs = inputs.astype(np.float32)                      # int8_matmul's
            if step.window_entries is not None:
                inputs = inputs.take(step.window_entries, axis=-2)
        inputs = inputs.reshape(-1, step.entries.shape[1] * c.rows)  # one BLAS product
        if step.uniform:
            return int8_matmul(inputs, self._weights(step.index, step.source), step.offset,
                               dtype=step.dtype)
        results = np.empty((len(inputs), step.addresses.shape[1] * c.cols), step.dtype)
        by_vector = np.arange(len(inputs)).reshape(-1, len(step.entries))   # (devices, n)
        for vectors, index in zip(step.vectors, step.index):
            rows = by_vector[:, vectors].ravel()
            results[rows] = int8_matmul(inputs[rows], self._weights(index, step.source),
                                        step.offset, dtype=step.dtype)
        return results

    def _tile_product(self, tile, x, ins):
        """Tile `tile`'s results for vectors `x` at the MVM's ADC range and encoding."""
        if self.analog is not None:
            return self.analog.mvm(tile, x, ins.adc_shift, ins.offset_inputs)
        stuck = None if self.faults is None else self.faults.tile_states(tile)
        if stuck is not None and self.config.is_lossless:
            # A lossless ADC passes every count: the product is exactly the inputs times
            # the weights the cells read, one BLAS product instead of one a step and slice.
            weights = read_weights(self.config, self.tile_weights[tile], stuck)
            return int8_matmul(x, weights, INPUT_OFFSET if ins.offset_inputs else 0,
                               weight_bound=(1 << WEIGHT_BITS) - 1)
        return crossbar_mvm(self.config, x, self.tile_weights[tile], ins.adc_shift,
                            ins.offset_inputs, stuck)

    def _mvm(self, ins):
        c, plan = self.config, _mvm_plan(ins, self.config)
        if plan.n:
            inputs = self.amem[plan.entries].astype(np.int64)                  # (n, K, rows)
            results = np.empty((plan.n, ins.ngroups, c.cols), np.int64)
            for r, mine in enumerate(plan.replicas):
                # Each tile's bit-serial product, then the adder tree's sum.
                results[mine] = sum(
                    np.stack([self._tile_product(plan.tiles[r, g, k], inputs[mine, k], ins)
                              for g in range(ins.ngroups)], axis=1)
                    for k in range(ins.ktiles))
            results = results.reshape(-1, c.cols)
            if ins.requantize:
                self._store_requantized(slice(ins.qentry, ins.qentry + ins.ngroups),
                                        ins.max_into, plan.addresses, plan.distinct, results)
            elif plan.distinct:                                 # no write lands on another
                base = self.psum[plan.addresses] if ins.accumulate else 0
                self.psum[plan.addresses] = _wrap_int32(base + results)
            else:
                # Vector by vector, output block by block: the order in which the writes land.
                for address, result in zip(plan.addresses, results):
                    base = self.psum[address] if ins.accumulate else 0
                    self.psum[address] = _wrap_int32(base + result)

    def _store_requantized(self, qentries, max_into, addresses, distinct, sums,
                           largest=INT32_MAX + 1):
        """A requantizing MVM's writes: `sums` (..., vectors * blocks, cols), block g
        requantised with qmem entry ``qentries[g]`` (a slice or an index array), into lanes
        ``0 .. cols-1`` of the amem `addresses` (the maximum with them, `max_into`), in the
        order they land. `largest`: a bound on the sums' magnitude; within int32 they
        need no wrap."""
        c, words = self.config, self.qmem[qentries]
        groups = len(words)
        requantize, params = _stacked_params(words.tobytes(), (1,) * groups, c.cols)
        lead = sums.shape[:-2]
        sums = _wrap_int32(sums) if largest > INT32_MAX else sums
        outputs = requantize(sums.reshape(*lead, -1, groups, c.cols),
                             params).astype(np.int8).reshape(sums.shape)
        lanes = slice(0, c.cols)
        if distinct:
            if max_into:
                outputs = np.maximum(self.amem[..., addresses, lanes], outputs)
            self.amem[..., addresses, lanes] = outputs
            return
        for i, address in enumerate(np.asarray(addresses).tolist()):
            output = outputs[..., i, :]
            if max_into:
                output = np.maximum(self.amem[..., address, lanes], output)
            self.amem[..., address, lanes] = output

    def _requant(self, ins):
        c = self.config
        requantize, params = _stacked_params(self.qmem[ins.aux].tobytes(), (1,), c.cols)
        if ins.count:
            src, dst, lanes = _requant_plan(ins, c.cols)
            outputs = requantize(self.psum[..., src, :], params)
            # a run of stride 0 writes one entry: the last write wins
            self.amem[..., dst, lanes] = outputs if ins.dst_stride else outputs[..., -1, :]

    def _requants(self, step):
        requantize, params = _stacked_params(self.qmem[step.aux].tobytes(), step.counts,
                                             step.cols)
        outputs = requantize(self.psum[..., step.src, :], params)
        for rows, entries, lanes in step.writes:
            self.amem[..., entries, lanes] = outputs[..., rows, :]

    def _max(self, ins):
        plan = _max_plan(ins)
        if plan is None:
            return
        in_order, src, other, dst = plan
        if in_order:        # entry by entry: a run writing what a later entry reads sees it
            for a, b, d in zip(src, other, dst):
                self.amem[..., d, :] = np.maximum(self.amem[..., a, :], self.amem[..., b, :])
        else:
            self.amem[..., dst, :] = np.maximum(self.amem[..., src, :], self.amem[..., other, :])


def _products_ahead(config, runs):
    from .lookahead import ProductsAhead        # which builds on this module
    return ProductsAhead(config, runs)


class DeviceStack:
    """Ideal lossless devices of one config that run every program together, each on its
    own data: what the same device does batch after batch, done for many batches at once
    (`firmware.runtime.run.run_executable` drives them through `use`).

    ``amem`` and ``psum``, the memories each batch fills and reads, have a leading axis,
    a device each; ``imem``, ``wmem``, ``qmem`` and the tiles' weights are shared: every
    device of a lockstep run holds the same program and weights. A run follows the same
    fused plan as `Device.run`, once for all devices, so its counters are each device's.
    It is exact when a run reads only what the host or the run wrote (an executable's runs
    do): a device of the stack sees the memories its own batches left, not another's.
    """

    def __init__(self, config, count):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be a golden.AccelConfig, not {config!r}")
        if not config.is_lossless:
            raise ValueError(f"a device stack runs lossless configs only; {config.name}'s "
                             f"ADCs round (run its batches on one Device)")
        if count < 1:
            raise ValueError(f"a device stack needs at least one device, not {count}")
        one = Device(config)
        self.config, self.analog, self.faults, self.size = config, None, None, count
        self.imem, self.wmem, self.qmem = one.imem, one.wmem, one.qmem
        self.tile_weights = one.tile_weights
        self._amem = np.zeros((count, *one.amem.shape), np.int8)
        self._psum = np.zeros((count, *one.psum.shape), one.psum.dtype)
        self.ahead = None
        self.use(count)

    @staticmethod
    def device_bytes(config):
        """The bytes each device of a stack adds (its amem, int8, and its psum, int32)."""
        return config.amem_depth * config.rows + 4 * config.psum_depth * config.cols

    def use(self, count):
        """Run and address devices ``0 .. count-1`` from now on (the others keep their
        memories)."""
        if not 1 <= count <= self.size:
            raise ValueError(f"the stack has {self.size} devices, not {count}")
        self.amem, self.psum = self._amem[:count], self._psum[:count]

    soft_reset = Device.soft_reset
    load_program = Device.load_program
    run = Device.run
    expect = Device.expect
    ideal = Device.ideal
    _weights = Device._weights
    _multiply = Device._multiply
    _store_requantized = Device._store_requantized


@functools.lru_cache(maxsize=1 << 16)
def _requant_plan(ins, cols):
    """(psum entries read, amem entries written, their lanes) of a REQUANT run."""
    n = ins.count
    dst = _run_slice(ins.dst, ins.dst_stride, n) if ins.dst_stride else ins.dst
    return (_run_slice(ins.src, ins.src_stride, n), dst,
            slice(ins.aux2 * cols, (ins.aux2 + 1) * cols))


@functools.lru_cache(maxsize=1 << 16)
def _max_plan(ins):
    """(in order, src, other, dst) of a MAX run, worked out once per instruction: at once
    (slices where the runs allow, a stride-0 operand as one broadcast entry) when no entry
    reads what an earlier one wrote, else entry by entry; None when it is empty."""
    n = ins.count
    runs = ((ins.src, ins.src_stride), (ins.aux, ins.aux2), (ins.dst, ins.dst_stride))
    if not n:
        return None
    if _disjoint_max(n, *runs):
        reads = [slice(base, base + 1) if not stride else _run_slice(base, stride, n)
                 for base, stride in runs[:2]]
        return (False, *reads, _run_slice(*runs[2], n))
    src, other, dst = (_run_addresses(*run, n) for run in runs)
    for shared in (src, other, dst):
        shared.setflags(write=False)
    return (not _reads_before_writes(src, other, dst), src, other, dst)


_RUN = {Opcode.PROGRAM: Device._program, Opcode.MVM: Device._mvm,
        Opcode.REQUANT: Device._requant, Opcode.MAX: Device._max}
