"""The pipelined requantiser (Amaranth simulator) against golden.requantize, edges included."""

import numpy as np
from amaranth.sim import Simulator

from golden import requantize
from rtl.requantizer import Requantizer

VECTORS = 600


def test_requantizer_matches_golden(record_property):
    rng = np.random.default_rng(21)
    edges = [(-(1 << 31), -(1 << 31), (1 << 31) - 1, 31), ((1 << 31) - 1, (1 << 31) - 1, (1 << 31) - 1, 0),
             (-(1 << 31), 0, 1 << 30, 0), (12345, -7, (1 << 31) - 1, 31), (-1, 0, 1, 0)]
    vectors = edges + [(int(rng.integers(-(1 << 31), 1 << 31)), int(rng.integers(-(1 << 31), 1 << 31)),
                        int(rng.integers(0, 1 << 31)), int(rng.integers(0, 32)))
                       for _ in range(VECTORS - len(edges))]
    extras = [(int(rng.integers(-128, 128)), *sorted(int(v) for v in rng.integers(-128, 128, 2)))
              for _ in vectors]
    dut = Requantizer()
    results = []

    async def bench(ctx):
        # One vector a cycle; the result of vector i is there after tick i + latency - 1.
        for i in range(len(vectors) + Requantizer.latency - 1):
            if i < len(vectors):
                (acc, bias, multiplier, shift), (zero_point, lo, hi) = vectors[i], extras[i]
                for port, value in ((dut.acc, acc), (dut.bias, bias), (dut.multiplier, multiplier),
                                    (dut.shift, shift), (dut.zero_point, zero_point),
                                    (dut.clamp_min, lo), (dut.clamp_max, hi)):
                    ctx.set(port, value)
            await ctx.tick()
            if i >= Requantizer.latency - 1:
                results.append(ctx.get(dut.result))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    acc, bias, multiplier, shift = (np.array(column, np.int64) for column in zip(*vectors))
    zero_point, lo, hi = (np.array(column, np.int64) for column in zip(*extras))
    expected = requantize(acc, bias, multiplier, shift, zero_point, lo, hi)
    aligned = np.array(results, np.int64)
    mismatches = int((aligned != expected).sum())
    record_property("rtl_check", f"requantiser: {len(vectors)} vectors ({len(edges)} edge cases), "
                                 f"{mismatches} mismatches")
    assert mismatches == 0
