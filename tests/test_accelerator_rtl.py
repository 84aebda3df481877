"""The RTL accelerator over AXI4-Lite against the golden device model: outputs, counters,
status, error codes and recovery, on five configs."""

import pytest

from golden import AccelConfig
from sim.accelerator import run_accelerator_check

SMALL_MEMORIES = dict(imem_depth=16, wmem_depth=64, amem_depth=32, psum_depth=32, qmem_depth=32)
CONFIGS = {
    "default_tiles": AccelConfig(**SMALL_MEMORIES),
    # and 2 requantisers for its 8 columns: a REQUANT entry in 4 passes
    "lossy_shared_adc": AccelConfig(tiles=2, rows=16, cols=8, cell_bits=4, dac_bits=2,
                                    adc_bits=AccelConfig(rows=16, cols=8, cell_bits=4,
                                                         dac_bits=2).lossless_adc_bits - 2,
                                    adc_share=2, requant_lanes=2, **SMALL_MEMORIES),
    "narrow_cells_shifted_adc": AccelConfig(tiles=3, rows=8, cols=4, cell_bits=1, dac_bits=4,
                                            adc_bits=5, adc_share=4, **SMALL_MEMORIES),
    # More than 8 tiles, and a one-step DAC: rounds set by the feeds and writes, not N.
    "twelve_tiles_one_step": AccelConfig(tiles=12, rows=8, cols=4, cell_bits=8, dac_bits=8,
                                         **SMALL_MEMORIES),
    # A wmem entry (2 tiles x 1 column) narrower than a bus word: the host writes its low
    # bits (the iCEBreaker's config found the RTL writing zeros there).
    "narrow_weight_entries": AccelConfig(tiles=2, rows=4, cols=1, **SMALL_MEMORIES),
}
PROGRAMS = 130      # x 5 configs = 650 random programs a run
# The tiles keep their weights across tests in one simulation: one config runs the error
# test first, so that the random programs find tiles an earlier test programmed.
ERRORS_FIRST = {"default_tiles"}


@pytest.mark.parametrize("name", CONFIGS)
def test_accelerator_matches_golden(name, record_property):
    config = CONFIGS[name]
    order = ("errors", "random_programs") if name in ERRORS_FIRST else ("random_programs", "errors")
    run = run_accelerator_check(config, programs=PROGRAMS, seed=list(CONFIGS).index(name) + 11,
                                order=order)
    figures = run.results.get("random_programs", {})
    errors = run.results.get("errors", {})
    record_property("rtl_check", (
        f"accelerator {name} ({config.name}): {figures.get('programs')} random programs, "
        f"{figures.get('instructions')} instructions, {figures.get('device_cycles')} device cycles, "
        f"{figures.get('entries_compared')} memory entries compared, "
        f"{figures.get('output_mismatches')} output / {figures.get('counter_mismatches')} counter / "
        f"{figures.get('status_mismatches')} status mismatches; {errors.get('cases')} error "
        f"programs and {errors.get('bus_errors')} SLVERR accesses checked"))
    assert run.tests == 2 and run.failed == 0, run.log_tail()
    assert figures["programs"] == PROGRAMS
    assert figures["output_mismatches"] == figures["counter_mismatches"] == 0
    assert figures["status_mismatches"] == 0


def test_sixty_four_tiles_elaborate(tmp_path):
    """64 tiles (of 8x4) elaborate into Verilog, each tile instantiated once."""
    import re

    from rtl import Accelerator, generate_verilog

    config = AccelConfig(tiles=64, rows=8, cols=4, **SMALL_MEMORIES)
    verilog = generate_verilog(Accelerator(config), tmp_path, "accelerator").read_text()
    tiles = set(re.findall(r"\btile(\d+)\b", verilog))
    assert tiles == {str(t) for t in range(64)}
