"""Products made ahead (`golden.lookahead`): a device told the runs to come ends every run
as a device that was not told, and as the products worked out by hand.

The twin without expectations is the device every other test checks (against the
instruction-by-instruction interpreter and the RTL); the hand values are int64 NumPy
products of the inputs and the weights each run was given."""

import asyncio

import numpy as np
import pytest

from firmware.compiler.build import build_executable
from firmware.frontend.train import init_mlp
from firmware.runtime import driver as driver_module
from firmware.runtime.run import compare_runs
from firmware.runtime.targets import GoldenTarget
from firmware.runtime.transports.golden_bus import GoldenBus
from golden import AccelConfig, isa, lookahead
from golden.device import Device, DeviceStack
from golden.lookahead import Expected
from sim.random_programs import random_memories, random_program

CONFIG = AccelConfig()
VECTORS = 64                    # a run's vectors: enough to be made ahead
# PROGRAM tile 0 from wmem rows 0.., then every vector of amem 0..63 into psum 0..63
PRODUCT = np.array(isa.encode_program([isa.program(0, 0), isa.mvm(0, VECTORS, 0, 0),
                                       isa.halt()]), np.int64)


@pytest.fixture
def every_product(monkeypatch):
    """Every product that can be made ahead is: no bounds on vectors, columns or terms
    (the network test below keeps the real ones)."""
    monkeypatch.setattr(lookahead, "MIN_VECTORS", 1)
    monkeypatch.setattr(lookahead, "MAX_COLUMNS", 1 << 20)
    monkeypatch.setattr(lookahead, "MIN_TERMS", 1)


def _weights(rng):
    return rng.integers(-128, 128, (CONFIG.rows, CONFIG.cols)).astype(np.int8)


def _run(device, program, weights):
    """The host's part of a run: its weights into wmem (tile 0's lane), its program, go."""
    device.wmem[:CONFIG.rows, :CONFIG.cols] = weights
    device.load_program(program)
    device.run()
    return device.psum[:VECTORS].astype(np.int64)


def _told(rng, runs):
    """A device with random inputs in amem 0..63, told `runs` runs of PRODUCT, each on
    random weights: (the device, its inputs in int64, each run's weights)."""
    weights = [_weights(rng) for _ in range(runs)]
    device = Device(CONFIG)
    device.amem[:VECTORS] = rng.integers(-128, 128, (VECTORS, CONFIG.rows))
    device.expect([Expected(PRODUCT, ((0, w),)) for w in weights])
    return device, device.amem[:VECTORS].astype(np.int64), weights


def test_later_runs_take_products_made_at_the_first(every_product):
    device, x, weights = _told(np.random.default_rng(0), 3)
    for w in weights:
        assert np.array_equal(_run(device, PRODUCT, w), x @ w.astype(np.int64))
    assert (device.ahead.made, device.ahead.taken) == (2, 2)


def test_a_host_write_to_the_inputs_drops_what_was_made_from_them(every_product):
    rng = np.random.default_rng(1)
    device, _, weights = _told(rng, 3)
    bus = GoldenBus(device)
    _run(device, PRODUCT, weights[0])
    new = rng.integers(-128, 128, (2, CONFIG.rows)).astype(np.int8)
    asyncio.run(bus.store_entries("amem", 10, new, CONFIG.rows))
    x = device.amem[:VECTORS].astype(np.int64)
    assert np.array_equal(x[10:12], new)
    for w in weights[1:]:
        assert np.array_equal(_run(device, PRODUCT, w), x @ w.astype(np.int64))
    assert device.ahead.taken == 1      # the third, made again at the second from new inputs


def test_weights_other_than_declared_and_runs_not_declared_are_not_trusted(every_product):
    rng = np.random.default_rng(2)
    device, x, declared = _told(rng, 4)
    _run(device, PRODUCT, declared[0])
    other = _weights(rng)                                   # not what run 2 declared
    assert np.array_equal(_run(device, PRODUCT, other), x @ other.astype(np.int64))
    # a run nobody declared (another program, writing amem's inputs) drops the rest
    requantize = np.array(isa.encode_program([isa.requant(VECTORS, 0, 0, 0), isa.halt()]),
                          np.int64)
    device.qmem[0] = 0
    device.load_program(requantize)
    device.run()
    x = device.amem[:VECTORS].astype(np.int64)
    assert not device.ahead.ready
    for w in declared[2:]:
        assert np.array_equal(_run(device, PRODUCT, w), x @ w.astype(np.int64))


