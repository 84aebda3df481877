"""The runtime's targets and `compare_runs`: the golden target's run equals the int8
reference, two runs of the same samples compare equal, and each kind of difference a
backend could introduce is named. The board target's refusal of a missing port is one
line. The golden target's stacked run (equal batches side by side on a `DeviceStack`)
equals its batch-after-batch run in everything `compare_runs` checks. (The RTL target is
checked against golden in tests/test_network_rtl.py.)"""

import copy

import numpy as np
import pytest

from firmware.compiler.build import build_executable
from firmware.runtime.run import compare_runs
from firmware.runtime.targets import BoardError, BoardTarget, GoldenTarget
from firmware.runtime.driver import Driver
from firmware.runtime.transports import GoldenBus
from golden import AccelConfig
from golden.device import Device, DeviceStack


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


@pytest.mark.parametrize("change, expected", [
    (lambda x: x.astype(np.float64) + 0.5, "samples must be integers (int8 values), not float64"),
    (lambda x: _with(x, (3, 7), 128), "sample 3 holds 128 at index (7,): int8 samples lie in "
                                      "-128..127 (1 values outside)"),
    (lambda x: x[:0], "no samples to run")])
def test_samples_that_are_not_int8_are_refused_by_name(two_runs, change, expected):
    """A value outside int8 would reach amem as its low 8 bits: a silently wrong sample."""
    build, x_q, _, _ = two_runs
    with pytest.raises(ValueError) as refused:
        GoldenTarget().run(build.executable, change(x_q))
    assert str(refused.value) == expected


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


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


def _stack_cases(sub_batched_mlp):
    from firmware.frontend.network import Add, Dense, Network
    from tessera.experiments.digits import MODELS

    rng = np.random.default_rng(11)
    mlp = Network((Dense("hidden", rng.normal(0, 0.3, (32, 16)), rng.normal(0, 0.1, 16)),
                   Dense("out", rng.normal(0, 0.3, (16, 10)), np.zeros(10), relu=False)))
    residual = Network((Dense("fc0", rng.normal(0, 0.2, (64, 48)), rng.normal(0, 0.1, 48)),
                        Dense("fc1", rng.normal(0, 0.2, (48, 48)), rng.normal(0, 0.1, 48)),
                        Add("res", ("fc1", "fc0"), relu=True),
                        Dense("out", rng.normal(0, 0.3, (48, 10)), np.zeros(10), relu=False)))
    cnn = MODELS[1].build(rng)
    build_wide, chunked = sub_batched_mlp
    wide = build_wide(rng)
    return {"two segments": (mlp, (32,), AccelConfig(wmem_depth=16), 1 << 30),
            # three chunks of "wide" in sub-batches of 5, "out" at the full batch
            "chunks in sub-batches": (wide, (128,), chunked, 1 << 30),
            # ... two at a time: three sub-batches in a pair and one alone
            "chunks in sub-batches, stacks of two": (wide, (128,), chunked,
                                                     2 * DeviceStack.device_bytes(chunked)),
            "residual, amem-bound": (residual, (64,), AccelConfig(amem_depth=64), 1 << 30),
            "CNN, stacks of two": (cnn, (8, 8, 1), AccelConfig(),
                                   2 * DeviceStack.device_bytes(AccelConfig()))}


@pytest.mark.parametrize("case", ["two segments", "chunks in sub-batches",
                                  "chunks in sub-batches, stacks of two", "residual, amem-bound",
                                  "CNN, stacks of two"])
def test_a_stacked_golden_run_equals_batch_after_batch(case, sub_batched_mlp):
    network, shape, config, stack_bytes = _stack_cases(sub_batched_mlp)[case]
    rng = np.random.default_rng(3)
    build = build_executable(network, config, rng.uniform(0, 1, (32, *shape)))
    exe = build.executable
    x_q = exe.input.quantize(rng.uniform(0, 1, (5 * exe.batch + 3, *shape)))
    stacked = GoldenTarget(stack_bytes=stack_bytes)
    assert isinstance(stacked._device(exe, len(x_q)), DeviceStack)
    one_by_one = GoldenTarget(stack_bytes=0)
    assert isinstance(one_by_one._device(exe, len(x_q)), Device)
    expected, actual = one_by_one.run(exe, x_q), stacked.run(exe, x_q)
    assert compare_runs(expected, actual) == []
    assert np.array_equal(actual.outputs, build.quantized.forward(x_q))
    assert actual.runs == expected.runs == sum(len(exe.schedule(b)) for b in actual.batches) > 6


def test_lockstep_needs_a_bus_that_drives_several_devices():
    driver = Driver(GoldenBus(Device(AccelConfig())))
    with pytest.raises(ValueError, match="at most 1 devices at once, not 2"):
        driver.lockstep(2)
