"""A quantised network through the firmware driver on the RTL: predictions and counters
identical to the same driver on the golden model."""

import asyncio

import numpy as np

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
