"""One crossbar tile: differential cell array, bit-serial DAC, shared ADCs, shift-add."""

import math
from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

import golden
from golden.config import ACC_BITS, INPUT_BITS, WEIGHT_BITS
from golden.faults import (STATE_BITS, STUCK_AT_0, STUCK_AT_1, cell_index, cell_shape,
                           stuck_high_level)

__all__ = ["CrossbarTile", "tree_sum", "bit_plane_sum", "saturate"]


def tree_sum(terms, m=None, name="sum"):
    """Sum `terms` as a balanced adder tree (shallower logic than a chain). Given a module
    `m`, each adder drives a kept wire, so that synthesis maps it to a carry chain instead
    of folding the tree into one multi-operand sum."""
    terms = list(terms)
    level = 0
    while len(terms) > 1:
        pairs = []
        for i in range(0, len(terms) - 1, 2):
            total = terms[i] + terms[i + 1]
            if m is not None:
                wire = Signal.like(total, name=f"{name}_l{level}_{i // 2}", attrs={"keep": 1})
                m.d.comb += wire.eq(total)
                total = wire
            pairs.append(total)
        terms = pairs + terms[len(terms) - len(terms) % 2:]
        level += 1
    return terms[0]


def bit_plane_sum(chunks, sign_step, values, m=None, name="plane"):
    """``sum_r level_r * values[r]`` without multipliers, ``level_r`` being row r's DAC
    chunk (its top bit weighs negative on the sign step): per chunk bit, one adder tree
    over the rows whose bit is set, then shifts, and one negation per column, not per cell.
    A crossbar cell is an AND gate; left as ``*``, synthesis spent a DSP block on each
    (1,091 MULT18X18D for one 16x16 tile on ECP5)."""
    bits = len(chunks[0])
    planes = [tree_sum((Mux(chunk[b], value, 0) for chunk, value in zip(chunks, values)),
                       m, f"{name}_b{b}") for b in range(bits)]
    top = planes[-1] << (bits - 1)
    return tree_sum([planes[b] << b for b in range(bits - 1)] + [Mux(sign_step, -top, top)],
                    m, f"{name}_planes")


