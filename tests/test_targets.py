"""The runtime's targets and `compare_runs`: the golden target's run equals the int8
reference, two runs of the same samples compare equal, and each kind of difference a
backend could introduce is named. The board target's refusal of a missing port is one
line. (The RTL target is checked against golden in tests/test_network_rtl.py.)"""

import copy

import numpy as np
import pytest

from firmware.compiler.build import build_executable
from firmware.runtime.run import compare_runs
from firmware.runtime.targets import BoardError, BoardTarget, GoldenTarget
from golden import AccelConfig


@pytest.fixture(scope="module")
def two_runs():
    from firmware.frontend.network import Dense, Network

    rng = np.random.default_rng(5)
    network = Network((Dense("hidden", rng.normal(0, 0.3, (32, 16)), rng.normal(0, 0.1, 16)),
                       Dense("out", rng.normal(0, 0.3, (16, 10)), np.zeros(10), relu=False)))
    x = rng.uniform(0, 1, (11, 32))
    build = build_executable(network, AccelConfig(wmem_depth=16), x)   # 2 segments
    x_q = build.executable.input.quantize(x)
    first, second = (GoldenTarget().run(build.executable, x_q) for _ in range(2))
    return build, x_q, first, second


def test_golden_target_runs_the_int8_reference(two_runs):
    build, x_q, run, _ = two_runs
    assert np.array_equal(run.outputs, build.quantized.forward(x_q))
    assert len(build.executable.segments) == 2 and sum(run.batches) == len(x_q)


def test_the_same_run_twice_compares_equal(two_runs):
    _, _, first, second = two_runs
    assert compare_runs(first, second) == []


def _changed(run, change):
    other = copy.deepcopy(run)
    change(other)
    return other


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.outputs.__setitem__((3, 7), r.outputs[3, 7] + 1),
     "outputs: 1 of 110 values differ, first sample 3 output 7"),
    (lambda r: r.counters.__setitem__("adc_conversions", r.counters["adc_conversions"] - 1),
     "counters adc_conversions:"),
    (lambda r: r.setup_counters.__setitem__("cycles", 0), "setup_counters cycles: 0"),
    (lambda r: r.host_words["read"].__setitem__("amem", r.host_words["read"]["amem"] + 4),
     "host words read amem:"),
    (lambda r: r.batches.append(1), "batches:"),
    (lambda r: setattr(r, "runs", r.runs + 1), "runs:"),
])
def test_each_difference_is_named(two_runs, change, expected):
    _, _, run, _ = two_runs
    problems = compare_runs(run, _changed(run, change))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_board_target_names_a_missing_port(two_runs):
    build, x_q, _, _ = two_runs
    with pytest.raises(BoardError, match="cannot open the board's serial port /dev/tessera-none"):
        BoardTarget("/dev/tessera-none").run(build.executable, x_q)


def test_board_target_over_a_serial_port_equals_golden(two_runs, fake_board):
    build, x_q, golden, _ = two_runs
    board = fake_board(build.executable.config)
    run = BoardTarget(board.port).run(build.executable, x_q)
    assert compare_runs(golden, run) == []
    assert np.array_equal(run.outputs, build.quantized.forward(x_q))
    assert board.frames > 0


def test_a_board_that_stops_answering_is_one_line(two_runs):
    """A port that takes requests and never replies (a pseudo-terminal with no one behind
    it): the first bridge frame times out and the target says so, naming the port."""
    import os

    build, x_q, _, _ = two_runs
    master, slave = os.openpty()
    port = os.ttyname(slave)
    with pytest.raises(BoardError, match=f"the board at {port}: bus read at .* no response"):
        BoardTarget(port, timeout_s=0.2).run(build.executable, x_q)
    os.close(master)
    os.close(slave)
