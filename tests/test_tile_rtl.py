"""The RTL crossbar tile against the golden model on Verilator: values and cycles, bit-exact."""

import pytest

from golden import AccelConfig
from sim.tile import run_tile_check

VECTORS = 2000

CONFIGS = {
    "default": AccelConfig(),
    # 2 bits below lossless: the testbench counts the saturated codes, which must occur.
    "lossy_adc": AccelConfig(adc_bits=AccelConfig().lossless_adc_bits - 2),
    "shared_adc": AccelConfig(adc_share=4, dac_bits=2, cols=8),
    # Lossy with a range to choose: each vector takes a random ADC shift in 0..max_adc_shift.
    "wide_cells_shifted_adc": AccelConfig(rows=24, cols=6, cell_bits=4, dac_bits=4,
                                          adc_bits=8, adc_share=2),
    "one_shot": AccelConfig(rows=8, cols=4, cell_bits=8, dac_bits=8),
    # ISAAC's crossbar: 128x128, 2-bit cells, a 1-bit DAC, one 8-bit ADC for 128 columns.
    # Its cells sit in a memory read a column a cycle (1,024 cycles a product), so fewer
    # vectors: the build takes ~30 s, not the hours of a register array.
    "isaac_128x128": AccelConfig(tiles=1, rows=128, cols=128, adc_bits=8, adc_share=128),
}
FEWER_VECTORS = {"isaac_128x128": 64}


@pytest.mark.parametrize("name", CONFIGS)
def test_tile_matches_golden(name, record_property):
    config = CONFIGS[name]
    vectors = FEWER_VECTORS.get(name, VECTORS)
    run = run_tile_check(config, vectors=vectors, seed=list(CONFIGS).index(name) + 1)
    figures = run.results
    record_property("rtl_check", (
        f"crossbar tile {name} ({config.name}): {figures.get('vectors')} random vectors, "
        f"{figures.get('value_mismatches')} value mismatches, "
        f"{figures.get('cycle_mismatches')} cycle mismatches, "
        f"{figures.get('saturated_codes')} saturated ADC codes; elaborated and built in "
        f"{run.build_seconds:.0f} s"))
    assert run.tests == 1 and run.failed == 0, run.log_tail()
    assert figures["vectors"] == vectors
    assert figures["value_mismatches"] == figures["cycle_mismatches"] == 0
    if config.is_lossless:
        assert figures["saturated_codes"] == 0
    else:
        assert figures["shifts_used"] == list(range(config.max_adc_shift + 1))
    if name == "lossy_adc":
        assert figures["saturated_codes"] > 0
