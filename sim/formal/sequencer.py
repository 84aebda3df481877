"""The sequencer stops: every program reaches HALT or an error, within the cycles the
golden timing model allows, whatever the memories hold.

The instruction memory holds any `imem_depth` instructions (`AnyConst`, so every program
of up to that many instructions, with or without a HALT); the other memories read back
anything (`AnySeq`). Run counts are at most a few (bounded checking needs a bound on the
cycles an instruction may take); `SEQUENCER_CASES` lists the configs, program lengths
and counts. Checked by bounded model checking from reset: the sequencer is started once
and must have stopped `bound(config)` cycles later, the sum over the instructions of
their worst case by :mod:`golden.timing` plus fetch, decode and check.
"""

import dataclasses

from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Array, Assert, Assume, Module, ResetSignal, Signal

from golden import AccelConfig, timing
from golden.isa import FIELDS, WORDS_PER_INSTRUCTION
from rtl.sequencer import Sequencer

from .handshake import cycles_from_reset

__all__ = ["sequencer_termination_proof", "SEQUENCER_CASES", "bound"]

_SMALL_MEMORIES = dict(wmem_depth=4, amem_depth=4, psum_depth=4, qmem_depth=2)
CONFIG = AccelConfig(tiles=1, rows=4, cols=2, cell_bits=2, dac_bits=8, adc_bits=8,
                     imem_depth=3, **_SMALL_MEMORIES)
MAX_COUNT = 2
# (name, config, largest run count, slow): the first in seconds, the others in minutes.
SEQUENCER_CASES = (
    ("sequencer_stops", CONFIG, MAX_COUNT, False),
    ("sequencer_stops_4", dataclasses.replace(CONFIG, imem_depth=4), 4, True),
    ("sequencer_stops_serial", AccelConfig(tiles=2, rows=4, cols=4, cell_bits=2, dac_bits=1,
                                           adc_bits=6, adc_share=2, imem_depth=3,
                                           **_SMALL_MEMORIES), MAX_COUNT, True),
)
FETCH_DECODE_CHECK = 3


def bound(config, max_count=MAX_COUNT):
    """Cycles from start to the sequencer's stop at worst: every instruction the slowest
    one (`golden.timing`), and the fetch that finds the memory's end."""
    c = config
    powers = [1 << j for j in range(c.tiles.bit_length())]
    mvm = max(timing.mvm_cycles(c, max_count, k, n, r, requantize) for k in powers
              for n in powers for r in powers if k * n * r <= c.tiles
              for requantize in (False, True))
    slowest = max(timing.program_cycles(c), mvm, timing.requant_cycles(c, max_count),
                  timing.max_cycles(c, max_count))
    return c.imem_depth * (FETCH_DECODE_CHECK + slowest) + 2


def sequencer_termination_proof(config=CONFIG, max_count=MAX_COUNT):
    m = Module()
    m.submodules.dut = dut = Sequencer(config)
    m.d.comb += Assume(~ResetSignal())
    program = Array(Signal(WORDS_PER_INSTRUCTION * 32, name=f"instruction{i}")
                    for i in range(config.imem_depth))
    count_lsb, count_bits = FIELDS["count"]
    for instruction in program:
        m.d.comb += [instruction.eq(AnyConst(len(instruction))),
                     Assume(instruction[count_lsb:count_lsb + count_bits] <= max_count)]
    with m.If(dut.imem_en):
        m.d.sync += dut.imem_data.eq(program[dut.imem_addr])
    for name in dut.signature.members:
        if name.endswith("_data") and name != "imem_data":
            port = getattr(dut, name)
            m.d.comb += port.eq(AnySeq(len(port)))

    limit = bound(config, max_count)
    cycle = cycles_from_reset(m, limit)
    m.d.comb += [dut.start.eq(cycle == 0), Assert((cycle <= limit) | ~dut.running)]
    return m
