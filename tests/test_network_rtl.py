"""A quantised network through the firmware driver on the RTL: predictions and counters
identical to the same driver on the golden model."""

import asyncio

import numpy as np

from firmware import Driver
from firmware.network import Dense, Network
from firmware.quantize import quantize
from firmware.runtime import run_network
from firmware.transports import GoldenBus
from golden import AccelConfig
from golden.device import Device
from sim.network import run_network_on_rtl

# Its own memory sizes, so its build never races the accelerator tests' builds.
CONFIG = AccelConfig(imem_depth=16, wmem_depth=48, amem_depth=32, psum_depth=32, qmem_depth=8)


def test_network_on_rtl_equals_golden(record_property):
    rng = np.random.default_rng(9)
    network = Network((Dense("hidden", rng.normal(0, 0.3, (32, 16)), rng.normal(0, 0.1, 16)),
                       Dense("out", rng.normal(0, 0.3, (16, 10)), np.zeros(10), relu=False)))
    x = rng.uniform(0, 1, (20, 32))
    qnet = quantize(network, x)
    x_q = qnet.input.quantize(x)
    golden = asyncio.run(run_network(Driver(GoldenBus(Device(CONFIG))), qnet, x_q))
    outputs, counters = run_network_on_rtl(qnet, x_q, CONFIG, log=lambda message: None)
    record_property("rtl_check", f"network 32-16-10 on {CONFIG.name}: {len(x_q)} samples in "
                                 f"{golden.runs} batches, outputs and {len(counters)} counters "
                                 f"{'identical' if np.array_equal(outputs, golden.outputs) and counters == golden.counters else 'DIFFERENT'}")
    assert golden.runs == 3          # 8 + 8 + 4: the tail batch is compiled separately
    assert np.array_equal(golden.outputs, qnet.forward(x_q))
    assert np.array_equal(outputs, golden.outputs)
    assert counters == golden.counters
