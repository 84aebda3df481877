"""cocotb testbench: the crossbar tile against golden.crossbar_mvm, values and cycles.

Environment (set by `sim.tile.run_tile_check`):
  TESSERA_CONFIG   AccelConfig as JSON
  TESSERA_VECTORS  random input vectors to check
  TESSERA_SEED     NumPy seed
  TESSERA_RESULTS  JSON file receiving the figures
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

import golden
from golden.crossbar import adc_round
from sim.packing import pack_ints, unpack_ints

VECTORS_PER_WEIGHT_SET = 250
GAP_PROBABILITY = 0.3           # a start later than the shortest interval
DECOY_PROBABILITY = 0.2         # a vector staged, then replaced before its start


class TileBench:
    """Owns the clock and drives the tile's three streams one cycle at a time.

    Inputs change just after the falling edge; handshakes are read in the ReadOnly
    phase of the same cycle, so they are the ones the next rising edge takes.
    """

    def __init__(self, dut, config, rng):
        self.dut, self.config, self.rng = dut, config, rng
        self.cycle = 0

    async def start(self):
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        for name in ("w_stream__valid", "i_stream__valid", "start", "adc_shift", "offset_inputs"):
            getattr(self.dut, name).value = 0
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def next_cycle(self):
        await RisingEdge(self.dut.clk)
        await FallingEdge(self.dut.clk)
        self.cycle += 1

    async def settle(self):
        await ReadOnly()

    async def program(self, weights):
        """Offer every row back to back; return the cycles from the first offer to the last
        handshake, inclusive."""
        dut, first, last = self.dut, self.cycle, None
        await FallingEdge(dut.clk)
        for r in range(self.config.rows):
            dut.w_stream__valid.value = 1
            dut.w_stream__payload.value = (r & 0xFFFF) | (pack_ints(weights[r], 8) << 16)
            while True:
                await self.settle()
                accepted = bool(dut.w_stream__ready.value)
                await self.next_cycle()
                if accepted:
                    last = self.cycle - 1
                    break
        dut.w_stream__valid.value = 0
        return last - first + 1

    def schedule(self, count):
        """Start cycles (back to back, or with random gaps) and, per cycle, what to stage:
        each vector somewhere between the previous start and its own, sometimes after a
        decoy that it replaces."""
        interval = golden.tile_mvm_interval(self.config)
        starts, stages, previous = [], {}, 0
        for i in range(count):
            gap = int(self.rng.integers(1, 4)) if self.rng.random() < GAP_PROBABILITY else 0
            start = previous + 1 if i == 0 else previous + interval + gap
            stage = int(self.rng.integers(previous, start))
            if self.rng.random() < DECOY_PROBABILITY and stage + 1 < start:
                stages[stage] = ("decoy", None)
                stage = int(self.rng.integers(stage + 1, start))
            stages[stage] = ("vector", i)
            starts.append(start)
            previous = start
        return starts, stages

    async def stream(self, vectors, shifts, offsets):
        """Stage and start `vectors` on a random schedule, each with its ADC shift and input
        encoding; return the results in order and each one's cycles from start to ``done``."""
        dut, cfg = self.dut, self.config
        starts, stages = self.schedule(len(vectors))
        start_set = set(starts)
        results, done_cycles = [], []
        for t in range(starts[-1] + golden.tile_mvm_cycles(cfg) + 2):
            kind, index = stages.get(t, (None, None))
            dut.i_stream__valid.value = int(kind is not None)
            if kind is not None:
                vector = vectors[index] if kind == "vector" else self.rng.integers(-128, 128, cfg.rows)
                dut.i_stream__payload.value = pack_ints(vector, 8)
            dut.start.value = int(t in start_set)
            if t in start_set:
                dut.adc_shift.value = int(shifts[starts.index(t)])
                dut.offset_inputs.value = int(offsets[starts.index(t)])
            else:               # only the start's values count: anything else is noise
                dut.adc_shift.value = int(self.rng.integers(0, self.config.max_adc_shift + 1))
                dut.offset_inputs.value = int(self.rng.integers(0, 2))
            await self.settle()
            if dut.done.value:
                done_cycles.append(t)
                results.append(unpack_ints(dut.result.value.to_unsigned(), 32, cfg.cols))
            await self.next_cycle()
        dut.i_stream__valid.value = 0
        dut.start.value = 0
        latencies = [d - s for s, d in zip(starts, done_cycles)]
        latencies += [None] * (len(vectors) - len(done_cycles))        # missing results
        return np.array(results, dtype=np.int64).reshape(-1, cfg.cols), latencies


# Whole columns of these make the largest column sums and every cell slice's extremes
# (two's complement 127, -128, -1, 0b0101_0101, 0b1010_1010).
EXTREME_COLUMNS = (127, -128, -1, 85, -86)


