"""Mapping around stuck cells: each weight is written as the int8 value whose read, with
its tile's stuck cells (`golden.faults`), comes nearest the weight wanted.

A stuck cell adds the same amount to a weight's read whatever is written, and the cells
left working can often make up for it, on the other side of the differential pair if
need be: a weight of 5 whose w+ slice-1 cell is stuck at 3 reads 13 when written 5, but
exactly 5 when written -7 (12 from the stuck cell, minus 7 on w-). The compiler knows
which tile holds each block, so it writes each tile's blocks for that tile's cells.
"""

import numpy as np

from golden.crossbar import INPUT_OFFSET, read_weights

from .quantize import QuantizedDense, QuantizedMerge

__all__ = ["cell_reads", "write_table", "compensate", "FaultAwareWrites", "resting_inputs",
           "input_means"]

INT8 = np.arange(-128, 128)


def cell_reads(config, states):
    """``reads[v + 128, row, col]``: what each weight of a tile with cell states `states`
    reads when written v."""
    return np.stack([read_weights(config, np.full((config.rows, config.cols), w), states)
                     for w in INT8])


def write_table(config, states, reads=None):
    """``table[target + 128, row, col]``: the int8 value to write at (row, col) of a tile
    with cell states `states` (whose `cell_reads` may be given) so that its read is
    nearest `target` (ties: the value nearest the target itself). Weights with no stuck
    cell are written as they are."""
    table = np.broadcast_to(INT8[:, None, None], (256, config.rows, config.cols)).copy()
    rows, cols = np.nonzero(states.any(axis=(0, 1)))
    if len(rows):
        reads = (cell_reads(config, states) if reads is None else reads)[:, rows, cols]
        error = np.abs(reads[None] - INT8[:, None, None])              # target, written, cell
        # Among equally near reads, the written value nearest the target.
        tie = np.abs(INT8[None, :] - INT8[:, None])[:, :, None] / 1024
        table[:, rows, cols] = INT8[np.argmin(error + tie, axis=1)]
    return table


def input_means(qnet, x_q):
    """Per matrix layer of one input (by name), the mean of each of its matrix rows'
    inputs (im2col patches for a convolution) over the int8 samples `x_q`."""
    tensors = qnet.activations(x_q)
    means = {}
    for layer, reads in zip(qnet.layers, qnet.reads):
        if isinstance(layer, QuantizedDense) and not isinstance(layer, QuantizedMerge) \
                and len(reads) == 1:
            patches = np.asarray(layer.patches(tensors[reads[0]]), np.float64)
            means[layer.name] = patches.reshape(-1, patches.shape[-1]).mean(axis=0)
    return means


def resting_inputs(step, layer, host_fed, means=None):
    """Each padded row's typical input: the mean of its matrix row's inputs over the
    calibration samples (`means`, from `input_means`), else its zero point, where a
    ReLU's zeros and padding rest; and on the rows a host-fed layer leaves empty, 0 (the
    host writes zeros there; the device's requantisers write the zero point into padding
    channels). None where no one value holds (a merge of inputs with zero points of
    their own): no bias correction then."""
    if isinstance(layer, QuantizedMerge) or getattr(layer, "input", None) is None:
        return None
    rest = np.full(len(step.weights), float(layer.input.zero_point))
    if host_fed:
        rest[:] = 0.0
        rest[step.row_index] = layer.input.zero_point
    if means is not None and len(means) == len(step.row_index):
        rest[step.row_index] = means
    if step.offset_inputs:
        rest += INPUT_OFFSET                # offset binary applies x + 128
    return rest


def compensate(config, weights, states, table=None):
    """`weights` (a ``(rows, cols)`` block) as written to a tile with `states`."""
    if not states.any():
        return weights
    table = write_table(config, states) if table is None else table
    rows, cols = np.indices(weights.shape)
    return table[np.asarray(weights, np.int64) + 128, rows, cols]


class FaultAwareWrites:
    """Blocks written for the tiles of one fault map (each tile's `write_table` made
    once), and what their reads still miss, for the requantiser's bias to take back.

    A block's read misses its weights by ``e = read - wanted``, so a column sums
    ``sum_r e_r x_r`` too much. With ``m_r`` each row's mean input over calibration
    samples (or, without them, its resting value: the zero point of a ReLU's zeros and of
    padding), ``sum_r e_r m_r`` is a constant per column, which the bias removes; only
    ``sum_r e_r (x_r - m_r)`` remains, zero on average."""

    def __init__(self, faults, means=None):
        self.faults, self._tables, self._reads_of, self._missed = faults, {}, {}, {}
        self.means = means or {}        # `input_means`, by layer name

    def write(self, tile, weights, output_key=None, block_key=None, rest=None):
        """`weights` as written to `tile`. Given `rest` (each row's typical input), the
        constant the read adds to each column is kept for `output_key` (the requantised
        block), once per `block_key` (a block of its sum)."""
        config, states = self.faults.config, self.faults.tile_states(tile)
        if not states.any():
            return weights
        if tile not in self._tables:
            self._tables[tile] = write_table(config, states, self._reads(tile))
        written = compensate(config, weights, states, self._tables[tile])
        if rest is not None:
            missed = read_weights(config, written, states) - weights
            self._missed.setdefault(output_key, {})[block_key] = np.asarray(rest, float) @ missed
        return written

    def write_pair(self, tiles, weights, output_key=None, block_key=None, rest=None):
        """`weights` split over two tiles whose products the adder tree sums: (the block
        for ``tiles[0]``, the block for ``tiles[1]``), their reads summing nearest the
        weights (as `write` keeps what they still miss)."""
        config = self.faults.config
        states = [self.faults.tile_states(t) for t in tiles]
        weights = np.asarray(weights, np.int64)
        first, second = weights.copy(), np.zeros_like(weights)
        rows, cols = np.nonzero(states[0].any(axis=(0, 1)) | states[1].any(axis=(0, 1)))
        if not len(rows):
            return first, second
        reads = [self._reads(t)[:, rows, cols] for t in tiles]            # (256, cells)
        wanted = weights[rows, cols]
        for at in range(0, len(rows), 16):              # 16 cells at a time: 8 MB of sums
            cell = slice(at, at + 16)
            sums = reads[0][:, None, cell] + reads[1][None, :, cell]      # a, b, cell
            miss = np.abs(sums - wanted[cell]).astype(np.float64)
            # Among equal misses, the split nearest (wanted, 0).
            miss += (np.abs(INT8[:, None, None] - wanted[cell])
                     + np.abs(INT8)[None, :, None]) / 1024
            best = miss.reshape(256 * 256, -1).argmin(axis=0)
            first[rows[cell], cols[cell]] = INT8[best // 256]
            second[rows[cell], cols[cell]] = INT8[best % 256]
        if rest is not None:
            missed = (read_weights(config, first, states[0])
                      + read_weights(config, second, states[1]) - weights)
            self._missed.setdefault(output_key, {})[block_key] = np.asarray(rest, float) @ missed
        return first, second

    def _reads(self, tile):
        """The tile's `cell_reads`, made once."""
        if tile not in self._reads_of:
            self._reads_of[tile] = cell_reads(self.faults.config, self.faults.tile_states(tile))
        return self._reads_of[tile]

    def bias_correction(self, output_key, cols):
        """What the bias of `output_key`'s columns subtracts: its blocks' constants."""
        total = sum(self._missed.get(output_key, {}).values(), np.zeros(cols))
        return np.rint(total).astype(np.int64)
