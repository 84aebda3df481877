"""The MVM unit: three engines over rounds of ``replicas`` vectors (feed, start, write)."""

import operator
from functools import reduce

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import ACC_BITS
from golden.isa import FLAG_ACCUMULATE, FLAG_OFFSET_INPUTS, FLAG_REQUANTIZE
from golden.timing import mvm_cycles

from .adder_tree import tree_levels
from .ports import address_width, instruction_layout, memory_ports, tile_widths

__all__ = ["MVMUnit", "connect_mvm"]


def connect_mvm(m, mvm, tiles, tree, amem_data, ins, requant=None):
    """Wire an MVM unit to the tiles it feeds and starts and to the adder tree over them
    (`ins`: the instruction the unit runs; `amem_data`: the amem read port's data), and
    its requantisations to the `requant` unit's pipeline."""
    for t, tile in enumerate(tiles):
        m.d.comb += [tile.i_stream.valid.eq(mvm.feed[t]), tile.i_stream.payload.eq(amem_data),
                     tile.start.eq(mvm.starts[t]), tile.adc_shift.eq(ins.adc_shift),
                     tile.offset_inputs.eq((ins.flags & FLAG_OFFSET_INPUTS).any()),
                     tree.results[t].eq(tile.result)]
    m.d.comb += [mvm.tiles_done.eq(reduce(operator.or_, (tile.done for tile in tiles))),
                 mvm.tiles_finishing.eq(reduce(operator.or_, (tile.finishing for tile in tiles))),
                 tree.node.eq(mvm.node), mvm.group_sum.eq(tree.sum)]
    if requant is not None and mvm.config.requantizing_mvms:
        m.d.comb += [requant.mvm_read.eq(mvm.requant_read),
                     requant.mvm_enable.eq(mvm.requant_enable),
                     requant.mvm_last.eq(mvm.requant_last), requant.mvm_dst.eq(mvm.requant_dst)]


class _Walk:
    """A walk over a round's (replica, lane) entries, lanes inner: the entry of (vector,
    lane 0) and the current one. `step` moves to the next lane's entry, or to the next
    replica's vector's first."""

    def __init__(self, name, lane_bits, address_bits):
        self.lane = Signal(lane_bits, name=f"{name}_lane")
        self.replica = Signal(lane_bits + 1, name=f"{name}_replica")
        self.vector = Signal(address_bits, name=f"{name}_vector")
        self.addr = Signal(address_bits, name=f"{name}_addr")

    def restart(self, base):
        return [self.lane.eq(0), self.replica.eq(0), self.vector.eq(base), self.addr.eq(base)]

    def step(self, m, lane_last, vector_stride, lane_stride):
        with m.If(self.lane == lane_last):
            m.d.sync += [self.lane.eq(0), self.replica.eq(self.replica + 1),
                         self.vector.eq(self.vector + vector_stride),
                         self.addr.eq(self.vector + vector_stride)]
        with m.Else():
            m.d.sync += [self.lane.eq(self.lane + 1), self.addr.eq(self.addr + lane_stride)]


