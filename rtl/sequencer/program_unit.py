"""The PROGRAM unit: streams a range of tiles' weight rows from wmem."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import WEIGHT_BITS
from golden.timing import program_cycles

from ..crossbar_tile import tree_sum, weight_row_layout
from .ports import instruction_layout, memory_ports

__all__ = ["ProgramUnit"]


class ProgramUnit(wiring.Component):
    """Runs a PROGRAM instruction from ``start`` to ``done`` (its last cycle),
    ``delay`` cycles later: row k is read at cycle ``k * adc_share`` and offered in the
    ``adc_share`` cycles after (the read port holds it) to every tile of the range, each
    from its own lane of the entry, or lane ``t mod 2**j`` when ``aux`` is ``j + 1``
    (`golden.isa.program_lanes`).

    Attributes
    ----------
    instruction : In(instruction layout), held while the unit runs
    start : In(1)
    done : Out(1)
    wmem_addr, wmem_en, wmem_data : the wmem read port
    valid : Out(tiles), rows : Out(tiles x weight row)
        Each tile's weight stream.
    tile_programs : Out(range(tiles + 1))
        Tiles taking their first row this cycle (the ``tile_programs`` counter).
    """

    def __init__(self, config):
        self.config = c = config
        super().__init__({
            "instruction": In(instruction_layout()), "start": In(1), "done": Out(1),
            **memory_ports(c, "wmem"),
            "valid": Out(c.tiles),
            "rows": Out(data.ArrayLayout(weight_row_layout(c.cols), c.tiles)),
            "tile_programs": Out(range(c.tiles + 1)),
        })

    @property
    def delay(self):
        return program_cycles(self.config)

    def elaborate(self, platform):
        c = self.config
        m = Module()
        ins = self.instruction
        busy = Signal()
        step = Signal(range(c.rows + 1))              # the row read next
        phase = Signal(range(c.adc_share))           # the tiles' write phase
        with m.If(self.start):
            m.d.sync += [busy.eq(1), step.eq(0), phase.eq(0)]

        # Cycle step * adc_share + phase: row `step` is read at phase 0; the row offered
        # is the one read before.
        offering = (phase != 0) | (step != 0)
        first_offer = (step == 1) if c.adc_share == 1 else (step == 0) & (phase == 1)
        with m.If(busy):
            with m.If((step < c.rows) & (phase == 0)):
                m.d.comb += [self.wmem_en.eq(1), self.wmem_addr.eq(ins.src + step)]
            with m.If(phase == c.adc_share - 1):
                m.d.sync += [step.eq(step + 1), phase.eq(0)]
            with m.Else():
                m.d.sync += phase.eq(phase + 1)
            with m.If(offering):
                self._offer(m, Mux(phase == 0, step - 1, step))
            with m.If(first_offer):
                m.d.comb += self.tile_programs.eq(tree_sum(self.valid[t] for t in range(c.tiles)))
            with m.If((step == c.rows) & (phase == 0)):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
        return m

    def _offer(self, m, row):
        c = self.config
        ins = self.instruction
        lane_bits = c.cols * WEIGHT_BITS
        lane = lambda k: self.wmem_data[k * lane_bits:(k + 1) * lane_bits]
        for t in range(c.tiles):
            weights = lane(t)
            for j in range(c.tiles.bit_length()):
                if t % (1 << j) != t:
                    weights = Mux(ins.aux == j + 1, lane(t % (1 << j)), weights)
            m.d.comb += [self.valid[t].eq((t >= ins.tile) & (t < ins.tile + ins.count)),
                         self.rows[t].row.eq(row), self.rows[t].weights.eq(weights)]
