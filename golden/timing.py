"""Every cycle count of the device, as functions of the config: the RTL's contract.

The tile testbench measures every product and programming burst against the tile's
formulas; the sequencer's units take their delays from here, and the device model
(:mod:`golden.device`) counts cycles with these functions.

Timing contract (the RTL's sequencer implements exactly this; N = steps * adc_share):

=============  =====================================================================
every instr.   FETCH 1 + DECODE 1 (the run-end products are registered) + CHECK 1
               (bounds compared, dispatch; HALT and errors end here; PC_OVERFLOW ends
               at FETCH)
PROGRAM        rows * adc_share + 1 cycles, however many tiles (a wmem entry, holding a
               row for every tile, read every adc_share cycles; the tiles write it in the
               adc_share cycles after its read, one phase's columns a cycle)
MVM            pipelined in rounds of ``replicas`` vectors. A round feeds E = replicas *
               ktiles activation entries (one amem read a cycle, into the tiles' input
               buffers), converts N cycles, and writes G = replicas * ngroups partial
               sums (a psum read and, a cycle later, its write, one a cycle). Round i's
               conversion starts at S_i = E + 1 + i*P, P = max(N, E + 2, G + 1): the
               next round is fed while this one converts, and its sums are written while
               the next converts. The run ends after the last round's writes: E + 1 +
               (Q - 1)*P + N + G + 2 cycles for Q = ceil(count / replicas) rounds (0 when
               count is 0). Every round takes the same time; a short last round only
               reads, converts and writes less.
               *Requantizing* (FLAG_REQUANTIZE, a requantiser per column), each write is
               a requantisation instead: in the cycle of a group's psum write its sums
               are forwarded (not written) and its qmem entry read, fed to the
               requantisers the next, its amem entry written 4 cycles after the forward
               (with max: read on amem's second port the cycle before): the same rounds,
               and the run ends E + 1 + (Q - 1)*P + N + G + 6 cycles after it starts
REQUANT        entries x P + 4, P = cols / requant_lanes passes: one psum and parameter
               read every P cycles, its lanes fed requant_lanes at a time to the
               requantisers (3 stages) in the P cycles after it; entry i is written
               P + 3 cycles after its read (with P = 1: an entry a cycle, written 4
               cycles after its read; an empty run: 0)
MAX            entries + 1: both operands of an entry read in one cycle (amem's two
               read ports), its maximum written the next while the next entry's operands
               are read (a read sees a write of the same cycle, so the run behaves entry
               by entry); an empty run: 0
=============  =====================================================================
"""

__all__ = ["tile_program_cycles", "tile_mvm_cycles", "tile_mvm_interval",
           "FETCH_DECODE_CYCLES", "REQUANTIZER_STAGES", "REQUANT_LATENCY", "program_cycles",
           "mvm_round_cycles", "mvm_cycles", "requant_cycles", "max_cycles",
           "adc_bound_cycles"]


def tile_program_cycles(config, rows=None):
    """Cycles to program `rows` weight rows (all of them by default): a row a cycle, or,
    when ADCs are shared and the cells sit in a memory of one entry per phase, a row in
    ``adc_share`` cycles (one write per phase)."""
    return (config.rows if rows is None else rows) * config.adc_share


def tile_mvm_cycles(config):
    """Cycles from a product's start to its result: the start cycle loads the staged
    input, then one cycle per conversion slot (``steps * adc_share``); the result is
    held from the cycle after the last slot."""
    return config.steps * config.adc_share + 1


def tile_mvm_interval(config):
    """The shortest interval between starts: one conversion, ``steps * adc_share``. The
    next input is staged while the current one converts and a start in the last slot
    continues with no gap."""
    return config.steps * config.adc_share


FETCH_DECODE_CYCLES = 3
REQUANTIZER_STAGES = 3          # bias and saturate | multiply | round, shift, clamp
REQUANT_LATENCY = 1 + REQUANTIZER_STAGES    # the psum read, then the stages


def program_cycles(config):
    return tile_program_cycles(config) + 1


def mvm_round_cycles(config, ktiles, ngroups, replicas):
    """P: cycles from one round's conversion start to the next's."""
    feeds, writes = replicas * ktiles, replicas * ngroups
    return max(config.steps * config.adc_share, feeds + 2, writes + 1)


def mvm_cycles(config, count, ktiles=1, ngroups=1, replicas=1, requantize=False):
    if not count:
        return 0
    feeds, writes = replicas * ktiles, replicas * ngroups
    rounds = -(-count // replicas)
    return (feeds + 1 + (rounds - 1) * mvm_round_cycles(config, ktiles, ngroups, replicas)
            + config.steps * config.adc_share + writes
            + (REQUANT_LATENCY + 2 if requantize else 2))


def requant_cycles(config, entries):
    return entries * config.requant_passes + REQUANT_LATENCY if entries else 0


def max_cycles(config, entries):
    return entries + 1 if entries else 0


def adc_bound_cycles(config, adc_conversions):
    """The fewest cycles in which the device can make `adc_conversions`: every tile's ADCs
    (``cols / adc_share`` a slice) converting every cycle, the bound benches set cycle
    counts against."""
    return adc_conversions / (config.tiles * config.adc_groups * config.slices)
