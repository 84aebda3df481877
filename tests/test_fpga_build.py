"""Real bitstreams, one small config per FPGA family, with the YoWASP tools from PyPI.

Full-size builds (the boards' configs in rtl/boards.py) are bench/fpga_builds.py: tens of
minutes each here."""

import pytest

from golden import AccelConfig
from rtl.boards import BOARDS
from rtl.fpga_build import build_board

SMALL = AccelConfig(tiles=1, rows=4, cols=1, imem_depth=16, wmem_depth=8, amem_depth=16,
                    psum_depth=16, qmem_depth=4)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_small_config_builds_and_meets_timing(board, tmp_path, record_property):
    report = build_board(board, SMALL, tmp_path, log=lambda message: None)
    assert report.bitstream.exists() and report.bitstream.stat().st_size > 10_000
    logic = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}[BOARDS[board][2]]
    used, available = report.resources[logic]
    assert 0 < used <= available
    assert all(u <= a for u, a in report.resources.values())
    assert report.target_mhz > 0 and report.fmax_mhz >= report.target_mhz
    record_property("rtl_check", "; ".join(report.lines()))
