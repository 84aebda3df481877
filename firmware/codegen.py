"""Code generation: the instruction streams and memory images of a mapped network."""

from dataclasses import dataclass

import numpy as np

from golden import isa
from golden.device import QuantParams, pack_quant_params

from .mapper import MappingError, PoolMap

__all__ = ["Program", "generate"]


@dataclass
class Program:
    setup: list          # instructions run once (programs resident tiles), may be empty
    inference: list      # instructions run per batch
    wmem: np.ndarray     # (images * rows, cols) int8
    qmem: np.ndarray     # (entries, 4 * cols) words, cols channels an entry
    tile_of: dict        # resident mapping: (layer, kb, nb) -> tile
    layer_pcs: dict      # layer name -> range of its inference instructions


def _runs(nbs, accumulate, limit):
    """Split sorted N blocks into runs of consecutive blocks with one accumulate flag."""
    runs, current = [], []
    for nb in nbs:
        if current and (nb != current[-1] + 1 or accumulate[nb] != accumulate[current[0]]
                        or len(current) == limit):
            runs.append(current)
            current = []
        current.append(nb)
    return runs + ([current] if current else [])


def _pool(pool, batch, out_base):
    """Max pooling in two passes of MAX runs per sample. Down: per output row, the maximum
    down each window column, over the row's pixels and entries in one run, written as a
    compact image over the start of the input (each entry lands where the run has already
    read; nothing else reads a pooled image). Across: per entry of a pixel, the maximum
    across each window's columns, over every output pixel in one strided run.
    A size-k pool is 2 * (k - 1) runs per output row and per entry, not k * k - 1 per both."""
    k, group = pool.size, pool.group
    row_entries = k * pool.out_w * group             # the entries windows cover, per row
    out_entries = pool.out_h * pool.out_w * group
    program = []
    for sample in range(batch):
        image = pool.input_base + sample * pool.input_entries
        for row in range(pool.out_h):
            input_rows = [image + (k * row + dy) * pool.pitch * group for dy in range(k)]
            column_max = image + row * row_entries
            program.append(isa.vmax(row_entries, input_rows[0], input_rows[1], column_max))
            program += [isa.vmax(row_entries, column_max, input_row, column_max)
                        for input_row in input_rows[2:]]
        for entry in range(group):
            window_columns = [image + dx * group + entry for dx in range(k)]
            out = out_base + sample * out_entries + entry
            windows = pool.out_h * pool.out_w
            program.append(isa.vmax(windows, window_columns[0], window_columns[1], out,
                                    src_stride=k * group, other_stride=k * group,
                                    dst_stride=group))
            program += [isa.vmax(windows, out, window_column, out, src_stride=group,
                                 other_stride=k * group, dst_stride=group)
                        for window_column in window_columns[2:]]
    return program


def generate(qnet, network_map):
    m, c = network_map, network_map.config
    R, C = c.rows, c.cols
    wmem = np.zeros((m.images * R, C), np.int64)
    qmem = np.zeros((sum(lm.n_blocks for lm in m.layers), C, 4), np.int64)
    setup, inference, tile_of, layer_pcs = [], [], {}, {}
    next_tile = 0
    by_name = {layer.name: layer for layer in qnet.layers}

    for index, lm in enumerate(m.steps):
        first_pc = len(inference)
        out_base = m.steps[index + 1].input_base if index + 1 < len(m.steps) else m.output_base
        if isinstance(lm, PoolMap):
            inference += _pool(lm, m.batch, out_base)
            layer_pcs[lm.name] = range(first_pc, len(inference))
            continue
        layer = by_name[lm.name]
        for (kb, nb), image in lm.images.items():
            wmem[image * R:(image + 1) * R] = lm.weights[kb * R:(kb + 1) * R, nb * C:(nb + 1) * C]
        for channel in range(lm.n_blocks * C):
            if channel < layer.weights.shape[1]:
                params = QuantParams(int(layer.bias[channel]), int(layer.multiplier[channel]),
                                     int(layer.shift[channel]), layer.output.zero_point,
                                     layer.clamp_min, 127)
            else:                 # padding channel: zero_point out, ignored downstream
                params = QuantParams(0, 0, 0, layer.output.zero_point, -128, 127)
            qmem[lm.qmem_base + channel // C, channel % C] = pack_quant_params(params)

        # One strided run over every sample's positions when the layout allows, else the
        # layer's runs for each sample: (count, input entry offset, psum entry offset).
        if lm.samples_contiguous:
            runs = [(m.batch * lm.positions, 0, 0)]
        else:
            runs = [(count, s * lm.input_entries + offset, (s * lm.positions + first) * lm.n_blocks)
                    for s in range(m.batch) for count, offset, first in lm.sample_runs]

        seen_nb = np.zeros(lm.n_blocks, bool)
        for kb in range(lm.k_blocks):
            nbs = [int(nb) for nb in np.flatnonzero(lm.nonzero[kb])]
            accumulate = seen_nb.copy()
            for tile_run in _runs(nbs, accumulate, c.tiles):
                if m.resident:
                    tiles = []
                    for nb in tile_run:
                        tile_of[(lm.name, kb, nb)] = next_tile
                        setup.append(isa.program(next_tile, lm.images[(kb, nb)] * R))
                        tiles.append(next_tile)
                        next_tile += 1
                else:
                    tiles = list(range(len(tile_run)))
                    inference += [isa.program(t, lm.images[(kb, nb)] * R)
                                  for t, nb in zip(tiles, tile_run)]
                # A residual add reads its skip blocks from an earlier layer's output.
                source = m.steps[lm.k_inputs[kb]] if kb in lm.k_inputs else lm
                sample_stride = source.input_entries if lm.positions == 1 else lm.position_stride
                for count, src, dst in runs:
                    inference.append(isa.mvm(
                        tiles, count, source.input_base + src + lm.k_offsets[kb],
                        lm.psum_base + dst + tile_run[0], src_stride=sample_stride,
                        dst_stride=lm.n_blocks, tile_stride=1,
                        accumulate=bool(accumulate[tile_run[0]])))
            seen_nb[nbs] = True

        for nb in range(lm.n_blocks):
            inference.append(isa.requant(m.batch * lm.positions, lm.psum_base + nb,
                                         out_base + nb * C // R, lm.qmem_base + nb,
                                         lane_block=(nb * C % R) // C, src_stride=lm.n_blocks,
                                         dst_stride=lm.output_entries))
        layer_pcs[lm.name] = range(first_pc, len(inference))
    inference.append(isa.halt())
    if setup:
        setup.append(isa.halt())
    for name, program in (("setup", setup), ("inference", inference)):
        if len(program) > c.imem_depth:
            raise MappingError(f"the {name} program has {len(program)} instructions, beyond "
                               f"imem_depth {c.imem_depth}")
    return Program(setup, inference, wmem, qmem.reshape(len(qmem), 4 * C), tile_of, layer_pcs)
