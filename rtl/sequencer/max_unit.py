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
    cycles later, 2 an entry + 1: read one operand; read the other while keeping the
    first; write the maximum while reading the next entry's first operand (the read sees
    that write, so a run that reads what it wrote works entry by entry).

    Attributes
    ----------
    instruction : In(instruction layout), held while the unit runs
    start : In(1)
    done : Out(1)
    amem_*, amem_w* : the amem read and write ports
    """

    def __init__(self, config):
        self.config = c = config
        super().__init__({
            "instruction": In(instruction_layout()), "start": In(1), "done": Out(1),
            **memory_ports(c, "amem", "amem_write"),
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
        reading_other = Signal()                 # the cycle that reads the second operand
        count = Signal(16)                       # entries whose first operand is unread
        src, other, dst = (Signal.like(self.amem_addr, name=n) for n in ("src", "other", "dst"))
        first_operand = Signal(c.rows * INPUT_BITS)
        pending = Signal()                       # an entry's maximum is due for writing
        with m.If(self.start):
            m.d.sync += [busy.eq(1), reading_other.eq(0), count.eq(ins.count),
                         src.eq(ins.src), other.eq(ins.aux), dst.eq(ins.dst), pending.eq(0)]
        with m.If(busy & ~reading_other):
            with m.If(pending):
                lanes = []
                for r in range(c.rows):
                    a = first_operand[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                    b = self.amem_data[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                    lanes.append(Mux(a > b, a, b))
                m.d.comb += [self.amem_waddr.eq(dst), self.amem_wdata.eq(Cat(lanes)),
                             self.amem_wen.eq((1 << c.rows) - 1)]
                m.d.sync += dst.eq(dst + ins.dst_stride)
            with m.If(count != 0):
                m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(src)]
                m.d.sync += [src.eq(src + ins.src_stride), count.eq(count - 1),
                             reading_other.eq(1)]
            with m.Else():
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
        with m.If(busy & reading_other):
            m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(other)]
            m.d.sync += [first_operand.eq(self.amem_data), other.eq(other + ins.aux2),
                         pending.eq(1), reading_other.eq(0)]
        return m
