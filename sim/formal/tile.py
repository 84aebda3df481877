"""A crossbar tile computes `golden.crossbar_mvm` for every input, every weight, every
ADC shift and both input encodings: an equivalence check, not a sample.

Weights (`AnyConst`) are programmed row by row through `w_stream`, one input vector
(`AnyConst`) is staged and started with any `adc_shift` and `offset_inputs`, and when the
tile reports `done` its every column must equal golden's result, written out again here
as expressions from golden's definitions (:func:`spec_step_sums`: DAC levels per step,
differential cell slices, a signed count per step and slice, the ADC's rounding and
saturation, or, when the ADC is lossless, each level times the weight the cells read
back; :func:`spec_partial_sums`: the shift-add). Bounded model checking from reset
to the cycle after `done`; an assertion that `done` came keeps it from passing vacuously.

The check follows the product as it happens: at each conversion slot the RTL's column
sums (bit planes, and recombined slices when lossless) equal that step's spec sum, and
the cycle after, each accumulator equals the shift-add so far. smtbmc assumes what it
proved at earlier cycles, so each check is one step's arithmetic or one addition. Stated
on the result alone (a first version, against ``x * w``), the solver had to prove two
multiplier structures equal across the unrolled steps, and ran for minutes beyond a
1x1 tile. With a lossy ADC each slice's code is checked at its slot (the slot sum alone
left a 4x2 tile's first slot unfinished after 5 minutes; with the codes, 27 s). Likewise
the lossless spec sums rows of whole weights, not slices of rows: in golden's
slice-major order the first slot of a 4-row tile ran over 5 minutes. That a lossless
config's spec is ``x @ w``, and that the spec is golden's, `tests/test_formal.py` checks
(every int8 pair; random and extreme vectors).
"""

from amaranth.asserts import AnyConst
from amaranth.hdl import Array, Assert, Assume, Const, Module, Mux, ResetSignal, Signal, signed

from golden import AccelConfig, tile_mvm_cycles, tile_program_cycles
from golden.config import INPUT_BITS, WEIGHT_BITS
from rtl.crossbar_tile import CrossbarTile

from .handshake import cycles_from_reset

__all__ = ["tile_equivalence_proof", "spec_step_sums", "spec_partial_sums", "TILE_CASES",
           "cycles_to_done"]


def _lossy(**fields):
    """The config with an ADC two bits below lossless: every product picks a shift of
    0..2, and codes round and saturate."""
    return AccelConfig(tiles=1, adc_bits=AccelConfig(tiles=1, **fields).lossless_adc_bits - 2,
                       **fields)


# (name, config, slow): DAC widths 1, 2 and 8, lossless and lossy ADCs, private and shared.
TILE_CASES = (
    ("tile_2x2_d1", AccelConfig(tiles=1, rows=2, cols=2, cell_bits=2, dac_bits=1), False),
    ("tile_2x2_c4_d1_shared", AccelConfig(tiles=1, rows=2, cols=2, cell_bits=4, dac_bits=1,
                                          adc_share=2), False),
    ("tile_2x2_d2_lossy", _lossy(rows=2, cols=2, cell_bits=2, dac_bits=2), False),
    ("tile_1x1_d8", AccelConfig(tiles=1, rows=1, cols=1, cell_bits=2, dac_bits=8), True),
    ("tile_4x2_d1", AccelConfig(tiles=1, rows=4, cols=2, cell_bits=2, dac_bits=1), True),
    ("tile_4x2_d1_shared", AccelConfig(tiles=1, rows=4, cols=2, cell_bits=2, dac_bits=1,
                                       adc_share=2), True),
    ("tile_4x2_d1_lossy", _lossy(rows=4, cols=2, cell_bits=2, dac_bits=1), True),
)


def cycles_to_done(config):
    """Reset to the cycle after `done`: the rows programmed, the vector staged, started,
    converted (`golden.timing`), and a margin of 2."""
    return tile_program_cycles(config) + 2 + tile_mvm_cycles(config) + 2


