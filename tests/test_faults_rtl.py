"""Stuck cells in the RTL (injected through the simulation-only ``stuck`` port) against the
golden device with the same fault map, on random programs; and the RTL built without
fault injection has no trace of it."""

import pytest

from golden import AccelConfig
from golden.faults import FaultMap
from sim.accelerator import run_accelerator_check
from sim.check_configs import CONFIGS

FAULTY_CONFIGS = ("default_tiles", "lossy_shared_adc", "narrow_cells_shifted_adc",
                  "twelve_tiles_one_step")
SLOW = {"default_tiles"}         # its build takes ~2.5 min; the others cover its paths
FRACTION = 0.01
PROGRAMS = 60       # x 3 configs (4 with slow) = 180 random programs with stuck cells


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in FAULTY_CONFIGS])
def test_rtl_with_stuck_cells_matches_golden(name, record_property):
    config = CONFIGS[name]
    faults = FaultMap.random(config, FRACTION, seed=FAULTY_CONFIGS.index(name) + 1)
    assert len(faults.faulty) > 0
    run = run_accelerator_check(config, programs=PROGRAMS, seed=FAULTY_CONFIGS.index(name) + 31,
                                order=("random_programs",), faults=faults)
    figures = run.results.get("random_programs", {})
    record_property("rtl_check", (
        f"faulty accelerator {name} ({config.name}): {len(faults.faulty)} stuck cells "
        f"({faults.fraction:.2%}), {figures.get('programs')} random programs, "
        f"{figures.get('entries_compared')} memory entries compared, "
        f"{figures.get('output_mismatches')} output / {figures.get('counter_mismatches')} "
        f"counter / {figures.get('status_mismatches')} status mismatches"))
    assert run.tests == 1 and run.failed == 0, run.log_tail()
    assert figures["programs"] == PROGRAMS
    assert figures["output_mismatches"] == figures["counter_mismatches"] == 0


def test_the_comparison_sees_stuck_cells():
    """The same faulty RTL against a fault-free golden device: outputs differ."""
    config = CONFIGS["narrow_cells_shifted_adc"]
    faults = FaultMap.random(config, 0.05, seed=7)
    run = run_accelerator_check(config, programs=20, seed=5, order=("random_programs",),
                                faults=faults, golden_faults=FaultMap.none(config))
    figures = run.results.get("random_programs", {})
    assert figures["output_mismatches"] > 0, run.log_tail()
    assert figures["counter_mismatches"] == 0


def test_a_bitstream_design_has_no_fault_port(tmp_path):
    """Fault injection adds one input port, a state per cell (2 sides x 4 slices x 4 rows
    x 2 columns x 2 bits), and the design built without it has none."""
    from rtl import Accelerator, generate_verilog
    from sim.runner import verilog_ports

    config = AccelConfig(tiles=1, rows=4, cols=2, imem_depth=4, wmem_depth=4, amem_depth=4,
                         psum_depth=4, qmem_depth=4)
    plain = generate_verilog(Accelerator(config), tmp_path / "plain", "accelerator")
    faulty = generate_verilog(Accelerator(config, fault_injection=True), tmp_path / "faulty",
                              "accelerator")
    assert "stuck" not in plain.read_text()
    assert set(verilog_ports(faulty)) - set(verilog_ports(plain)) == {"stuck"}
    assert "input [127:0] stuck;" in faulty.read_text()