def saturate(value, bits):
    """Clamp a signed value to the range of a signed `bits`-bit code."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


def adc_round(count, shift):
    """`golden.crossbar.adc_round`: ``count / 2**shift`` to the nearest, ties up."""
    return (count + (Const(1, 2) << shift >> 1)) >> shift


def weight_row_layout(cols):
    return data.StructLayout({
        "row": unsigned(16),
        "weights": data.ArrayLayout(signed(WEIGHT_BITS), cols),
    })


class CrossbarTile(wiring.Component):
    """A crossbar tile; bit-exact with :func:`golden.crossbar_mvm`, timed by
    :func:`golden.tile_mvm_cycles`, :func:`golden.tile_mvm_interval` and
    :func:`golden.tile_program_cycles`.

    Each int8 weight is held as differential cell pairs (``w+``/``w-`` magnitudes cut into
    ``cell_bits`` slices). An input vector is applied MSB-first, ``dac_bits`` per step (the
    first step carries the sign and is applied as a signed level); each column's signed count
    goes through a saturating ADC and is shift-added into an int32 (Horner order, so no
    barrel shifter). Groups of ``adc_share`` columns share the ADCs, one column a cycle.

    Inputs are double-buffered: the next vector is staged while the current one converts,
    and ``start`` in a conversion's last cycle begins the next one with no gap, so a tile
    started every ``steps * adc_share`` cycles converts every cycle. The sequencer times
    the starts (every tile of an MVM in lockstep, see :mod:`golden.timing`).

    Parameters
    ----------
    config : golden.AccelConfig

    Attributes
    ----------
    w_stream : In(stream.Signature(StructLayout(row, weights)))
        Programs one weight row per transfer (``adc_share`` cycles each); not while
        converting (the sequencer never does).
    i_stream : In(stream.Signature(ArrayLayout(signed(8), rows)))
        Stages the next input vector (always ready; a transfer replaces a staged vector
        not yet started).
    start : In(1)
        Convert the staged vector, from the next cycle on. Taken while idle or in the
        last cycle of a conversion; ignored otherwise.
    adc_shift : In(range(max_adc_shift + 1))
        The ADCs' range for the product `start` begins (taken with it): a column count
        is divided by ``2**adc_shift``, to the nearest, before saturating, and the result
        shifted back.
    offset_inputs : In(1)
        Apply that product's inputs as offset binary, ``x + 128`` (taken with `start`):
        the sign bit flipped, and the first step unsigned like the others.
    result : Out(ArrayLayout(signed(32), cols))
        The last product's column results, held until the next product's replace them.
    finishing : Out(1)
        The last conversion cycle of a product: ``result`` takes it at the end of this cycle.
    done : Out(1)
        ``result`` took a new product (``tile_mvm_cycles`` after its start).
    stuck : In(STATE_BITS * cells), only with ``fault_injection``
        Every cell's `golden.faults` state (at `golden.faults.cell_index`): a stuck cell
        reads its stuck level in every product. For simulation only: a design built
        without ``fault_injection`` (every bitstream) has neither the port nor its logic.
    converting : Out(1)
        The ADCs convert this cycle (``adc_groups * slices`` conversions).
    step_start : Out(1)
        The DACs apply a new input step this cycle (``rows`` activations).
    registers : SimpleNamespace
        Its step and phase counters, each column group's ``slot_sums`` (the shift-add's
        addend this cycle) and ADC ``codes`` (per slice; None when lossless) and each
        column's accumulator ``acc``, set by ``elaborate``: what its proof's invariants
        are stated on.
    """

    model = staticmethod(golden.crossbar_mvm)

    def __init__(self, config, fault_injection=False):
        if not isinstance(config, golden.AccelConfig):
            raise TypeError(f"config must be a golden.AccelConfig, not {config!r}")
        self.config, self.fault_injection = config, fault_injection
        faults = {"stuck": In(self.stuck_bits(config))} if fault_injection else {}
        super().__init__({
            **faults,
            "w_stream": In(stream.Signature(weight_row_layout(config.cols))),
            "i_stream": In(stream.Signature(data.ArrayLayout(signed(INPUT_BITS), config.rows))),
            "start": In(1),
            "adc_shift": In(range(config.max_adc_shift + 1)),
            "offset_inputs": In(1),
            "result": Out(data.ArrayLayout(signed(ACC_BITS), config.cols)),
            "finishing": Out(1),
            "done": Out(1),
            "converting": Out(1),
            "step_start": Out(1),
        })

    @staticmethod
    def stuck_bits(config):
        """The width of the ``stuck`` port: a state per cell."""
        return STATE_BITS * math.prod(cell_shape(config))

    @property
    def delay(self):
        return golden.tile_mvm_cycles(self.config)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()

        # Inputs left-aligned so the current step's chunk is always the top dac_bits.
        # Datapath registers take no reset: each is loaded before it is read, and the cells
        # keep their weights across a soft reset (golden.Device.soft_reset). A reset would
        # be a net to every flip-flop of the array: nextpnr's most congested net.
        staged = [Signal(INPUT_BITS, name=f"staged_r{r}", reset_less=True) for r in range(cfg.rows)]
        inputs = [Signal(INPUT_BITS, name=f"input_r{r}", reset_less=True) for r in range(cfg.rows)]
        first_step = Signal()
        adc_shift = Signal.like(self.adc_shift, name="product_adc_shift")
        offset_inputs = Signal(name="product_offset_inputs")
        step = Signal(range(cfg.steps))
        phase = Signal(range(cfg.adc_share))
        next_phase = Signal.like(phase)                # what `phase` is next cycle
        m.d.comb += next_phase.eq(phase)
        m.d.sync += phase.eq(next_phase)
        # Only as wide as a result can be (22 bits by default), sign-extended on the way out.
        acc = [Signal(signed(cfg.result_bits), name=f"acc_c{c}", reset_less=True)
               for c in range(cfg.cols)]
        results = [Signal(signed(cfg.result_bits), name=f"result_c{c}", reset_less=True)
                   for c in range(cfg.cols)]
        last_slot = (step == cfg.steps - 1) & (phase == cfg.adc_share - 1)
        top = slice(INPUT_BITS - cfg.dac_bits, INPUT_BITS)
        chunks = [inputs[r][top] for r in range(cfg.rows)]

        m.d.comb += self.i_stream.ready.eq(1)
        with m.If(self.i_stream.valid):
            m.d.sync += [staged[r].eq(self.i_stream.payload[r]) for r in range(cfg.rows)]

        weights = self._cell_weights(m, next_phase)
        sign_step = first_step & ~offset_inputs        # offset binary has no signed step
        if cfg.is_lossless and not self.fault_injection:
            slot_sums = self._exact_columns(m, chunks, sign_step, weights)
            codes = None
        else:
            slot_sums, codes = self._converted_columns(m, chunks, sign_step, weights, adc_shift,
                                                       self._stuck_states(phase))
        self._accumulate(m, slot_sums, acc, results, first_step, phase, last_slot, adc_shift)
        # For the invariants of its proof (sim/formal/tile.py).
        self.registers = SimpleNamespace(step=step, phase=phase, slot_sums=slot_sums,
                                         codes=codes, acc=acc)
        m.d.comb += [self.result[c].eq(results[c]) for c in range(cfg.cols)]
        m.d.comb += self.finishing.eq(self.converting & last_slot)
        m.d.sync += self.done.eq(self.finishing)

        def start():
            flip = self.offset_inputs << (INPUT_BITS - 1)      # x + 128 as a byte
            m.d.sync += [inputs[r].eq(staged[r] ^ flip) for r in range(cfg.rows)]
            m.d.sync += [first_step.eq(1), step.eq(0), adc_shift.eq(self.adc_shift),
                         offset_inputs.eq(self.offset_inputs)]
            m.d.comb += next_phase.eq(0)
            m.next = "CONVERT"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    start()
            with m.State("CONVERT"):
                m.d.comb += [self.converting.eq(1), self.step_start.eq(phase == 0)]
                with m.If(phase == cfg.adc_share - 1):
                    m.d.comb += next_phase.eq(0)
                    m.d.sync += [step.eq(step + 1), first_step.eq(0)]
                    m.d.sync += [inputs[r].eq(inputs[r] << cfg.dac_bits) for r in range(cfg.rows)]
                with m.Else():
                    m.d.comb += next_phase.eq(phase + 1)
                with m.If(last_slot):
                    with m.If(self.start):
                        start()
                    with m.Else():
                        m.next = "IDLE"
        return m

    def _accumulate(self, m, slot_sums, acc, results, first_step, phase, last_slot, adc_shift):
        """Shift-add each column group's slot sum into its columns' accumulators, and on
        the product's last slot latch the results."""
        cfg = self.config
        for group, value in enumerate(slot_sums):
            # A kept wire: else Yosys folds the column sum into the 32-bit accumulator's
            # add as one multi-operand sum, sign-extending every term to 32 bits.
            slot_sum = Signal.like(value, name=f"slot_sum_g{group}", attrs={"keep": 1})
            m.d.comb += slot_sum.eq(value)
            for p in range(cfg.adc_share):
                c = group * cfg.adc_share + p
                # The first step starts from zero: no clear between back-to-back products.
                total = Mux(first_step, 0, acc[c] << cfg.dac_bits) + slot_sum
                with m.If(self.converting & (phase == p)):
                    m.d.sync += acc[c].eq(total)
                with m.If(self.converting & last_slot):
                    # Columns of the last phase finish now; the others already have. One
                    # shift back for the ADC range: it is common to every code of the product.
                    finished = total if p == cfg.adc_share - 1 else acc[c]
                    m.d.sync += results[c].eq(finished << adc_shift)

    def _cell_weights(self, m, next_phase):
        """``weights[r][g]``: the int8 weight of row r in the column group g converts at
        this cycle's phase (column ``g * adc_share + phase``), given the next cycle's.

        With one column per ADC every cell is read every cycle: registers. With shared
        ADCs a cycle reads only the ``adc_groups`` columns of one phase, so the cells live
        in a memory of ``adc_share`` entries, one per phase, as ISAAC shares an ADC across
        128 columns: a 128x128 tile is then a memory and one adder tree per ADC, not 16,384
        multiplexed registers. A weight row then takes ``adc_share`` cycles to program, one
        write per phase (`golden.tile_program_cycles`).
        """
        cfg = self.config
        w_in = self.w_stream
        if cfg.adc_share == 1:
            rows = [Signal(data.ArrayLayout(signed(WEIGHT_BITS), cfg.cols), name=f"w_r{r}",
                           reset_less=True) for r in range(cfg.rows)]
            m.d.comb += w_in.ready.eq(1)
            with m.If(w_in.valid):
                with m.Switch(w_in.payload.row):
                    for r, row in enumerate(rows):
                        with m.Case(r):
                            m.d.sync += row.eq(w_in.payload.weights)
            return [[rows[r][g] for g in range(cfg.adc_groups)] for r in range(cfg.rows)]

        lanes = cfg.rows * cfg.adc_groups                  # lane (r, g): weight of row r, group g
        m.submodules.cells = cells = Memory(shape=unsigned(lanes * WEIGHT_BITS),
                                            depth=cfg.adc_share, init=[])
        write = cells.write_port(granularity=WEIGHT_BITS)
        # A synchronous read, addressed with the next cycle's phase, so its data is this
        # phase's: block RAM reads are synchronous (and Yosys's ECP5 mapping asserts on an
        # asynchronous read of a memory with byte lanes).
        read = cells.read_port()
        m.d.comb += read.addr.eq(next_phase)
        write_phase = Signal(range(cfg.adc_share))
        row_of_phase = Cat(Array(w_in.payload.weights[g * cfg.adc_share + p].as_unsigned()
                                 for p in range(cfg.adc_share))[write_phase]
                           for g in range(cfg.adc_groups))
        m.d.comb += [write.addr.eq(write_phase), write.data.eq(row_of_phase.replicate(cfg.rows)),
                     w_in.ready.eq(write_phase == cfg.adc_share - 1)]
        with m.If(w_in.valid):
            m.d.sync += write_phase.eq(Mux(write_phase == cfg.adc_share - 1, 0, write_phase + 1))
            with m.Switch(w_in.payload.row):
                for r in range(cfg.rows):
                    with m.Case(r):
                        m.d.comb += write.en.eq(((1 << cfg.adc_groups) - 1) << (r * cfg.adc_groups))
        word = read.data
        return [[word[(r * cfg.adc_groups + g) * WEIGHT_BITS:][:WEIGHT_BITS].as_signed()
                 for g in range(cfg.adc_groups)] for r in range(cfg.rows)]

    def _exact_columns(self, m, chunks, sign_step, weights):
        """The slot sum of each ADC group when the ADC cannot saturate or round.

        Then sum_s 2**(s*cell_bits) * (count+_s - count-_s) is exactly sum_r level_r * w_r,
        so the slices are recombined before the column sum: the same codes, summed, with
        one adder tree per column instead of one per (column, slice), and int8 cells.
        """
        return [bit_plane_sum(chunks, sign_step, [row[g] for row in weights], m, f"column_g{g}")
                for g in range(self.config.adc_groups)]

    def _stuck_states(self, phase):
        """``states(side, slice, row, group)``: the `golden.faults` state of that cell of
        the column converting at `phase`, or None without fault injection."""
        cfg = self.config
        if not self.fault_injection:
            return None

        def state(side, s, row, col):
            at = STATE_BITS * cell_index(cfg, side, s, row, col)
            return self.stuck[at:at + STATE_BITS]

        def states(side, s, row, group):
            return Array(state(side, s, row, group * cfg.adc_share + p)
                         for p in range(cfg.adc_share))[phase]
        return states

    def _cell_levels(self, magnitudes, side, s, group, states):
        """Slice `s` of each row's magnitude on one side: the levels its cells read."""
        cfg = self.config
        levels = [value[s * cfg.cell_bits:(s + 1) * cfg.cell_bits] for value in magnitudes]
        if states is None:
            return levels
        read = []
        for r, level in enumerate(levels):
            state = states(side, s, r, group)
            read.append(Mux(state == STUCK_AT_0, 0,
                            Mux(state == STUCK_AT_1, stuck_high_level(cfg), level)))
        return read

    def _converted_columns(self, m, chunks, sign_step, weights, adc_shift, states=None):
        """The slot sum of each ADC group: per slice, the signed bit-line count of the
        differential pair (the slices of w+ = max(w, 0) and w- = max(-w, 0), as `states`
        leaves them) goes through the saturating, shifting ADC, then the shift-add (all but
        the shift back, which the result takes once). Returns the slot sums and the ADC
        codes, ``codes[group][slice]``."""
        cfg = self.config
        sums, codes = [], []
        for group in range(cfg.adc_groups):
            pos = [Mux(row[group] > 0, row[group], 0).as_unsigned()[:WEIGHT_BITS] for row in weights]
            neg = [Mux(row[group] < 0, -row[group], 0).as_unsigned()[:WEIGHT_BITS] for row in weights]
            partial, group_codes = [], []
            for s in range(cfg.slices):
                diffs = [p - n for p, n in zip(self._cell_levels(pos, 0, s, group, states),
                                               self._cell_levels(neg, 1, s, group, states))]
                count = Signal(signed(cfg.count_bits), name=f"count_g{group}_s{s}")
                code = Signal(signed(cfg.adc_bits), name=f"code_g{group}_s{s}")
                m.d.comb += [count.eq(bit_plane_sum(chunks, sign_step, diffs, m,
                                                    f"column_g{group}_s{s}")),
                             code.eq(saturate(adc_round(count, adc_shift), cfg.adc_bits))]
                partial.append(code << (s * cfg.cell_bits))
                group_codes.append(code)
            sums.append(tree_sum(partial, m, f"slices_g{group}"))
            codes.append(group_codes)
        return sums, codes
