"""A quantised network through the firmware driver on the RTL: predictions and counters
identical to the same driver on the golden model."""

import asyncio

import numpy as np
import pytest

from firmware import Driver
from firmware.runtime import run_network
from firmware.transports import GoldenBus
from golden import AccelConfig
from golden.device import Device
from sim.network import run_network_on_rtl

# Its own memory sizes, so its build never races the accelerator tests' builds.
CONFIG = AccelConfig(imem_depth=16, wmem_depth=48, amem_depth=32, psum_depth=32, qmem_depth=8)


def test_network_on_rtl_equals_golden(small_network, record_property):
    qnet, x_q = small_network(seed=9, samples=20)
    golden = asyncio.run(run_network(Driver(GoldenBus(Device(CONFIG))), qnet, x_q))
    outputs, counters = run_network_on_rtl(qnet, x_q, CONFIG, log=lambda message: None)
    record_property("rtl_check", f"network 32-16-10 on {CONFIG.name}: {len(x_q)} samples in "
                                 f"{golden.runs} batches, outputs and {len(counters)} counters "
                                 f"{'identical' if np.array_equal(outputs, golden.outputs) and counters == golden.counters else 'DIFFERENT'}")
    assert golden.runs == 3          # 8 + 8 + 4: the tail batch is compiled separately
    assert np.array_equal(golden.outputs, qnet.forward(x_q))
    assert np.array_equal(outputs, golden.outputs)
    assert counters == golden.counters


# A config of its own again (its own Verilator build).
CNN_CONFIG = AccelConfig(imem_depth=64, wmem_depth=256, amem_depth=128, psum_depth=64, qmem_depth=8)


CNNS = {
    # Host-fed 3x3 conv, a strided 2x2 conv reading the image in place (wide rows), then a
    # max pool of that wide image (MAX runs).
    "conv3x3-conv2x2/2-maxpool2-dense": [(3, 8, 1), (2, 16, 2), ("maxpool", 2)],
    # A residual add of two on-device images (a 1x1 conv's and the conv 3x3's), then a pool.
    "conv3x3-(conv1x1 + skip)-maxpool2-dense": [(3, 16, 1), ("residual",), ("maxpool", 2)],
}


@pytest.mark.parametrize("name", CNNS)
def test_cnn_on_rtl_equals_golden(record_property, name):
    from firmware.prune import prune_blocks
    from firmware.quantize import quantize
    from firmware.train import init_cnn

    rng = np.random.default_rng(12)
    network = init_cnn((6, 6, 1), CNNS[name], 10, rng)
    network, _ = prune_blocks(network, 0.5, CNN_CONFIG.rows, CNN_CONFIG.cols)
    x = rng.uniform(0, 1, (9, 6, 6, 1))
    qnet = quantize(network, x)
    x_q = qnet.input.quantize(x)
    golden = asyncio.run(run_network(Driver(GoldenBus(Device(CNN_CONFIG))), qnet, x_q))
    outputs, counters = run_network_on_rtl(qnet, x_q, CNN_CONFIG, log=lambda message: None)
    same = np.array_equal(outputs, golden.outputs) and counters == golden.counters
    record_property("rtl_check", f"CNN {name}, half its blocks pruned, on "
                                 f"{CNN_CONFIG.name}: {len(x_q)} samples in {golden.runs} batches, "
                                 f"outputs and {len(counters)} counters "
                                 f"{'identical' if same else 'DIFFERENT'}")
    assert np.array_equal(golden.outputs, qnet.forward(x_q))
    assert np.array_equal(outputs, golden.outputs)
    assert counters == golden.counters
