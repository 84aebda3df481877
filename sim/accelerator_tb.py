"""cocotb testbench: the accelerator over AXI4-Lite against golden.device.Device, on random
programs; `AcceleratorBench` also serves `sim.accelerator_errors_tb`.

Environment (set by `sim.accelerator.run_accelerator_check`):
  TESSERA_CONFIG    AccelConfig as JSON
  TESSERA_PROGRAMS  random programs to run
  TESSERA_SEED      NumPy seed
  TESSERA_RESULTS   JSON file receiving the figures
  TESSERA_FAULTS    a fault map's JSON (`golden.faults`) for the RTL's ``stuck`` port (a
                    design built with ``fault_injection``)
  TESSERA_GOLDEN_FAULTS  the golden device's (by default the RTL's)
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

import golden
from firmware.runtime.driver import Driver
from golden import isa
from golden.device import Device
from golden.faults import FaultMap

from .axi_transport import CocotbAxiBus, start_accelerator
from .isa_coverage import isa_coverage, sample_run
from .random_programs import random_memories, random_program, written_entries

from .runner import CLOCK_NS
PROGRAMS_PER_BATCH = 50


class AcceleratorBench:
    """Owns the clock, the AXI4-Lite manager, the firmware driver and the golden device."""

    def __init__(self, dut, config, rng, faults=(None, None)):
        self.dut, self.config, self.rng = dut, config, rng
        rtl_faults, golden_faults = faults
        self.golden = Device(config, faults=golden_faults)
        if rtl_faults is not None:
            dut.stuck.value = rtl_faults.port_value()

    async def start(self):
        dut = self.dut
        self.master, clock = await start_accelerator(dut, CLOCK_NS)
        await ClockCycles(dut.clk, 2)
        self.driver = Driver(CocotbAxiBus(self.master, dut.done, clock))
        discovered = await self.driver.discover()
        assert discovered == self.config, f"capability registers say {discovered}"
        await self.agree_on_tiles()

    async def agree_on_tiles(self):
        """No reset clears the tiles' weights (non-volatile cells): a test run earlier on
        this build may have left some, and a fresh golden device has none. Program every
        tile from the same random memories on both, so that every test starts from one
        state whatever ran before it."""
        await self.load_memories(random_memories(self.config, self.rng))
        await self.run_matching([isa.program(0, 0, tiles=self.config.tiles), isa.halt()])

    def stall_bus(self, enabled):
        """Random idle cycles on AW/W/AR and back-pressure on B/R, or none."""
        def pauses():
            while True:
                yield bool(self.rng.random() < 0.3)
        for channel in (self.master.write_if.aw_channel, self.master.write_if.w_channel,
                        self.master.write_if.b_channel, self.master.read_if.ar_channel,
                        self.master.read_if.r_channel):
            channel.set_pause_generator(pauses() if enabled else None)
            channel.pause = False       # a removed generator leaves its last value behind

    async def load_memories(self, memories):
        for name, entries in memories.items():
            getattr(self.golden, name)[:] = entries
            await self.driver.write_entries(name, 0, entries)

    async def run_program(self, instructions):
        """Run on both; return (golden RunResult, RTL RunStatus)."""
        return await self.run_words(isa.encode_program(instructions))

    async def run_words(self, words):
        """Run an encoded program (four words an instruction, any bits) on both."""
        self.golden.load_program(words)
        await self.driver.load_words(words)
        expected = self.golden.run()
        self.stall_bus(False)          # nothing wakes Python while the device runs
        actual = await self.driver.run(timeout_s=1e-3, raise_on_error=False)
        self.stall_bus(True)
        instructions = [isa.decode(words[i:i + isa.WORDS_PER_INSTRUCTION])
                        for i in range(0, len(words), isa.WORDS_PER_INSTRUCTION)]
        sample_run(instructions, actual, self.config)
        return expected, actual

    async def run_matching(self, instructions):
        """Run a program that must succeed, with the same status and counters on both."""
        expected, actual = await self.run_program(instructions)
        problems = compare_runs(expected, actual)
        assert actual.ok and not problems, problems

    async def soft_reset(self):
        await self.driver.soft_reset()
        self.golden.soft_reset()

    async def differing_entries(self, memory):
        """Indices of the entries of a whole memory that differ from golden's."""
        window = self.driver.windows[memory]
        got = await self.driver.read_entries(memory, 0, window.depth, signed=memory != "qmem")
        return np.flatnonzero(np.any(got != getattr(self.golden, memory), axis=1))

    async def compare_entries(self, memory, entries):
        mismatches = []
        for e in entries:
            got = (await self.driver.read_entries(memory, e, 1))[0]
            want = getattr(self.golden, memory)[e]
            if not np.array_equal(got, want):
                mismatches.append(f"{memory}[{e}]: got {got.tolist()} expected {want.tolist()}")
        return mismatches


