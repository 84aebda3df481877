"""Each interface word is declared once, in golden; the RTL's layouts are derived from it.
This checks the derivation field by field, and that a word golden packs reads back the
same through the Amaranth layout (a View in the simulator), so the two cannot drift."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from golden.device import QuantParams, pack_quant_params
from golden.interface import QPARAM_FIELDS, STATUS_FIELDS, pack_fields
from golden.isa import FIELDS, encode, mvm
from rtl.layouts import instruction_layout, qparam_layout, status_layout

TABLES = [("instruction", instruction_layout, {n: (l, w, False) for n, (l, w) in FIELDS.items()}, 128),
          ("qparam", qparam_layout, QPARAM_FIELDS, 128), ("status", status_layout, STATUS_FIELDS, 32)]


@pytest.mark.parametrize("name,layout,table,bits", TABLES, ids=[t[0] for t in TABLES])
def test_the_rtl_layout_places_every_golden_field(name, layout, table, bits):
    layout = layout()
    assert layout.size == bits
    named = {field: (layout[field].offset, layout[field].shape.width, layout[field].shape.signed)
             for field in table}
    assert named == table
    # the rest is padding only
    covered = sum(width for _, width, _ in table.values())
    padding = [field for field, _ in layout if field not in table]
    assert all(field.startswith("unused_") for field in padding)
    assert covered + sum(layout[f].shape.width for f in padding) == bits


def read_through(layout, value, fields):
    word, wire = Signal(layout.size), Signal(layout.size)
    m = Module()
    m.d.comb += wire.eq(word)             # the field is read from the design's wire
    view = data.View(layout, wire)
    seen = {}

    async def bench(ctx):
        ctx.set(word, value)
        for field in fields:
            seen[field] = ctx.get(getattr(view, field))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_words_golden_packs_read_back_through_the_rtl_layouts():
    params = QuantParams(bias=-123456, multiplier=(1 << 31) - 5, shift=17, zero_point=-7,
                         clamp_min=-100, clamp_max=99)
    words = pack_quant_params(params)
    value = sum(w << (32 * i) for i, w in enumerate(words))
    assert read_through(qparam_layout(), value, QPARAM_FIELDS) == {
        "bias": -123456, "multiplier": (1 << 31) - 5, "shift": 17, "zero_point": -7,
        "clamp_min": -100, "clamp_max": 99}
    status = pack_fields(STATUS_FIELDS, busy=0, done=1, error=1, error_code=3, error_pc=4095)
    assert read_through(status_layout(), status, STATUS_FIELDS) == {
        "busy": 0, "done": 1, "error": 1, "error_code": 3, "error_pc": 4095}
    instruction = mvm(tile=2, count=300, src=17, dst=4000, src_stride=3, dst_stride=5,
                      k_stride=7, n_stride=9, ktiles=2, ngroups=4, replicas=8, adc_shift=6,
                      accumulate=True)
    value = sum(w << (32 * i) for i, w in enumerate(encode(instruction)))
    assert read_through(instruction_layout(), value, FIELDS) == {
        name: getattr(instruction, name) for name in FIELDS}
