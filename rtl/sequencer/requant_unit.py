"""The REQUANT unit: one requantiser per column lane, fed an entry a cycle."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.interface import ACC_BITS, QPARAM_BITS
from golden.timing import REQUANT_LATENCY, requant_cycles

from ..requantizer import Requantizer
from ..layouts import qparam_layout
from .ports import instruction_layout, memory_ports

__all__ = ["RequantUnit"]


class RequantUnit(wiring.Component):
    """Runs a REQUANT instruction from ``start`` to ``done`` (its last cycle), ``delay``
    cycles later: one psum and qmem read a cycle into the requantisers (all ``cols``
    lanes at once); entry i's int8 results are written ``REQUANT_LATENCY`` cycles after
    its read, to lane block ``aux2`` of its amem entry.

    Attributes
    ----------
    instruction : In(instruction layout), held while the unit runs
    start : In(1)
    done : Out(1)
    psum_*, qmem_*, amem_w* : the psum and qmem read ports, the amem write port
    requantizations : Out(range(cols + 1))
        Values requantised this cycle (the ``requantizations`` counter).
    """

    model = staticmethod(Requantizer.model)      # per lane

    def __init__(self, config):
        self.config = c = config
        super().__init__({
            "instruction": In(instruction_layout()), "start": In(1), "done": Out(1),
            **memory_ports(c, "psum", "qmem", "amem_write"),
            "requantizations": Out(range(c.cols + 1)),
        })

    def delay(self, entries):
        return requant_cycles(self.config, entries)

    def elaborate(self, platform):
        c = self.config
        m = Module()
        ins = self.instruction
        requantizers = [Requantizer() for _ in range(c.cols)]
        for k, requantizer in enumerate(requantizers):
            m.submodules[f"requantizer{k}"] = requantizer
            params = data.View(qparam_layout(), self.qmem_data[k * QPARAM_BITS:(k + 1) * QPARAM_BITS])
            m.d.comb += [requantizer.acc.eq(self.psum_data[k * ACC_BITS:(k + 1) * ACC_BITS]),
                         requantizer.bias.eq(params.bias),
                         requantizer.multiplier.eq(params.multiplier),
                         requantizer.shift.eq(params.shift[:5]),
                         requantizer.zero_point.eq(params.zero_point),
                         requantizer.clamp_min.eq(params.clamp_min),
                         requantizer.clamp_max.eq(params.clamp_max)]
        lane_bytes = Cat(requantizer.result for requantizer in requantizers)

        busy = Signal()
        to_read = Signal(16)                          # entries not yet read
        src = Signal.like(self.psum_addr)
        dst = Signal.like(self.amem_waddr)
        in_flight = Signal(REQUANT_LATENCY)           # an entry at each stage
        with m.If(self.start):
            m.d.sync += [busy.eq(1), to_read.eq(ins.count),
                         src.eq(ins.src), dst.eq(ins.dst), in_flight.eq(0)]
        with m.If(busy):
            reading = to_read != 0
            with m.If(reading):
                m.d.comb += [self.psum_en.eq(1), self.psum_addr.eq(src),
                             self.qmem_en.eq(1), self.qmem_addr.eq(ins.aux)]
                m.d.sync += [src.eq(src + ins.src_stride), to_read.eq(to_read - 1)]
            m.d.sync += in_flight.eq(Cat(reading, in_flight[:-1]))
            with m.If(in_flight[-1]):
                blocks = c.rows // c.cols
                m.d.comb += [self.amem_waddr.eq(dst),
                             self.amem_wdata.eq(lane_bytes.replicate(blocks)),
                             self.requantizations.eq(c.cols)]
                for b in range(blocks):
                    with m.If(ins.aux2 == b):
                        m.d.comb += self.amem_wen.eq(((1 << c.cols) - 1) << (b * c.cols))
                m.d.sync += dst.eq(dst + ins.dst_stride)
                with m.If((to_read == 0) & (in_flight[:-1] == 0)):    # the last entry
                    m.d.comb += self.done.eq(1)
                    m.d.sync += busy.eq(0)
        return m