def spec_step_sums(config, x, w, adc_shift, offset_inputs):
    """`golden.crossbar_mvm` as Amaranth expressions, step by step: ``sums[k][col]``, the
    codes of input step k (golden's order: bits ``k*dac_bits ..``) weighted by their
    slices, ``sum_s code[k, s] << (s * cell_bits)``, for inputs `x[r]`, weights `w[r][col]`
    (signed 8-bit values), `adc_shift` and `offset_inputs`; and with a lossy ADC the codes
    themselves (`spec_codes`; None when lossless). Written from golden's definitions
    (`input_levels`, `weight_slices`, `column_counts`, `adc_convert`, `shift_add`;
    `read_weights` when lossless), not from the RTL's structure."""
    c = config
    levels = []                                     # levels[k][r]: step k's DAC level
    for k in range(c.steps):
        chunks = [(x[r].as_unsigned() ^ (offset_inputs << (INPUT_BITS - 1)))
                  [k * c.dac_bits:(k + 1) * c.dac_bits] for r in range(c.rows)]
        if k == c.steps - 1:                        # the sign step, unless offset binary
            chunks = [Mux(offset_inputs, chunk, chunk.as_signed()) for chunk in chunks]
        levels.append(chunks)
    cells = [slice(s * c.cell_bits, (s + 1) * c.cell_bits) for s in range(c.slices)]
    g_pos = [[Mux(w[r][col] > 0, w[r][col], 0).as_unsigned()[:WEIGHT_BITS]
              for col in range(c.cols)] for r in range(c.rows)]
    g_neg = [[Mux(w[r][col] < 0, -w[r][col], 0).as_unsigned()[:WEIGHT_BITS]
              for col in range(c.cols)] for r in range(c.rows)]

    def difference(r, col, s):                      # a differential pair's slice s
        return g_pos[r][col][cells[s]] - g_neg[r][col][cells[s]]

    if c.is_lossless:
        # Every code is its count, so the sum over slices distributes over the rows: each
        # level times the weight its cells read back (`golden.crossbar.read_weights`).
        read = [[sum(difference(r, col, s) << (s * c.cell_bits) for s in range(c.slices))
                 for col in range(c.cols)] for r in range(c.rows)]
        return [[sum(levels[k][r] * read[r][col] for r in range(c.rows))
                 for col in range(c.cols)] for k in range(c.steps)], None
    codes = spec_codes(c, levels, difference, adc_shift)
    return [[sum(codes[k][col][s] << (s * c.cell_bits) for s in range(c.slices))
             for col in range(c.cols)] for k in range(c.steps)], codes


def spec_codes(config, levels, difference, adc_shift):
    """``codes[k][col][s]``: the ADC code of step k, column col, slice s (`column_counts`
    then `adc_convert`), given each step's DAC levels and ``difference(r, col, s)``, the
    slice s of a differential pair."""
    c = config
    half_step = Array(Const((1 << s) >> 1) for s in range(c.max_adc_shift + 1))[adc_shift]
    lo, hi = -(1 << (c.adc_bits - 1)), (1 << (c.adc_bits - 1)) - 1
    codes = []
    for k in range(c.steps):
        codes.append([])
        for col in range(c.cols):
            counts = [sum(levels[k][r] * difference(r, col, s) for r in range(c.rows))
                      for s in range(c.slices)]
            rounded = [(count + half_step) >> adc_shift for count in counts]
            codes[-1].append([Mux(value > hi, hi, Mux(value < lo, lo, value))
                              for value in rounded])
    return codes


def spec_partial_sums(config, step_sums):
    """``partial[j][col]``: the shift-add of golden's steps from the most significant down
    to step ``steps-1-j``, in Horner form (``partial[j] = partial[j-1] << dac_bits +
    step_sums[steps-1-j]``, the same sum as `golden.crossbar.shift_add`'s). The last,
    shifted by the ADC shift, is the column's result."""
    partial = []
    for j in range(config.steps):
        step = step_sums[config.steps - 1 - j]
        partial.append(step if j == 0 else
                       [(partial[-1][col] << config.dac_bits) + step[col]
                        for col in range(config.cols)])
    return partial


