"""Reading nextpnr's verdicts (the builds themselves are bench/ and `tessera build`)."""

import re

import pytest

from rtl.fpga_build import parse_nextpnr_log, routing_progress

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


ROUTER2_LOG = """Info: Running router2...
Info:     iter=1 wires=120000 overused=16000 overuse=19000 archfail=NA
Info:     iter=2 wires=118000 overused=1210 overuse=1310 archfail=NA
"""


def test_routing_progress_names_the_stage_and_the_overuse():
    assert routing_progress(ROUTER2_LOG) == ("routing, router2 iteration 2: 1,210 of 118,000 "
                                             "wires overused (total overuse 1,310)")
    assert routing_progress("Info: Running Static placer...\nInfo: iter=3 steplen=1.4\n") == "placement"
    assert routing_progress("") == "start-up"
    router1 = ("Info: Routing..\nInfo:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| "
               "batch(sec) total(sec)|\nInfo:       1000 |      188        793 |  188   793 |"
               "       265|       0.09       0.09|\n")
    assert routing_progress(router1) == ("routing, router1 after 1,000 arcs routed: 265 arcs "
                                         "left, 188 routed with rip-up")


def test_a_seed_past_its_time_is_killed_and_reported(tmp_path):
    """A stand-in for nextpnr that logs two router2 iterations and never finishes: each
    seed is killed at its share of the timeout, and the error gives its progress."""
    import sys
    import time

    from rtl.fpga_build import FpgaBuildError, _place_and_route

    script = tmp_path / "fake_nextpnr.py"
    script.write_text("import sys, time\n"
                      "log = sys.argv[sys.argv.index('--log') + 1]\n"
                      f"open(log, 'w').write({ROUTER2_LOG!r})\n"
                      "time.sleep(60)\n")
    argv = [sys.executable, str(script), "--log", "tessera.tim", "--textcfg", "tessera.config"]
    started = time.monotonic()
    with pytest.raises(FpgaBuildError) as info:
        _place_and_route(argv, tmp_path, seeds=2, jobs=2, deadline=time.monotonic() + 3,
                         log=lambda message: None)
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert message.startswith("no nextpnr seed routed: seed 1 stopped by its 3 s timeout in routing")
    assert "seed 2 stopped" in message and "router2 iteration 2: 1,210 of 118,000" in message
    assert (tmp_path / "tessera.seed2.tim").exists()


@pytest.mark.parametrize("options, message", [
    (dict(router="router3"), "router must be router1 or router2, not 'router3'"),
    (dict(seeds=0), "timeout must be positive and seeds at least 1, not 900 and 0"),
    (dict(timeout=-1), "timeout must be positive and seeds at least 1, not -1 and 1"),
])
def test_bad_build_options_are_refused_before_any_work(tmp_path, options, message):
    from golden import AccelConfig
    from rtl.fpga_build import FpgaBuildError, build_board

    with pytest.raises(FpgaBuildError, match=re.escape(message)):
        build_board("icebreaker", AccelConfig(), tmp_path, log=lambda m: None, **options)
    assert not any(tmp_path.iterdir())
