"""The sequencer: fetches an instruction, has the decoder check it, and dispatches it to
the unit of its opcode. It owns the tiles; the memories belong to the top, which shares
their ports with the host while the sequencer is idle."""

import operator
from functools import reduce

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.isa import ErrorCode, Opcode
from golden.regmap import COUNTERS

from ..crossbar_tile import CrossbarTile, tree_sum
from .adder_tree import AdderTree
from .decoder import InstructionDecoder
from .max_unit import MaxUnit
from .mvm_unit import MVMUnit, connect_mvm
from .ports import memory_ports
from .program_unit import ProgramUnit
from .requant_unit import RequantUnit

__all__ = ["Sequencer"]

MEMORY_PORTS = ("imem", "wmem", "amem", "amem2", "psum", "qmem", "amem_write", "psum_write")


class Sequencer(wiring.Component):
    """Runs a program per the timing contract of :mod:`golden.timing`: FETCH, DECODE and
    CHECK a cycle each, then the instruction's unit until its ``done``.

    Attributes
    ----------
    start : In(1)
        Run from pc 0 (ignored while running). A soft reset is the top's
        ``ResetInserter`` around this component, tiles included.
    running, done, error : Out(1)
    error_code : Out(8)
    error_pc : Out(16)
    <mem>_addr, <mem>_en, <mem>_data :
        Read ports of imem, wmem, amem, psum, qmem, and amem's second (``amem2_*``: MAX
        reads both operands at once); data arrives a cycle after en, and the amem and
        psum ports see a write of the same cycle. A wmem entry is a row for every tile.
    amem_waddr, amem_wen (one bit per lane), amem_wdata; psum_waddr, psum_wen, psum_wdata :
        Write ports.
    events : Out(StructLayout(counter name -> increment))
        What happened this cycle, one field per performance counter.
    stuck : In(tiles * CrossbarTile.stuck_bits), only with ``fault_injection``
        Each tile's ``stuck`` port, tile 0 in the low bits (simulation only).
    """

    def __init__(self, config, fault_injection=False):
        self.config, self.fault_injection = config, fault_injection
        stuck_bits = config.tiles * CrossbarTile.stuck_bits(config)
        super().__init__({
            **({"stuck": In(stuck_bits)} if fault_injection else {}),
            "start": In(1),
            "running": Out(1), "done": Out(1), "error": Out(1),
            "error_code": Out(8), "error_pc": Out(16),
            **memory_ports(config, *MEMORY_PORTS),
            "events": Out(data.StructLayout({name: unsigned(32) for name in COUNTERS})),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        tiles = [CrossbarTile(c, self.fault_injection) for _ in range(c.tiles)]
        for t, tile in enumerate(tiles):
            m.submodules[f"tile{t}"] = tile
            if self.fault_injection:
                width = CrossbarTile.stuck_bits(c)
                m.d.comb += tile.stuck.eq(self.stuck[t * width:(t + 1) * width])
        m.submodules.decoder = decoder = InstructionDecoder(c)
        m.submodules.adder_tree = tree = AdderTree(c)
        units = {Opcode.PROGRAM: ProgramUnit(c), Opcode.MVM: MVMUnit(c),
                 Opcode.REQUANT: RequantUnit(c), Opcode.MAX: MaxUnit(c)}
        for opcode, unit in units.items():
            m.submodules[opcode.name.lower()] = unit
            m.d.comb += unit.instruction.eq(decoder.instruction)
        self._connect_tiles(m, tiles, tree, units, decoder.instruction)
        self._merge_ports(m, units.values())
        self._count_events(m, tiles, units)
        self._control(m, decoder, units)
        return m

    def _connect_tiles(self, m, tiles, tree, units, ins):
        program = units[Opcode.PROGRAM]
        for t, tile in enumerate(tiles):
            m.d.comb += [tile.w_stream.valid.eq(program.valid[t]),
                         tile.w_stream.payload.eq(program.rows[t])]
        connect_mvm(m, units[Opcode.MVM], tiles, tree, self.amem_data, ins,
                    units[Opcode.REQUANT])

    def _merge_ports(self, m, units):
        """Each memory port is the OR of the units' (a unit drives zeros while idle)."""
        for name, member in memory_ports(self.config, *MEMORY_PORTS).items():
            users = [unit for unit in units if name in unit.signature.members]
            if not users:
                continue
            if member.flow == Out:
                m.d.comb += getattr(self, name).eq(
                    reduce(operator.or_, (getattr(unit, name) for unit in users)))
            else:
                m.d.comb += [getattr(unit, name).eq(getattr(self, name)) for unit in users]

    def _count_events(self, m, tiles, units):
        """Events measured from the datapath, not from the instruction stream. Balanced
        sums: a chain of `tiles` adders is a path Amaranth's netlist checks walk from
        every node (elaboration grew with the square of the tiles)."""
        c = self.config
        ev = self.events
        converting = Signal(range(c.tiles + 1))
        written = Signal(range(c.tiles + 1))
        m.d.comb += [converting.eq(tree_sum(tile.converting for tile in tiles)),
                     written.eq(tree_sum(tile.w_stream.valid & tile.w_stream.ready
                                         for tile in tiles))]
        m.d.comb += [
            ev.cycles.eq(self.running),
            ev.tile_busy_cycles.eq(converting),
            ev.dac_conversions.eq(tree_sum(tile.step_start for tile in tiles) * c.rows),
            ev.adc_conversions.eq(converting * (c.adc_groups * c.slices)),
            ev.cell_reads.eq(converting * (2 * c.rows * c.adc_groups * c.slices)),
            ev.cell_writes.eq(written * (2 * c.cols * c.slices)),
            ev.tile_programs.eq(units[Opcode.PROGRAM].tile_programs),
            ev.mvm_products.eq(tree_sum(units[Opcode.MVM].starts[t] for t in range(c.tiles))),
            ev.requantizations.eq(units[Opcode.REQUANT].requantizations),
            ev.imem_reads.eq(self.imem_en), ev.wmem_reads.eq(written),
            ev.amem_reads.eq(self.amem_en + self.amem2_en),
            ev.amem_writes.eq(self.amem_wen.any()),
            ev.psum_reads.eq(self.psum_en), ev.psum_writes.eq(self.psum_wen),
            ev.qmem_reads.eq(self.qmem_en),
        ]

    def _control(self, m, decoder, units):
        c = self.config
        ins = decoder.instruction
        pc = Signal(range(c.imem_depth + 1))
        finished = reduce(operator.or_, (unit.done for unit in units.values()))

        def stop(code):
            m.d.sync += [self.running.eq(0), self.error.eq(1), self.error_code.eq(code),
                         self.error_pc.eq(pc)]
            m.next = "IDLE"

        def next_instruction():
            m.d.sync += pc.eq(pc + 1)
            m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), self.running.eq(1), self.done.eq(0),
                                 self.error.eq(0), self.error_code.eq(0), self.error_pc.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(pc >= c.imem_depth):
                    stop(ErrorCode.PC_OVERFLOW)
                with m.Else():
                    m.d.comb += [self.imem_en.eq(1), self.imem_addr.eq(pc)]
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += [decoder.word.eq(self.imem_data), decoder.load.eq(1)]
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(decoder.error != ErrorCode.NONE):
                    stop(decoder.error)
                with m.Else():
                    m.d.comb += self.events.instructions.eq(1)
                    with m.If(ins.opcode == Opcode.HALT):
                        m.d.sync += [self.running.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Elif(ins.count == 0):         # an empty run does nothing
                        next_instruction()
                    with m.Else():
                        for opcode, unit in units.items():
                            m.d.comb += unit.start.eq(ins.opcode == opcode)
                        m.next = "EXECUTE"
            with m.State("EXECUTE"):
                with m.If(finished):
                    next_instruction()