def tile_equivalence_proof(config):
    c = config
    m = Module()
    dut = CrossbarTile(c)
    m.submodules.dut = dut.elaborate(None)        # elaborated here, for its registers
    dut._MustUse__silence = True                  # (the elaborated module stands in for it)
    m.d.comb += Assume(~ResetSignal())
    x = [Signal(signed(INPUT_BITS), name=f"x{r}") for r in range(c.rows)]
    w = [[Signal(signed(WEIGHT_BITS), name=f"w{r}_{col}") for col in range(c.cols)]
         for r in range(c.rows)]
    offset_inputs = Signal(name="offset")
    adc_shift = Signal.like(dut.adc_shift, name="shift")
    for value in [*x, *(v for row in w for v in row), offset_inputs, adc_shift]:
        m.d.comb += value.eq(AnyConst(value.shape()))
    m.d.comb += Assume(adc_shift <= c.max_adc_shift)

    # Program row after row, then stage the vector, start, and wait for `done`.
    row = Signal(range(c.rows + 1))
    staged, started, finished = Signal(), Signal(), Signal()
    weight_rows = Array(Array(w[r]) for r in range(c.rows))
    with m.If(row < c.rows):
        m.d.comb += [dut.w_stream.valid.eq(1), dut.w_stream.payload.row.eq(row)]
        m.d.comb += [dut.w_stream.payload.weights[col].eq(weight_rows[row][col])
                     for col in range(c.cols)]
        with m.If(dut.w_stream.ready):
            m.d.sync += row.eq(row + 1)
    with m.Elif(~staged):
        m.d.comb += [dut.i_stream.valid.eq(1)] + \
                    [dut.i_stream.payload[r].eq(x[r]) for r in range(c.rows)]
        m.d.sync += staged.eq(1)
    with m.Elif(~started):
        m.d.comb += [dut.start.eq(1), dut.offset_inputs.eq(offset_inputs),
                     dut.adc_shift.eq(adc_shift)]
        m.d.sync += started.eq(1)
    with m.If(dut.done):
        m.d.sync += finished.eq(1)

    # A slot adds golden's step sum (the RTL's step j is golden's step steps-1-j: most
    # significant first), or with a lossy ADC converts golden's codes, and the cycle
    # after, the accumulator holds the shift-add so far.
    # Each is proven where it first holds and smtbmc then assumes it, so every check is
    # one step's arithmetic or one addition, not the whole product at once.
    step_sums, codes = spec_step_sums(c, x, w, adc_shift, offset_inputs)
    partial = spec_partial_sums(c, step_sums)
    probe = dut.registers
    for j in range(c.steps):
        k = c.steps - 1 - j
        for p in range(c.adc_share):
            now, after = Signal(name=f"slot_{j}_{p}"), Signal(name=f"after_slot_{j}_{p}")
            m.d.comb += now.eq(dut.converting & (probe.step == j) & (probe.phase == p))
            m.d.sync += after.eq(now)
            for g in range(c.adc_groups):
                col = g * c.adc_share + p
                if codes is None:
                    m.d.comb += Assert(~now | (probe.slot_sums[g] == step_sums[k][col]))
                else:           # each code, and the shift-add of the slot's codes after
                    m.d.comb += [Assert(~now | (probe.codes[g][s] == codes[k][col][s]))
                                 for s in range(c.slices)]
                m.d.comb += Assert(~after | (probe.acc[col] == partial[j][col]))
    expected = [value << adc_shift for value in partial[-1]]
    m.d.comb += [Assert(~dut.done | (dut.result[col] == expected[col]))
                 for col in range(c.cols)]
    m.d.comb += Assert((cycles_from_reset(m, cycles_to_done(c)) < cycles_to_done(c)) | finished)
    return m
