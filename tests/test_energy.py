"""The energy model against hand derivations from its sources."""

import pytest

from golden import AccelConfig, isa
from golden.device import Device
from golden.energy import PRESETS, energy_breakdown, event_energies

ISAAC = PRESETS["isaac_reram_32nm"]
# ISAAC's crossbar: 128x128, 2-bit cells, a 1-bit DAC, one 8-bit ADC for 128 columns.
ISAAC_CONFIG = AccelConfig(tiles=1, rows=128, cols=128, adc_bits=8, adc_share=128)


def test_isaac_energy_per_mac_is_within_20_percent_of_table_6():
    """ISAAC Table 6, per IMA: ADC 16 mW, DAC 4 mW, crossbars 2.4 mW, shift-add 0.2 mW, for
    8 crossbars of 128x128 read every 100 ns with a 1-bit input and 2-bit cells: 131,072
    1b x 2b partial products per 100 ns. An 8b x 8b MAC is 8 steps x 4 slices of them:
    (16 + 4 + 2.4 + 0.2) mW x 100 ns / 131,072 x 32 = 0.552 pJ."""
    hand = (16 + 4 + 2.4 + 0.2) * 1e-3 * 100e-9 / (8 * 128 * 128) * 32
    device = Device(ISAAC_CONFIG)
    device.load_program(isa.encode_program([isa.program(0, 0), isa.mvm(0, 1, 0, 0), isa.halt()]))
    run = device.run()
    energy = energy_breakdown(run.counters, ISAAC, ISAAC_CONFIG)
    tile = sum(energy[c] for c in ("ADC", "DAC", "crossbar", "shift-add")) \
        - run.counters["cell_writes"] * ISAAC.cell_write_pj * 1e-12
    per_mac = tile / (128 * 128)
    assert per_mac == pytest.approx(hand, rel=0.20), (per_mac, hand)


def test_isaac_events_from_table_6():
    """Each event by hand: DAC 4 mW / 1,024 DACs x 100 ns; ADC 16 mW / 8 / 1.2 GS/s;
    a cell 0.3 mW x 100 ns / 16,384; a shift-add 0.2 mW / 9.6 GS/s (16 bits)."""
    config = AccelConfig(rows=128, cols=128, tiles=1, adc_bits=8, dac_bits=1)
    energies = event_energies(ISAAC, config)
    assert energies["dac_conversions"] == pytest.approx(0.390625)
    assert energies["adc_conversions"] == pytest.approx(1.67, rel=1e-3)
    assert energies["cell_reads"] == pytest.approx(30 / 16384)
    assert energies["shift_adds"] == pytest.approx(0.2e-3 / 9.6e9 * 1e12 * config.result_bits / 16)
    # amem entry: 128 int8 lanes = 1,024 bits at 20.45 pJ per 256 bits.
    assert energies["amem_reads"] == pytest.approx(20.45 * 4)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_adc_bits_cost_energy_by_the_models_ratio(preset):
    """8 -> 6 bits: ISAAC's table (Saberi scaling) gives 1.20 / 1.67; Walden's FoM 2**-2."""
    eight, six = (event_energies(PRESETS[preset], AccelConfig(rows=128, cols=16, adc_bits=b))
                  ["adc_conversions"] for b in (8, 6))
    expected = 0.25 if preset == "sram_imc_65nm" else 1.20 / 1.67
    assert six / eight == pytest.approx(expected)


def test_dac_cells_and_memories_scale_with_the_config():
    base = event_energies(ISAAC, AccelConfig())
    wide_dac = event_energies(ISAAC, AccelConfig(dac_bits=4))
    assert wide_dac["dac_conversions"] == pytest.approx(8 * base["dac_conversions"])
    # A cell costs the same whatever it stores; the count of cell reads carries cell_bits.
    assert event_energies(ISAAC, AccelConfig(cell_bits=8))["cell_reads"] == base["cell_reads"]
    wide = event_energies(ISAAC, AccelConfig(rows=32, cols=16))
    assert wide["amem_reads"] == pytest.approx(2 * base["amem_reads"])      # 32 vs 16 lanes
    assert wide["psum_reads"] == pytest.approx(base["psum_reads"])          # cols the same


def test_reram_macro_preset_recovers_its_published_efficiency():
    """At its own shape (1-bit cells, 1-bit DAC, 8-bit ADC, 16x16), the 22 nm preset's
    tile energy per 8b x 8b MAC is the macro's 15.6 TOPS/W: 2 / 15.6e12 J."""
    preset = PRESETS["reram_macro_22nm"]
    config = AccelConfig(cell_bits=1, dac_bits=1, adc_bits=8)
    e = event_energies(preset, config)
    per_product = (e["adc_conversions"] * 16 * 8 * 8 + e["dac_conversions"] * 16 * 8
                   + e["cell_reads"] * 2 * 16 * 16 * 8 * 8
                   + e["shift_adds"] * 16 * 8 * 8 * 16 / config.result_bits)
    assert per_product / 256 == pytest.approx(2 / 15.6e12 * 1e12, rel=1e-9)


def test_host_link_cycles_follow_the_uart_framing_by_hand():
    from golden.host_link import HOST_LINKS
    # 25 MHz / 115,200 baud = 217.01 cycles a bit; 10 bits a byte; a 255-word write is
    # 8 + 1,020 bytes and its reply 4: 1,032 bytes for 255 words.
    assert HOST_LINKS["uart-ulx3s"].cycles_per_word == pytest.approx(
        25e6 / 115_200 * 10 * 1032 / 255)
    assert HOST_LINKS["uart-ulx3s"].cycles_per_word == pytest.approx(8782.7, abs=0.1)
    assert HOST_LINKS["uart-icebreaker"].cycles(255) == pytest.approx(12e6 / 115_200 * 10 * 1032)
    assert HOST_LINKS["axi-dma"].cycles(1000) == 1000


def test_the_energy_page_lists_what_the_presets_give():
    """docs/energy.md's per-event tables are `describe`'s lines for the default config,
    preset by preset: the page cannot drift from golden/energy.py."""
    import re
    from pathlib import Path

    from golden import AccelConfig
    from golden.energy import PRESETS, describe

    page = (Path(__file__).parent.parent / "docs" / "energy.md").read_text()
    tables = dict(re.findall(r"### `(\w+)`[^\n]*\n\n```text\n(.*?)```", page, re.S))
    assert sorted(tables) == sorted(PRESETS)
    for key, table in tables.items():
        assert table.splitlines() == describe(PRESETS[key], AccelConfig()), key
