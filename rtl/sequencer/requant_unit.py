"""The REQUANT unit: `requant_lanes` requantisers, fed an entry's lanes in
``cols / requant_lanes`` passes (one per column: an entry a cycle), for a REQUANT or a
requantizing MVM."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.interface import ACC_BITS, QPARAM_BITS
from golden.isa import FLAG_MAX, Opcode
from golden.timing import REQUANTIZER_STAGES, requant_cycles

from ..requantizer import Requantizer
from ..layouts import qparam_layout
from .ports import address_width, instruction_layout, memory_ports

__all__ = ["RequantUnit"]


class RequantUnit(wiring.Component):
    """Runs a REQUANT instruction from ``start`` to ``done`` (its last cycle), ``delay``
    cycles later: one psum and qmem read every ``P = cols / requant_lanes`` cycles, its
    lanes fed ``requant_lanes`` at a time to the requantisers in the P cycles after it;
    entry i's int8 results are written ``P + 3`` cycles after its read (golden.timing),
    to lane block ``aux2`` of its amem entry.

    With `AccelConfig.requantizing_mvms`, a requantizing MVM feeds the same pipeline: in
    each cycle the MVM unit reads a group's qmem entry and forwards its sums to psum's read
    data (``mvm_read``), they take the place of a psum entry, written to lanes ``0 ..
    cols-1`` of amem entry ``mvm_dst`` (with the MVM's max flag, the maximum with what the
    entry holds, read on amem's second port the cycle before the write). ``done`` is then
    the cycle of the write of the entry read with ``mvm_last``; a slot read without
    ``mvm_enable`` (past the run's count) is timed as an entry but writes nothing.
    Without, the unit is a REQUANT's alone.

    Attributes
    ----------
    instruction : In(instruction layout), held while the unit runs
    start : In(1)
    done : Out(1)
    psum_*, qmem_*, amem_w*, amem2_* : the psum and qmem read ports, the amem write port,
        amem's second read port
    mvm_read, mvm_enable, mvm_last : In(1); mvm_dst : In(amem address)
    requantizations : Out(range(cols + 1))
        Values requantised this cycle (the ``requantizations`` counter).
    """

    model = staticmethod(Requantizer.model)      # per lane

    def __init__(self, config):
        self.config = c = config
        super().__init__({
            "instruction": In(instruction_layout()), "start": In(1), "done": Out(1),
            **memory_ports(c, "psum", "qmem", "amem_write"),
            **({**memory_ports(c, "amem2"),
                "mvm_read": In(1), "mvm_enable": In(1), "mvm_last": In(1),
                "mvm_dst": In(address_width(c.amem_depth))} if c.requantizing_mvms else {}),
            "requantizations": Out(range(c.cols + 1)),
        })

    def delay(self, entries):
        return requant_cycles(self.config, entries)

    def elaborate(self, platform):
        c = self.config
        m = Module()
        ins = self.instruction
        lanes, passes = c.requant_lanes, c.requant_passes
        step = Signal(range(passes))                  # the pass being fed
        feeding = Signal()                            # an entry's data is at the ports
        results = self._requantizers(m, step)

        busy = Signal()
        to_read = Signal(16)                          # entries not yet read
        src = Signal.like(self.psum_addr)
        dst = Signal.like(self.amem_waddr)
        # A pass in each requantiser stage, and whether it is its entry's last.
        in_flight = Signal(REQUANTIZER_STAGES)
        last_in_flight = Signal(REQUANTIZER_STAGES)
        step_in_flight = [Signal.like(step, name=f"step_stage{s}") for s in range(REQUANTIZER_STAGES)]
        done_bytes = Signal(8 * lanes * (passes - 1))  # the entry's earlier passes' results
        last_step = step == passes - 1
        # An MVM's groups (without requantizing MVMs, none: the logic is a REQUANT's alone)
        mvm = self._mvm_entries(m, feeding, last_step) if c.requantizing_mvms else None
        with m.If(self.start):
            m.d.sync += [busy.eq(1), to_read.eq(ins.count), src.eq(ins.src), dst.eq(ins.dst),
                         in_flight.eq(0), last_in_flight.eq(0), feeding.eq(0), step.eq(0)]
        with m.If(busy if mvm is None else busy | mvm["running"]):
            # The ports hold an entry's data until the next read (a read port's data is
            # kept while its enable is low): read the next entry in the last pass.
            reading = (to_read != 0) & (~feeding | last_step)
            if mvm is not None:           # (to_read is 0 while an MVM runs: belt and braces)
                reading = reading & busy
            with m.If(reading):
                m.d.comb += [self.psum_en.eq(1), self.psum_addr.eq(src),
                             self.qmem_en.eq(1), self.qmem_addr.eq(ins.aux)]
                m.d.sync += [src.eq(src + ins.src_stride), to_read.eq(to_read - 1)]
            fed = reading if mvm is None else reading | mvm["read"]
            m.d.sync += feeding.eq(fed | (feeding & ~last_step))
            with m.If(feeding):
                m.d.sync += step.eq(Mux(last_step, 0, step + 1))
            m.d.sync += [in_flight.eq(Cat(feeding, in_flight[:-1])),
                         last_in_flight.eq(Cat(feeding & last_step, last_in_flight[:-1])),
                         step_in_flight[0].eq(step)]
            m.d.sync += [step_in_flight[s].eq(step_in_flight[s - 1])
                         for s in range(1, REQUANTIZER_STAGES)]
            if passes > 1:
                with m.If(in_flight[-1]):
                    for s in range(passes - 1):
                        with m.If(step_in_flight[-1] == s):
                            m.d.sync += done_bytes.word_select(s, 8 * lanes).eq(results)
            entry_out = Cat(done_bytes, results)
            last = (to_read == 0) & ~feeding & (in_flight[:-1] == 0)     # a REQUANT's last
            if mvm is not None:
                entry_out = self._pooled(m, mvm, entry_out, last_in_flight)
            with m.If(last_in_flight[-1]):
                if mvm is None:
                    self._write(m, dst, entry_out, ins.aux2, dst)
                    ends = last
                else:
                    with m.If(mvm["writes"]):
                        self._write(m, Mux(mvm["running"], mvm["dst"], dst), entry_out,
                                    Mux(mvm["running"], 0, ins.aux2), dst)
                    ends = Mux(mvm["running"], mvm["last"], last)
                with m.If(ends):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += busy.eq(0)
        return m

    def _write(self, m, address, entry_out, lane_block, dst):
        """An entry's int8 results into lane block `lane_block` of amem entry `address`
        (and the REQUANT's next entry)."""
        c, ins = self.config, self.instruction
        blocks = c.rows // c.cols
        m.d.comb += [self.amem_waddr.eq(address), self.amem_wdata.eq(entry_out.replicate(blocks)),
                     self.requantizations.eq(c.cols)]
        for b in range(blocks):
            with m.If(lane_block == b):
                m.d.comb += self.amem_wen.eq(((1 << c.cols) - 1) << (b * c.cols))
        m.d.sync += dst.eq(dst + ins.dst_stride)

    def _mvm_entries(self, m, feeding, last_step):
        """A requantizing MVM's groups through the stages: each one's amem entry, whether
        it writes (a vector of the run) and whether it is the run's last, from its
        handover (``mvm_read``) to its write. Returns them as seen at the write, the
        handover, the running flag and the entry for the max's read."""
        ins = self.instruction
        entry = {"dst": Signal.like(self.mvm_dst, name="mvm_entry_dst"),
                 "write": Signal(name="mvm_entry_write"), "last": Signal(name="mvm_entry_last")}
        stages = [{name: Signal.like(signal, name=f"mvm_{name}_stage{s}")
                   for name, signal in entry.items()} for s in range(REQUANTIZER_STAGES)]
        with m.If(self.mvm_read):
            m.d.sync += [entry["dst"].eq(self.mvm_dst), entry["write"].eq(self.mvm_enable),
                         entry["last"].eq(self.mvm_last)]
        for name in entry:
            m.d.sync += [stages[0][name].eq(entry[name])]
            m.d.sync += [stages[s][name].eq(stages[s - 1][name])
                         for s in range(1, REQUANTIZER_STAGES)]
        return {"running": ins.opcode == Opcode.MVM, "read": self.mvm_read,
                "dst": stages[-1]["dst"],
                "writes": stages[-1]["write"] | (ins.opcode != Opcode.MVM),
                "last": stages[-1]["last"], "before": stages[-2]}

    def _pooled(self, m, mvm, entry_out, last_in_flight):
        """With the MVM's max flag, the lane-wise maximum of `entry_out` and what its amem
        entry holds (read on amem's second port the cycle before the write)."""
        c, ins = self.config, self.instruction
        max_into = mvm["running"] & (ins.flags & FLAG_MAX).any()
        with m.If(last_in_flight[-2] & mvm["before"]["write"] & max_into):
            m.d.comb += [self.amem2_en.eq(1), self.amem2_addr.eq(mvm["before"]["dst"])]
        held = self.amem2_data[:8 * c.cols]
        lane = lambda value, k: value.word_select(k, 8)
        pooled = Cat(Mux(lane(entry_out, k).as_signed() > lane(held, k).as_signed(),
                         lane(entry_out, k), lane(held, k)) for k in range(c.cols))
        return Mux(max_into, pooled, entry_out)

    def _requantizers(self, m, step):
        """`requant_lanes` requantisers, requantiser k fed lane ``step * requant_lanes + k``
        of the psum and qmem entries at the ports; their results, lane 0 lowest."""
        c = self.config
        requantizers = [Requantizer() for _ in range(c.requant_lanes)]
        for k, requantizer in enumerate(requantizers):
            m.submodules[f"requantizer{k}"] = requantizer
            lane = step * c.requant_lanes + k if c.requant_passes > 1 else k
            params = data.View(qparam_layout(), self.qmem_data.word_select(lane, QPARAM_BITS))
            m.d.comb += [requantizer.acc.eq(self.psum_data.word_select(lane, ACC_BITS)),
                         requantizer.bias.eq(params.bias),
                         requantizer.multiplier.eq(params.multiplier),
                         requantizer.shift.eq(params.shift[:5]),
                         requantizer.zero_point.eq(params.zero_point),
                         requantizer.clamp_min.eq(params.clamp_min),
                         requantizer.clamp_max.eq(params.clamp_max)]
        return Cat(requantizer.result for requantizer in requantizers)