class MVMUnit(wiring.Component):
    """Runs an MVM instruction from ``start`` to ``done`` (its last cycle), per the timing
    contract of :mod:`golden.timing` (``delay(count, ktiles, ngroups, replicas)`` cycles).

    Tile ``tile + (r * ngroups + n) * ktiles + k`` sits in slot ``r * K + k`` of a round.
    The feed reads slot e's entry ``src + v * src_stride + k * k_stride`` (``v = round * R
    + r``, while v < count) at cycles 1..E of a round; the round starts at E + 2 for the
    first and every P after; from the cycle the tiles are done, group ``r * G + n`` a cycle
    reads its psum entry ``dst + v * dst_stride + n * n_stride`` and writes it the next
    cycle with the group's sum (added to what was read, accumulating). Requantizing, in
    the cycle of a group's write its sums are forwarded instead (``psum_forward``: they
    reach the requantisers as psum read data, on the wires a REQUANT uses), its qmem
    entry ``qentry + n`` is read, and the group (``requant_*``) goes to the REQUANT unit's
    pipeline, which writes amem entry ``dst + ...`` and ends the run.

    Attributes
    ----------
    instruction : In(instruction layout), held while the unit runs
    start : In(1)
    done : Out(1)
    amem_*, psum_*, psum_w* : the amem read port, the psum read and write ports
    feed : Out(tiles)
        Tiles that stage the entry read last cycle (``amem_data``).
    starts : Out(tiles)
        Tiles that start a product.
    tiles_done, tiles_finishing : In(1)
        Any tile's ``done`` and ``finishing``.
    node : Out, group_sum : In
        The adder tree node written this cycle, and its sum.
    qmem_* : the qmem read port (with `AccelConfig.requantizing_mvms`, as the next)
    requant_read, requant_enable, requant_last : Out(1); requant_dst : Out
        A group handed to the requantisers this cycle (its sums forwarded), whether it is
        of a vector of the run, whether it is the run's last, and its amem entry.
    """

    def __init__(self, config):
        self.config = c = config
        self.level_offsets, nodes = tree_levels(c.tiles)
        super().__init__({
            "instruction": In(instruction_layout()), "start": In(1), "done": Out(1),
            **memory_ports(c, "amem", "psum", "psum_write"),
            **({**memory_ports(c, "qmem"),
                "requant_read": Out(1), "requant_enable": Out(1), "requant_last": Out(1),
                "requant_dst": Out(address_width(c.amem_depth))}
               if c.requantizing_mvms else {}),
            "feed": Out(c.tiles), "starts": Out(c.tiles),
            "tiles_done": In(1), "tiles_finishing": In(1),
            "node": Out(range(nodes + 1)),
            "group_sum": In(data.ArrayLayout(signed(ACC_BITS), c.cols)),
        })

    def delay(self, count, ktiles=1, ngroups=1, replicas=1, requantize=False):
        return mvm_cycles(self.config, count, ktiles, ngroups, replicas, requantize)

    def elaborate(self, platform):
        c = self.config
        m = Module()
        ins = self.instruction
        tile_bits, _ = tile_widths(c)
        address_bits = address_width(max(c.wmem_depth, c.amem_depth, c.psum_depth))
        busy = Signal()
        shape = self._shape(m, tile_bits)
        # `cycle` counts from the last start (from 1 on entry); `count`, the vectors the
        # feed has still to read.
        cycle = Signal.like(shape["period"], name="cycle")
        count = Signal(16, name="vectors_to_feed")
        feed = _Walk("feed", tile_bits, address_bits)
        write = _Walk("write", tile_bits, address_bits)
        restart = [busy.eq(1), cycle.eq(1), count.eq(ins.count),
                   feed.restart(ins.src), write.restart(ins.dst)]
        with m.If(busy):
            m.d.sync += cycle.eq(cycle + 1)
            fed = self._feed(m, shape, cycle, count, feed, restart)
            converting = self._start(m, shape, cycle, fed, restart)
            self._write(m, shape, write, converting, busy, restart)
        with m.If(self.start):
            m.d.sync += restart
        return m

    def _shape(self, m, tile_bits):
        """Registers loaded at start: the round's feeds E = replicas * ktiles, writes G =
        replicas * ngroups and period P = max(N, E + 2, G + 1), and each tile's place."""
        c = self.config
        ins = self.instruction
        klog, nlog, rlog = ins.ktiles_log2, ins.ngroups_log2, ins.replicas_log2
        _, legal_log = tile_widths(c)
        n_conv = c.steps * c.adc_share
        one = Const(1, tile_bits + 1)
        shape = {
            "feeds": Signal(tile_bits + 1), "writes": Signal(tile_bits + 1),
            "period": Signal((2 * c.tiles + n_conv + 4).bit_length()),
            "k_last": Signal(tile_bits), "n_last": Signal(tile_bits),
            "replicas": Signal(tile_bits + 1), "in_range": Signal(c.tiles),
            "tree_base": Signal(range(2 * (1 << (c.tiles - 1).bit_length()) + 1)),
            "slot": [Signal(tile_bits, name=f"slot_t{t}") for t in range(c.tiles)],
            "replica": [Signal(tile_bits, name=f"replica_t{t}") for t in range(c.tiles)],
        }
        loads = []
        for t in range(c.tiles):
            offset = (Const(t, tile_bits + 1) - ins.tile)[:tile_bits]
            k = offset & ((Const(1, tile_bits) << klog) - 1)
            r = offset >> (klog + nlog)
            loads += [shape["in_range"][t].eq((t >= ins.tile) & (r < (one << rlog))),
                      shape["slot"][t].eq((r << klog) | k), shape["replica"][t].eq(r)]
        # Only a legal shape matters (the decoder refuses the rest): log2 E, log2 G < tile_bits.
        feeds = (one << (rlog + klog)[:legal_log])[:tile_bits + 1]
        writes = (one << (rlog + nlog)[:legal_log])[:tile_bits + 1]
        longest = Mux(feeds + 2 > writes + 1, feeds + 2, writes + 1)
        level_offset = Array(Const(self.level_offsets[min(L, len(self.level_offsets) - 1)],
                                   len(shape["tree_base"])) for L in range(1 << len(klog)))
        loads += [shape["feeds"].eq(feeds), shape["writes"].eq(writes),
                  shape["period"].eq(Mux(longest > n_conv, longest, n_conv)),
                  shape["k_last"].eq((one << klog[:legal_log]) - 1),
                  shape["n_last"].eq((one << nlog[:legal_log]) - 1),
                  shape["replicas"].eq(one << rlog[:legal_log]),
                  shape["tree_base"].eq(level_offset[klog] + (ins.tile >> klog))]
        with m.If(self.start):
            m.d.sync += loads
        return shape

    def _feed(self, m, shape, cycle, count, walk, restart):
        """Feed engine: the round's entries, one a cycle, into the tiles of their slot.
        Returns the round handed to the start engine: (pending, vectors, last)."""
        c = self.config
        ins = self.instruction
        round_vectors = Signal.like(shape["replicas"], name="feed_round_vectors")
        index = Signal.like(shape["feeds"], name="feed_index")     # slot of the next feed
        latch_valid = Signal()                    # the entry read last cycle goes to ...
        latch_slot = Signal.like(index)           # ... the tiles of this slot
        pending = Signal(name="start_pending")    # a fed round waits for its start
        vectors = Signal.like(round_vectors, name="start_vectors")
        last = Signal(name="start_last")
        restart += [index.eq(0), latch_valid.eq(0), pending.eq(0)]
        m.d.comb += round_vectors.eq(Mux(count > shape["replicas"], shape["replicas"], count))
        with m.If((cycle >= 1) & (cycle <= shape["feeds"]) & (count != 0)):
            active = walk.replica < round_vectors
            m.d.comb += [self.amem_en.eq(active), self.amem_addr.eq(walk.addr)]
            m.d.sync += [latch_valid.eq(active), latch_slot.eq(index), index.eq(index + 1)]
            walk.step(m, shape["k_last"], ins.src_stride, ins.aux)
            with m.If(cycle == shape["feeds"]):               # the round's last feed
                m.d.sync += [count.eq(count - round_vectors), pending.eq(1),
                             vectors.eq(round_vectors), last.eq(count == round_vectors),
                             index.eq(0), walk.replica.eq(0)]
        with m.Else():
            m.d.sync += latch_valid.eq(0)
        m.d.comb += self.feed.eq(Cat(latch_valid & shape["in_range"][t]
                                     & (shape["slot"][t] == latch_slot)
                                     for t in range(c.tiles)))
        return pending, vectors, last

    def _start(self, m, shape, cycle, fed, restart):
        """Start engine: the fed round's tiles of vectors below count, all at once, at
        E + 2 for the first round and every P after. Returns the converting round's
        (vectors, last), which move on to the write engine in its last conversion cycle
        (the next round may start in that very cycle)."""
        c = self.config
        pending, vectors, last = fed
        started_any = Signal()
        converting_vectors = Signal.like(vectors, name="converting_vectors")
        converting_last = Signal(name="converting_last")
        restart.append(started_any.eq(0))
        start_now = pending & Mux(started_any, cycle == shape["period"],
                                  cycle == shape["feeds"] + 2)
        with m.If(start_now):
            m.d.comb += self.starts.eq(Cat(shape["in_range"][t] & (shape["replica"][t] < vectors)
                                           for t in range(c.tiles)))
            m.d.sync += [cycle.eq(1), started_any.eq(1), pending.eq(0),
                         converting_vectors.eq(vectors), converting_last.eq(last)]
        return converting_vectors, converting_last

    def _write(self, m, shape, walk, converting, busy, restart):
        """Write engine: from the cycle the tiles are done, one group a cycle: its psum
        entry is read, then written with the group's sum the next cycle. Requantizing, its
        sums are forwarded to the requantisers instead."""
        c = self.config
        ins = self.instruction
        accumulate = (ins.flags & FLAG_ACCUMULATE).any()
        requantize = (ins.flags & FLAG_REQUANTIZE).any() if c.requantizing_mvms else None
        round_vectors = Signal.like(converting[0], name="write_round_vectors")
        round_last = Signal(name="write_round_last")
        active = Signal(name="write_active")
        index = Signal.like(shape["writes"], name="write_index")   # group r * G + n
        valid = Signal(name="write_valid")        # a psum write this cycle, of ...
        enable = Signal(name="write_enable")      # ... a vector of the run (not past count)
        group = Signal.like(index, name="write_group")
        group_lane = Signal.like(walk.lane, name="write_group_lane")     # its n (qmem)
        addr = Signal.like(walk.addr, name="write_address")
        last = Signal(name="write_last")          # the run's last write
        restart += [active.eq(0), index.eq(0), valid.eq(0)]
        with m.If(self.tiles_finishing):
            m.d.sync += [round_vectors.eq(converting[0]), round_last.eq(converting[1])]
        with m.If(self.tiles_done | active):
            in_run = walk.replica < round_vectors
            last_group = index == shape["writes"] - 1
            m.d.comb += [self.psum_en.eq(accumulate & in_run), self.psum_addr.eq(walk.addr)]
            m.d.sync += [valid.eq(1), enable.eq(in_run), group.eq(index), addr.eq(walk.addr),
                         last.eq(last_group & round_last), active.eq(~last_group),
                         index.eq(index + 1)]
            if c.requantizing_mvms:
                m.d.sync += group_lane.eq(walk.lane)
            walk.step(m, shape["n_last"], ins.dst_stride, ins.aux2)
            with m.If(last_group):
                m.d.sync += [index.eq(0), walk.replica.eq(0)]
        with m.Else():
            m.d.sync += valid.eq(0)
        m.d.comb += self.node.eq(shape["tree_base"] + group)
        with m.If(valid):
            sums = self.group_sum.as_value()
            lanes = [(sums[k * ACC_BITS:(k + 1) * ACC_BITS]
                      + (self.psum_data[k * ACC_BITS:(k + 1) * ACC_BITS]
                         & accumulate.replicate(ACC_BITS)))[:ACC_BITS] for k in range(c.cols)]
            m.d.comb += [self.psum_wen.eq(enable & ~requantize if c.requantizing_mvms
                                          else enable),
                         self.psum_waddr.eq(addr), self.psum_wdata.eq(Cat(lanes))]
            if c.requantizing_mvms:
                with m.If(requantize):
                    m.d.comb += [self.psum_forward.eq(1), self.qmem_en.eq(enable),
                                 self.qmem_addr.eq(ins.qentry + group_lane),
                                 self.requant_read.eq(1), self.requant_enable.eq(enable),
                                 self.requant_last.eq(last), self.requant_dst.eq(addr)]
            with m.If(last):            # requantizing, the REQUANT unit ends the run
                m.d.comb += self.done.eq(~requantize if c.requantizing_mvms else 1)
                m.d.sync += busy.eq(0)
