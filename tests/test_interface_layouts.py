"""Each interface word is declared once, in golden; the RTL's layouts are derived from it.
This checks the derivation field by field, and that a word golden packs reads back the
same through the Amaranth layout (a View in the simulator), so the two cannot drift."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed as signed_shape, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from golden.device import QuantParams, pack_quant_params
from golden import AccelConfig
from golden.interface import (QPARAM_FIELDS, STATUS_FIELDS, memory_windows, pack_fields,
                              unpack_fields)
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


def test_a_register_word_unpacks_as_the_rtl_layout_reads_it():
    """`unpack_fields` of one word (plain integers: the driver's status path) against the
    RTL's view of the same word, signed fields included."""
    rng = np.random.default_rng(7)
    signed = {"low": (0, 5, True), "mid": (5, 11, False), "high": (16, 16, True)}
    layout = data.StructLayout({"low": signed_shape(5), "mid": unsigned(11),
                                "high": signed_shape(16)})
    for word in rng.integers(0, 1 << 32, 20).tolist():
        assert unpack_fields(STATUS_FIELDS, word) == read_through(status_layout(), word,
                                                                  STATUS_FIELDS)
        assert unpack_fields(signed, word) == read_through(layout, word, signed)


@pytest.mark.parametrize("window", memory_windows(AccelConfig()).values(), ids=lambda w: w.name)
def test_lane_values_wrap_as_their_words_do(window):
    """`MemoryWindow.wrap` (the golden bus's lane values) against packing into words and
    unpacking again, for values far outside a lane."""
    entries = np.random.default_rng(8).integers(-(1 << 40), 1 << 40, (6, window.lanes))
    for signed in (True, False):
        words = window.unpack(window.pack(entries), signed=signed)
        assert np.array_equal(window.wrap(entries, signed), words)
        # the golden bus's store: in the lane's own type, already-narrow values as given
        narrow = window.lane_values(entries, signed)
        assert np.array_equal(narrow, words)
        assert window.lane_values(narrow, signed) is narrow
