"""Random legal programs and memory images for the accelerator tests."""

import numpy as np

from golden import isa
from golden.device import QuantParams, pack_quant_params
from golden.requant import SHIFT_MAX

__all__ = ["random_memories", "random_program", "written_entries"]


def random_memories(config, rng):
    """Weight staging, activations, partial sums and quantisation parameters."""
    params = []
    for _ in range(config.qmem_depth * config.cols):
        zero_point = int(rng.integers(-20, 21))
        relu = rng.random() < 0.3
        params.append(pack_quant_params(QuantParams(
            bias=int(rng.integers(-(1 << 20), 1 << 20)),
            # Mostly the normalised multipliers the compiler makes; some small ones and
            # large shifts (to 31), which reach the requantisers' high bits.
            multiplier=int(rng.integers(1 << 30, 1 << 31) if rng.random() < 0.8
                           else rng.integers(0, 1 << 30)),
            shift=int(rng.integers(0, 16) if rng.random() < 0.8
                      else rng.integers(16, SHIFT_MAX + 1)),
            zero_point=zero_point,
            clamp_min=zero_point if relu else int(rng.integers(-128, -60)),
            clamp_max=int(rng.integers(60, 128)))))
    return {
        "wmem": rng.integers(-128, 128, (config.wmem_depth, config.tiles * config.cols)),
        "amem": rng.integers(-128, 128, (config.amem_depth, config.rows)),
        "psum": rng.integers(-(1 << 24), 1 << 24, (config.psum_depth, config.cols)),
        "qmem": np.array(params, np.int64).reshape(config.qmem_depth, 4 * config.cols),
    }


def _count(rng, max_count=4):
    return int(rng.integers(0 if rng.random() < 0.05 else 1, max_count + 1))


def _place(rng, depth, count):
    """(base, stride) of a run of `count` entries that fits in `depth` entries."""
    stride = int(rng.integers(0, 4))
    while stride and stride * (count - 1) >= depth:
        stride -= 1
    span = stride * max(count - 1, 0)
    return int(rng.integers(0, depth - span)), stride


def _mvm_shape(config, rng):
    """(ktiles, ngroups, replicas, first tile) of a random legal tile range."""
    most = config.tiles.bit_length() - 1                  # log2 of the largest power of two
    total = int(rng.integers(0, most + 1))
    klog = int(rng.integers(0, total + 1))
    nlog = int(rng.integers(0, total - klog + 1))
    span, ktiles = 1 << total, 1 << klog
    first = ktiles * int(rng.integers(0, (config.tiles - span) // ktiles + 1))
    return ktiles, 1 << nlog, 1 << (total - klog - nlog), first


def _inner(rng, depth, lanes):
    """A stride between a vector's `lanes` entries (K blocks or output blocks) that fits."""
    stride = int(rng.integers(0, 4))
    while stride and stride * (lanes - 1) >= depth:
        stride -= 1
    return stride


def _requantizing_mvm(config, rng):
    """An MVM that requantises into amem: its inputs on one side of a random split of
    amem and its outputs on the other (the spans may not meet)."""
    ktiles, ngroups, replicas, first = _mvm_shape(config, rng)
    count = _count(rng, 6)
    split = int(rng.integers(config.amem_depth // 4, 3 * config.amem_depth // 4))
    low, high = (0, split), (split, config.amem_depth)
    inputs, outputs = (low, high) if rng.random() < 0.5 else (high, low)
    k_stride = _inner(rng, inputs[1] - inputs[0], ktiles)
    n_stride = _inner(rng, outputs[1] - outputs[0], ngroups)
    src, src_stride = _place(rng, inputs[1] - inputs[0] - k_stride * (ktiles - 1), count)
    dst, dst_stride = _place(rng, outputs[1] - outputs[0] - n_stride * (ngroups - 1), count)
    qentries = min(config.qmem_depth, 1 << isa.FIELDS["qentry"][1]) - ngroups + 1
    return isa.mvm(first, count, inputs[0] + src, outputs[0] + dst, src_stride, dst_stride,
                   k_stride, n_stride, ktiles, ngroups, replicas,
                   adc_shift=int(rng.integers(config.max_adc_shift + 1)),
                   offset_inputs=bool(rng.random() < 0.5), qentry=int(rng.integers(qentries)),
                   max_into=bool(rng.random() < 0.5))


def random_program(config, rng, length):
    """`length` random legal instructions, then HALT."""
    program = []
    for _ in range(length):
        kind = rng.choice(["program", "mvm", "mvm", "requant", "max"]
                          + (["mvm_requant"] if config.requantizing_mvms else []))
        if kind == "program":
            tile = int(rng.integers(config.tiles))
            tiles = int(rng.integers(1, config.tiles - tile + 1))
            image = int(rng.integers(config.wmem_depth // config.rows))
            lanes = (None if rng.random() < 0.5
                     else 1 << int(rng.integers(config.tiles.bit_length() + 1)))
            program.append(isa.program(tile, config.rows * image, tiles=tiles, lanes=lanes))
        elif kind == "mvm":
            ktiles, ngroups, replicas, first = _mvm_shape(config, rng)
            count = _count(rng, 6)
            k_stride = _inner(rng, config.amem_depth, ktiles)
            n_stride = _inner(rng, config.psum_depth, ngroups)
            src, src_stride = _place(rng, config.amem_depth - k_stride * (ktiles - 1), count)
            dst, dst_stride = _place(rng, config.psum_depth - n_stride * (ngroups - 1), count)
            program.append(isa.mvm(first, count, src, dst, src_stride, dst_stride, k_stride,
                                   n_stride, ktiles, ngroups, replicas,
                                   adc_shift=int(rng.integers(config.max_adc_shift + 1)),
                                   offset_inputs=bool(rng.random() < 0.5),
                                   accumulate=bool(rng.random() < 0.5)))
        elif kind == "mvm_requant":
            program.append(_requantizing_mvm(config, rng))
        elif kind == "max":
            count = _count(rng)
            src, src_stride = _place(rng, config.amem_depth, count)
            other, other_stride = _place(rng, config.amem_depth, count)
            dst, dst_stride = _place(rng, config.amem_depth, count)
            program.append(isa.vmax(count, src, other, dst, src_stride, other_stride, dst_stride))
        else:
            count = _count(rng)
            src, src_stride = _place(rng, config.psum_depth, count)
            dst, dst_stride = _place(rng, config.amem_depth, count)
            qentry = int(rng.integers(config.qmem_depth))
            lane_block = int(rng.integers(config.rows // config.cols))
            program.append(isa.requant(count, src, dst, qentry, lane_block, src_stride, dst_stride))
    return program + [isa.halt()]


def written_entries(instructions):
    """psum and amem entries a legal program writes, for targeted read-back."""
    psum, amem = set(), set()
    for ins in instructions:
        if ins.opcode == isa.Opcode.MVM:
            (amem if ins.requantize else psum).update(
                ins.dst + i * ins.dst_stride + n * ins.aux2
                for i in range(ins.count) for n in range(ins.ngroups))
        elif ins.opcode in (isa.Opcode.REQUANT, isa.Opcode.MAX):
            amem |= {ins.dst + i * ins.dst_stride for i in range(ins.count)}
    return sorted(psum), sorted(amem)
