"""The RTL accelerator over AXI4-Lite against the golden device model: outputs, counters,
status, error codes and recovery, on five configs."""

import pytest

from golden import AccelConfig
from sim.accelerator import run_accelerator_check
from sim.check_configs import CONFIGS, DEEP_LOSSY, SMALL_MEMORIES

# The checks' configs and the network tests' lossy one (deep memories, a 4-bit ADC).
ACCELERATOR_CONFIGS = {**CONFIGS, "deep_lossy": DEEP_LOSSY}
PROGRAMS = 130      # x 6 configs = 780 random programs a run
# The tiles keep their weights across tests in one simulation: one config runs the error
# test first, so that the random programs find tiles an earlier test programmed.
ERRORS_FIRST = {"default_tiles"}


@pytest.mark.parametrize("name", ACCELERATOR_CONFIGS)
def test_accelerator_matches_golden(name, record_property):
    config = ACCELERATOR_CONFIGS[name]
    order = ("errors", "random_programs") if name in ERRORS_FIRST else ("random_programs", "errors")
    run = run_accelerator_check(config, programs=PROGRAMS,
                                seed=list(ACCELERATOR_CONFIGS).index(name) + 11,
                                order=order)
    figures = run.results.get("random_programs", {})
    errors = run.results.get("errors", {})
    record_property("rtl_check", (
        f"accelerator {name} ({config.name}): {figures.get('programs')} random programs, "
        f"{figures.get('instructions')} instructions, {figures.get('device_cycles')} device cycles, "
        f"{figures.get('entries_compared')} memory entries compared, "
        f"{figures.get('output_mismatches')} output / {figures.get('counter_mismatches')} counter / "
        f"{figures.get('status_mismatches')} status mismatches; {errors.get('cases')} error "
        f"programs, {errors.get('flipped_bit_programs')} flipped-bit instructions "
        f"({errors.get('flipped_refused')} refused) and {errors.get('bus_errors')} SLVERR "
        "accesses checked"))
    assert run.tests == 2 and run.failed == 0, run.log_tail()
    assert figures["programs"] == PROGRAMS
    assert figures["output_mismatches"] == figures["counter_mismatches"] == 0
    assert figures["status_mismatches"] == 0
    # Four opcodes x the 124 bits past the opcode; some flips are refused, some run.
    assert errors["flipped_bit_programs"] == 4 * 124
    assert 0 < errors["flipped_refused"] < errors["flipped_bit_programs"]
    # Functional coverage (sim/isa_coverage.py): every opcode run, every error code met.
    coverage = run.results["isa_coverage"]
    bins = [(point, b) for point, hits in coverage.items() for b in hits]
    missed = [f"{point}: {b}" for point, b in bins if not coverage[point][b]]
    record_property("isa_coverage", (
        f"ISA coverage on {name}: {len(bins) - len(missed)} of {len(bins)} bins hit; "
        f"not hit: {'; '.join(missed) or 'none'}"))
    assert all(coverage["isa.opcode"].values()), coverage["isa.opcode"]
    # OVERLAP needs requantizing MVMs, which a config with fewer requantisers refuses
    reachable = {b: hits for b, hits in coverage["isa.error"].items()
                 if b != "OVERLAP" or config.requantizing_mvms}
    assert all(reachable.values()), coverage["isa.error"]


def test_sixty_four_tiles_elaborate(tmp_path):
    """64 tiles (of 8x4) elaborate into Verilog, each tile instantiated once."""
    import re

    from rtl import Accelerator, generate_verilog

    config = AccelConfig(tiles=64, rows=8, cols=4, **SMALL_MEMORIES)
    verilog = generate_verilog(Accelerator(config), tmp_path, "accelerator").read_text()
    tiles = set(re.findall(r"\btile(\d+)\b", verilog))
    assert tiles == {str(t) for t in range(64)}
