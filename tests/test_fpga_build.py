"""Real bitstreams with the YoWASP tools from PyPI: the iCEBreaker's board config, a small
ULX3S config (its board config is a `slow` test: minutes of nextpnr), each checked to fit
and meet its clock."""

import pytest

from golden import AccelConfig
from rtl.boards import BOARD_CONFIGS, BOARDS
from rtl.fpga_build import build_board

SMALL_MEMORIES = dict(imem_depth=16, wmem_depth=8, amem_depth=16, psum_depth=16, qmem_depth=4)
BUILDS = [
    pytest.param("icebreaker", AccelConfig(**BOARD_CONFIGS["icebreaker"]), id="icebreaker"),
    pytest.param("ulx3s", AccelConfig(tiles=1, rows=4, cols=1, **SMALL_MEMORIES), id="ulx3s-small"),
    pytest.param("ulx3s", AccelConfig(**BOARD_CONFIGS["ulx3s"]), id="ulx3s", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("board, config", BUILDS)
def test_config_builds_and_meets_timing(board, config, tmp_path, record_property):
    report = build_board(board, config, tmp_path, log=lambda message: None)
    assert report.bitstream.exists() and report.bitstream.stat().st_size > 10_000
    logic = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}[BOARDS[board][2]]
    used, available = report.resources[logic]
    assert 0 < used <= available
    assert all(u <= a for u, a in report.resources.values())
    assert report.target_mhz > 0 and report.fmax_mhz >= report.target_mhz
    record_property("rtl_check", "; ".join(report.lines()))
