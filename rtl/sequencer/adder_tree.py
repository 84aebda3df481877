"""The adder tree over the tiles' results: the sums an MVM's output groups take."""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import ACC_BITS

__all__ = ["AdderTree", "tree_levels", "mux_tree"]


def tree_levels(tiles):
    """The first node of each level of the tree over `tiles` (padded to a power of two),
    and the number of nodes."""
    offsets, width, position = [], 1 << (tiles - 1).bit_length(), 0
    while True:
        offsets.append(position)
        position += width
        if width == 1:
            return offsets, position
        width //= 2


def mux_tree(select, values):
    """``values[select]`` as a balanced tree of 2:1 multiplexers, one level per select bit
    (shallow paths, where a chain of cases would be as deep as `values` is long)."""
    level, bit = list(values), 0
    while len(level) > 1:
        level = [Mux(select[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        bit += 1
    return level[0]


class AdderTree(wiring.Component):
    """Node ``tree_levels(tiles)[0][L] + i`` sums the results of tiles ``i * 2**L ..
    (i + 1) * 2**L - 1``, column by column (int32, wrapping); ``sum`` is node ``node``'s,
    combinationally. An MVM's output group g is node (log2 ktiles, first / ktiles + g):
    the decoder has checked that the range is aligned.

    Attributes
    ----------
    results : In(ArrayLayout(ArrayLayout(signed(32), cols), tiles))
    node : In(range(nodes))
    sum : Out(ArrayLayout(signed(32), cols))
    """

    delay = 0

    def __init__(self, config):
        self.config = config
        self.level_offsets, self.nodes = tree_levels(config.tiles)
        column = data.ArrayLayout(signed(ACC_BITS), config.cols)
        super().__init__({"results": In(data.ArrayLayout(column, config.tiles)),
                          "node": In(range(self.nodes + 1)), "sum": Out(column)})

    def model(self, results, node):
        """The node's sums, from a (tiles, cols) array of results."""
        results = np.asarray(results, np.int64)
        level = max(L for L, first in enumerate(self.level_offsets) if first <= node)
        index = node - self.level_offsets[level]
        group = results[index << level:(index + 1) << level]
        return group.sum(axis=0).astype(np.int32).astype(np.int64)    # the cast wraps

    def elaborate(self, platform):
        c = self.config
        m = Module()
        width = 1 << (c.tiles - 1).bit_length()
        entry = c.cols * ACC_BITS
        # None: a node over padding tiles only, zero; a node with one real child is it.
        level = [self.results[t].as_value() for t in range(c.tiles)] + [None] * (width - c.tiles)
        nodes, depth = list(level), 0
        while len(level) > 1:
            depth += 1
            sums = []
            for i, (a, b) in enumerate(zip(level[0::2], level[1::2])):
                if b is None:
                    sums.append(a)
                    continue
                # A wire per node: an expression used twice (by the mux and the next
                # level) would be written out twice, and its inputs again, level by level.
                node = Signal(entry, name=f"tree_l{depth}_{i}")
                m.d.comb += node.eq(Cat(
                    (a[k * ACC_BITS:(k + 1) * ACC_BITS] + b[k * ACC_BITS:(k + 1) * ACC_BITS])[:ACC_BITS]
                    for k in range(c.cols)))
                sums.append(node)
            nodes += sums
            level = sums
        m.d.comb += self.sum.eq(mux_tree(self.node, [Const(0, entry) if node is None else node
                                                     for node in nodes]))
        return m