def random_weights(config, rng, extreme=False):
    """Random weights with extreme rows and a dead column; with `extreme`, each column
    one of `EXTREME_COLUMNS` throughout, so the extreme vectors reach the largest sums."""
    if extreme:
        return np.tile(rng.choice(EXTREME_COLUMNS, config.cols), (config.rows, 1))
    weights = rng.integers(-128, 128, (config.rows, config.cols))
    # Extremes and a dead column, so the sign path and zero cells are both exercised.
    weights[rng.integers(config.rows), :] = -128
    weights[rng.integers(config.rows), :] = 127
    weights[:, rng.integers(config.cols)] = 0
    return weights


def random_vectors(config, rng, count):
    vectors = rng.integers(-128, 128, (count, config.rows))
    extremes = [np.full(config.rows, -128), np.full(config.rows, 127),
                np.resize([-128, 127], config.rows), np.zeros(config.rows, int)]
    for i, v in enumerate(extremes[:count]):
        vectors[i] = v
    return vectors


@cocotb.test()
async def tile_matches_golden(dut):
    config = golden.AccelConfig.from_json(os.environ["TESSERA_CONFIG"])
    total = int(os.environ.get("TESSERA_VECTORS", "2000"))
    rng = np.random.default_rng(int(os.environ.get("TESSERA_SEED", "1")))
    bench = TileBench(dut, config, rng)
    await bench.start()

    figures = dict(config=config.name, vectors=0, value_mismatches=0, cycle_mismatches=0,
                   program_cycle_mismatches=0, saturated_codes=0, sim_cycles=0)
    first_error = None
    started_cycle, started = bench.cycle, time.monotonic()
    while figures["vectors"] < total:
        count = min(VECTORS_PER_WEIGHT_SET, total - figures["vectors"])
        extreme = (figures["vectors"] // VECTORS_PER_WEIGHT_SET) % 2 == 1     # every other set
        weights = random_weights(config, rng, extreme)
        vectors = random_vectors(config, rng, count)
        program_cycles = await bench.program(weights)
        figures["program_cycle_mismatches"] += program_cycles != golden.tile_program_cycles(config)

        shifts = rng.integers(0, config.max_adc_shift + 1, count)
        offsets = rng.integers(0, 2, count).astype(bool)
        got, latencies = await bench.stream(vectors, shifts, offsets)
        expected = np.empty((count, config.cols), np.int64)
        for shift in map(int, np.unique(shifts)):
            for offset in (False, True):
                mine = (shifts == shift) & (offsets == offset)
                expected[mine] = golden.crossbar_mvm(config, vectors[mine], weights, shift, offset)
        if len(got) != len(expected):
            raise AssertionError(f"{len(got)} results for {len(expected)} products")
        bad = np.flatnonzero(np.any(got != expected, axis=1))
        if len(bad) and first_error is None:
            i = bad[0]
            first_error = (f"vector {figures['vectors'] + i}: x={vectors[i].tolist()} "
                           f"got {got[i].tolist()} expected {expected[i].tolist()}")
        figures["value_mismatches"] += len(bad)
        figures["cycle_mismatches"] += sum(lat != golden.tile_mvm_cycles(config) for lat in latencies)
        for offset in (False, True):
            counts = golden.column_counts(config, vectors[offsets == offset], weights, offset)
            for shift in map(int, np.unique(shifts)):
                mine = counts[:, :, shifts[offsets == offset] == shift]
                figures["saturated_codes"] += int(np.sum(golden.adc_convert(config, mine, shift)
                                                         != adc_round(mine, shift)))
        figures["shifts_used"] = sorted(set(figures.get("shifts_used", [])) | set(map(int, shifts)))
        figures["vectors"] += count

    figures["sim_cycles"] = bench.cycle - started_cycle
    figures["wall_seconds"] = time.monotonic() - started
    figures["cycles_per_product"] = golden.tile_mvm_interval(config)
    figures["sim_cycles_per_second"] = figures["sim_cycles"] / figures["wall_seconds"]
    with open(os.environ["TESSERA_RESULTS"], "w") as f:
        json.dump(figures, f)
    dut._log.info("checked %d vectors on %s: %d value mismatches, %d cycle mismatches, "
                  "%d saturated ADC codes", figures["vectors"], config.name,
                  figures["value_mismatches"], figures["cycle_mismatches"],
                  figures["saturated_codes"])
    assert figures["value_mismatches"] == 0, first_error
    assert figures["cycle_mismatches"] == 0, f"{figures['cycle_mismatches']} products off timing"
    assert figures["program_cycle_mismatches"] == 0, "programming took the wrong cycle count"