def test_what_a_walk_found_is_remembered_for_the_same_runs_and_wmem(every_product,
                                                                   monkeypatch):
    """The same declared runs on a second device with the same wmem reuse what the first
    walk found; on a device whose wmem differs in lanes no declared write covers (the
    bytes each result is checked against), they walk again, and every result is taken."""
    rng = np.random.default_rng(3)
    weights = [_weights(rng) for _ in range(3)]
    runs = [Expected(PRODUCT, ((0, w),)) for w in weights]
    inputs = rng.integers(-128, 128, (VECTORS, CONFIG.rows))
    walks = []
    real_walk = lookahead.ProductsAhead._walk_members
    monkeypatch.setattr(lookahead.ProductsAhead, "_walk_members",
                        lambda self, *arguments: walks.append(1) or real_walk(self, *arguments))
    for other_lanes, expected_walks in ((0, 1), (0, 1), (7, 2)):
        device = Device(CONFIG)
        device.amem[:VECTORS] = inputs
        device.wmem[:, CONFIG.cols:] = other_lanes
        device.expect(runs)
        for w in weights:
            assert np.array_equal(_run(device, PRODUCT, w), inputs @ w.astype(np.int64))
        assert (device.ahead.made, device.ahead.taken) == (2, 2)
        assert len(walks) == expected_walks


@pytest.mark.parametrize("devices", [1, 3])
def test_random_programs_end_as_on_a_device_told_nothing(devices, every_product):
    """40 sequences of 5 random programs (a third of them the previous one again, on new
    weights, as chained segments are), each with its own random wmem and sometimes a
    host write into amem before it: every memory, the tiles' weights and the counters
    after every run equal those of a twin that was not told the runs to come. Every
    product that can be is made ahead here (`every_product`)."""
    rng = np.random.default_rng(3)
    made = 0
    for _ in range(40):
        told, twin = ((DeviceStack(CONFIG, devices) if devices > 1 else Device(CONFIG))
                      for _ in range(2))
        memories = random_memories(CONFIG, rng)
        for device in (told, twin):
            for name, array in memories.items():
                if name in ("amem", "psum"):
                    array = np.broadcast_to(array, getattr(device, name).shape)
                getattr(device, name)[...] = array
        programs, wmems, writes = [], [], []
        for index in range(5):
            again = programs and rng.random() < 0.33
            programs.append(programs[-1] if again else np.array(
                isa.encode_program(random_program(CONFIG, rng, 12)), np.int64))
            wmems.append(rng.integers(-128, 128, told.wmem.shape).astype(np.int8))
            writes.append((int(rng.integers(0, CONFIG.amem_depth - 8)),
                           rng.integers(-128, 128, (8, CONFIG.rows)).astype(np.int8))
                          if rng.random() < 0.3 else None)
        told.expect([Expected(p, ((0, w),)) for p, w in zip(programs, wmems)])
        buses = [GoldenBus(told), GoldenBus(twin)]
        for program, wmem, write in zip(programs, wmems, writes):
            results = []
            for device, bus in zip((told, twin), buses):
                if write is not None:
                    asyncio.run(bus.store_entries("amem", write[0], write[1], CONFIG.rows))
                device.wmem[:] = wmem
                device.load_program(program)
                results.append(device.run())
            assert results[0].counters == results[1].counters
            for name in ("amem", "psum", "tile_weights"):
                assert np.array_equal(getattr(told, name), getattr(twin, name)), name
        made += told.ahead.made
    assert made > 0


def test_a_chained_network_equals_the_reference_and_a_run_told_nothing(monkeypatch):
    """MLP 600-700-10 on the default crossbar: its 700-wide layer runs in chains of
    segments on the same inputs, 600 terms a product. 128 samples with the runs declared
    equal the int8 forward pass, and equal a run that declares nothing in every counter
    and host word; products were made ahead and taken."""
    rng = np.random.default_rng(4)
    network = init_mlp([600, 700, 10], rng)
    build = build_executable(network, CONFIG, rng.uniform(0, 1, (64, 600)))
    x_q = build.quantized.input.quantize(rng.uniform(0, 1, (128, 600)))
    made = []
    real_init = lookahead.ProductsAhead.__init__

    def recording_init(self, *arguments):
        real_init(self, *arguments)
        made.append(self)

    monkeypatch.setattr(lookahead.ProductsAhead, "__init__", recording_init)
    told = GoldenTarget().run(build.executable, x_q)
    assert np.array_equal(told.outputs, build.quantized.forward(x_q))
    assert sum(p.made for p in made) > 0 and sum(p.taken for p in made) == sum(
        p.made for p in made)
    monkeypatch.setattr(driver_module.Driver, "expect", lambda self, runs: None)
    assert compare_runs(GoldenTarget().run(build.executable, x_q), told) == []