def compare_runs(expected, actual):
    problems = []
    if (expected.done, expected.error, expected.error_pc) != (actual.done, actual.error, actual.error_pc):
        problems.append(f"status: got done={actual.done} {actual.error.name} pc={actual.error_pc}, "
                        f"expected done={expected.done} {expected.error.name} pc={expected.error_pc}")
    for name, value in expected.counters.items():
        if actual.counters[name] != value:
            problems.append(f"counter {name}: got {actual.counters[name]} expected {value}")
    return problems


def load_settings():
    config = golden.AccelConfig.from_json(os.environ["TESSERA_CONFIG"])
    return (config, int(os.environ.get("TESSERA_PROGRAMS", "100")),
            np.random.default_rng(int(os.environ.get("TESSERA_SEED", "1"))))


def load_faults():
    """The RTL's and the golden device's fault maps (None, None without faults)."""
    rtl = os.environ.get("TESSERA_FAULTS")
    texts = {"TESSERA_FAULTS": rtl, "TESSERA_GOLDEN_FAULTS":
             os.environ.get("TESSERA_GOLDEN_FAULTS", rtl)}
    return tuple(None if text is None else FaultMap.from_json(text, name)
                 for name, text in texts.items())


def save_figures(section, figures):
    path = os.environ["TESSERA_RESULTS"]
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results[section] = figures
    with open(path, "w") as f:
        json.dump(results, f)


@cocotb.test()
async def random_programs_match_golden(dut):
    config, programs, rng = load_settings()
    bench = AcceleratorBench(dut, config, rng, load_faults())
    await bench.start()
    bench.stall_bus(True)
    figures = dict(programs=0, instructions=0, output_mismatches=0, counter_mismatches=0,
                   status_mismatches=0, entries_compared=0, device_cycles=0)
    problems, started = [], time.monotonic()
    while figures["programs"] < programs:
        await bench.load_memories(random_memories(config, rng))
        for _ in range(min(PROGRAMS_PER_BATCH, programs - figures["programs"])):
            instructions = random_program(config, rng, int(rng.integers(1, config.imem_depth)))
            expected, actual = await bench.run_program(instructions)
            run_problems = compare_runs(expected, actual)
            figures["status_mismatches"] += any(p.startswith("status") for p in run_problems)
            figures["counter_mismatches"] += sum(p.startswith("counter") for p in run_problems)
            psum, amem = written_entries(instructions)
            entry_problems = (await bench.compare_entries("psum", psum)
                              + await bench.compare_entries("amem", amem))
            figures["entries_compared"] += len(psum) + len(amem)
            figures["output_mismatches"] += len(entry_problems)
            if (run_problems or entry_problems) and len(problems) < 20:
                problems.append(f"program {figures['programs']}: "
                                + "; ".join(map(str, instructions)))
                problems.extend(run_problems + entry_problems)
            figures["programs"] += 1
            figures["instructions"] += len(instructions)
            figures["device_cycles"] += expected.counters["cycles"]
        # Whole memories at the end of each batch: catches writes to wrong addresses.
        for memory in ("psum", "amem", "wmem", "qmem"):
            bad = await bench.differing_entries(memory)
            figures["entries_compared"] += bench.driver.windows[memory].depth
            figures["output_mismatches"] += len(bad)
            if len(bad) and len(problems) < 20:
                problems.append(f"{memory} entries {bad[:8].tolist()} differ after the batch")
    figures["wall_seconds"] = time.monotonic() - started
    save_figures("random_programs", figures)
    save_figures("isa_coverage", isa_coverage())      # so far in this simulation
    dut._log.info("%s: %d random programs (%d instructions, %d device cycles), %d entries "
                  "compared: %d output, %d counter, %d status mismatches", config.name,
                  figures["programs"], figures["instructions"], figures["device_cycles"],
                  figures["entries_compared"], figures["output_mismatches"],
                  figures["counter_mismatches"], figures["status_mismatches"])
    assert not problems, "\n".join(problems)
