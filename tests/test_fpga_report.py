"""Reading nextpnr's verdicts (the builds themselves are bench/ and `tessera build`)."""

from rtl.fpga_build import parse_nextpnr_log

LOG = """\
Info: Device utilisation:
Info: \t         ICESTORM_LC:   10453/   5280   197%
Info: \t        ICESTORM_RAM:      14/     30    46%
Info: \t        ICESTORM_DSP:       4/      8    50%
Info: Max frequency for clock 'clk12_0__io': 18.52 MHz (PASS at 12.00 MHz)
ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'
"""


def test_parse_nextpnr_log():
    resources, fmax, target, errors = parse_nextpnr_log(LOG)
    assert resources["ICESTORM_LC"] == (10453, 5280) and resources["ICESTORM_DSP"] == (4, 8)
    assert (fmax, target) == (18.52, 12.0)
    assert errors == ["Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'"]


def test_parse_empty_log():
    assert parse_nextpnr_log("") == ({}, 0.0, 0.0, [])
