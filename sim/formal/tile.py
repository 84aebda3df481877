"""A lossless crossbar tile returns ``x @ w`` (``(x + 128) @ w`` with offset inputs) for
every input and every weight: an equivalence check, not a sample.

Weights (`AnyConst`) are programmed row by row through `w_stream`, one input vector
(`AnyConst`) and `offset_inputs` are applied, and when the tile reports `done` its every
column must equal the plain product, written here with `*`, against the tile's cell
slices, bit planes and shift-add. Bounded model checking from reset to the cycle after
`done`; an assertion that `done` came keeps the check from passing vacuously.

Only a 1x1 tile closes (about 45 s): Yices spent over 5 minutes on the cycle of `done`
for 2x1 (1-bit DAC) and 4x2 tiles (8-bit DAC) without an answer, the classic hardness
of proving two multiplier structures equal. Lossy tiles (ADC rounding and saturation
per step and slice) are not proven.
"""

from amaranth.asserts import AnyConst
from amaranth.hdl import Array, Assert, Assume, Module, Mux, ResetSignal, Signal, signed

from golden import AccelConfig, tile_mvm_cycles, tile_program_cycles
from golden.config import INPUT_BITS, WEIGHT_BITS
from rtl.crossbar_tile import CrossbarTile

from .handshake import cycles_from_reset

__all__ = ["tile_equivalence_proof", "TILE_CASES", "cycles_to_done"]


# (name, config): what closes in minutes.
TILE_CASES = (
    ("tile_1x1_d8", AccelConfig(tiles=1, rows=1, cols=1, cell_bits=2, dac_bits=8)),
)


def cycles_to_done(config):
    """Reset to the cycle after `done`: the rows programmed, the vector staged, started,
    converted (`golden.timing`), and a margin of 2."""
    c = config
    return c.rows * tile_program_cycles(c, 1) + 2 + tile_mvm_cycles(c) + 2


def tile_equivalence_proof(config):
    c = config
    if not c.is_lossless:
        raise ValueError(f"only a lossless tile has the exact product as its spec, not {c.name}")
    m = Module()
    m.submodules.dut = dut = CrossbarTile(c)
    m.d.comb += Assume(~ResetSignal())
    x = [Signal(signed(INPUT_BITS), name=f"x{r}") for r in range(c.rows)]
    w = [[Signal(signed(WEIGHT_BITS), name=f"w{r}_{col}") for col in range(c.cols)]
         for r in range(c.rows)]
    offset_inputs = Signal(name="offset")
    for value in [*x, *(v for row in w for v in row), offset_inputs]:
        m.d.comb += value.eq(AnyConst(value.shape()))

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
        m.d.comb += [dut.start.eq(1), dut.offset_inputs.eq(offset_inputs)]
        m.d.sync += started.eq(1)
    with m.If(dut.done):
        m.d.sync += finished.eq(1)

    applied = [Mux(offset_inputs, x[r] + 128, x[r]) for r in range(c.rows)]
    expected = [sum(applied[r] * w[r][col] for r in range(c.rows)) for col in range(c.cols)]
    m.d.comb += [Assert(~dut.done | (dut.result[col] == expected[col]))
                 for col in range(c.cols)]
    m.d.comb += Assert((cycles_from_reset(m, cycles_to_done(c)) < cycles_to_done(c)) | finished)
    return m
