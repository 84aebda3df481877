"""The MAX unit: the lane-wise maximum of two runs of activation entries."""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.config import INPUT_BITS
from golden.timing import max_cycles

from .ports import instruction_layout, memory_ports

__all__ = ["MaxUnit"]


class MaxUnit(wiring.Component):
    """Runs a MAX instruction from ``start`` to ``done`` (its last cycle), ``delay``
    cycles later, an entry + 1: both operands of an entry read in one cycle, on amem's
    two read ports; the maximum written the next cycle while the next entry's operands
    are read (the reads see that write, so a run that reads what it wrote works entry by
    entry).

    Attributes
    ----------
    instruction : In(instruction layout), held while the unit runs
    start : In(1)
    done : Out(1)
    amem_*, amem2_*, amem_w* : the amem read ports and its write port
    """

    def __init__(self, config):
        self.config = c = config
        super().__init__({
            "instruction": In(instruction_layout()), "start": In(1), "done": Out(1),
            **memory_ports(c, "amem", "amem2", "amem_write"),
        })

    @staticmethod
    def model(first, other):
        """Lane-wise int8 maximum."""
        return np.maximum(np.asarray(first), np.asarray(other))

    def delay(self, entries):
        return max_cycles(self.config, entries)

    def elaborate(self, platform):
        c = self.config
        m = Module()
        ins = self.instruction
        busy = Signal()
        count = Signal(16)                       # entries whose operands are unread
        src, other, dst = (Signal.like(self.amem_addr, name=n) for n in ("src", "other", "dst"))
        pending = Signal()                       # an entry's operands arrive this cycle
        with m.If(self.start):
            m.d.sync += [busy.eq(1), count.eq(ins.count), src.eq(ins.src), other.eq(ins.aux),
                         dst.eq(ins.dst), pending.eq(0)]
        with m.If(busy):
            with m.If(pending):
                lanes = []
                for r in range(c.rows):
                    a = self.amem_data[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                    b = self.amem2_data[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                    lanes.append(Mux(a > b, a, b))
                m.d.comb += [self.amem_waddr.eq(dst), self.amem_wdata.eq(Cat(lanes)),
                             self.amem_wen.eq((1 << c.rows) - 1)]
                m.d.sync += dst.eq(dst + ins.dst_stride)
            with m.If(count != 0):
                m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(src),
                             self.amem2_en.eq(1), self.amem2_addr.eq(other)]
                m.d.sync += [src.eq(src + ins.src_stride), other.eq(other + ins.aux2),
                             count.eq(count - 1), pending.eq(1)]
            with m.Else():
                m.d.comb += self.done.eq(1)
                m.d.sync += [busy.eq(0), pending.eq(0)]
        return m
