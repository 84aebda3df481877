"""Real bitstreams, one small config per FPGA family, with the YoWASP tools from PyPI.

Full-size builds (the boards' configs in rtl/boards.py) are bench/fpga_builds.py: tens of
minutes each here."""

import pytest

from golden import AccelConfig
from rtl.boards import BOARDS
from rtl.fpga_build import build_board

SMALL_MEMORIES = dict(imem_depth=16, wmem_depth=8, amem_depth=16, psum_depth=16, qmem_depth=4)
# The UP5K's 5,280 LCs hold little beyond the fixed logic (counters, CSRs, bridge,
# requantiser, the sequencer's MVM engines): one tile of 2x1 is 5,234 LCs (4x1: 5,413).
SMALL = {"icebreaker": AccelConfig(tiles=1, rows=2, cols=1, **SMALL_MEMORIES),
         "ulx3s": AccelConfig(tiles=1, rows=4, cols=1, **SMALL_MEMORIES)}


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_small_config_builds_and_meets_timing(board, tmp_path, record_property):
    report = build_board(board, SMALL[board], tmp_path, log=lambda message: None)
    assert report.bitstream.exists() and report.bitstream.stat().st_size > 10_000
    logic = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}[BOARDS[board][2]]
    used, available = report.resources[logic]
    assert 0 < used <= available
    assert all(u <= a for u, a in report.resources.values())
    assert report.target_mhz > 0 and report.fmax_mhz >= report.target_mhz
    record_property("rtl_check", "; ".join(report.lines()))
