"""Random legal programs and memory images for the accelerator tests."""

import numpy as np

from golden import isa
from golden.device import QuantParams, pack_quant_params

__all__ = ["random_memories", "random_program", "written_entries"]


def random_memories(config, rng):
    """Weight staging, activations, partial sums and quantisation parameters."""
    params = []
    for _ in range(config.qmem_depth * config.cols):
        zero_point = int(rng.integers(-20, 21))
        relu = rng.random() < 0.3
        params.append(pack_quant_params(QuantParams(
            bias=int(rng.integers(-(1 << 20), 1 << 20)),
            multiplier=int(rng.integers(1 << 30, (1 << 31) - 1)),
            shift=int(rng.integers(0, 16)),
            zero_point=zero_point,
            clamp_min=zero_point if relu else int(rng.integers(-128, -60)),
            clamp_max=int(rng.integers(60, 128)))))
    return {
        "wmem": rng.integers(-128, 128, (config.wmem_depth, config.cols)),
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


def random_program(config, rng, length):
    """`length` random legal instructions, then HALT."""
    program = []
    for _ in range(length):
        kind = rng.choice(["program", "mvm", "mvm", "requant", "max"])
        if kind == "program":
            tile = int(rng.integers(config.tiles))
            image = int(rng.integers(config.wmem_depth // config.rows))
            program.append(isa.program(tile, config.rows * image))
        elif kind == "mvm":
            mask = int(rng.integers(1, 1 << config.tiles))
            ranks = bin(mask).count("1")
            count = _count(rng)
            tile_stride = int(rng.integers(0, 6))
            if tile_stride * (ranks - 1) >= config.psum_depth:
                tile_stride = 0
            src, src_stride = _place(rng, config.amem_depth, count)
            dst, dst_stride = _place(rng, config.psum_depth - tile_stride * (ranks - 1), count)
            program.append(isa.mvm(mask, count, src, dst, src_stride, dst_stride, tile_stride,
                                   accumulate=bool(rng.random() < 0.5)))
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
            ranks = bin(ins.tile).count("1")
            psum |= {ins.dst + i * ins.dst_stride + j * ins.aux
                     for i in range(ins.count) for j in range(ranks)}
        elif ins.opcode in (isa.Opcode.REQUANT, isa.Opcode.MAX):
            amem |= {ins.dst + i * ins.dst_stride for i in range(ins.count)}
    return sorted(psum), sorted(amem)
