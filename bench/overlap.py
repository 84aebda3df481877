"""What overlapping REQUANT and MAX with the MVMs would buy: a what-if, not the device.

The device runs one instruction at a time (`golden.timing`). This bench reschedules each
executable's programs as a sequencer with a scoreboard would: instructions still issue in
order, each after its 3 cycles of fetch, decode and check, but an instruction starts as
soon as its unit is free (the tiles for PROGRAM and MVM, the requantisers, the MAX unit)
and no instruction still running reads what it writes or writes what it reads (amem and
psum entries). It assumes the ports that needs: a second read port on psum (MVM and
REQUANT both read it) and on amem (MVM and MAX). Each instruction keeps its own cycles
(`golden.device.instruction_counters`; their sum is checked against the golden run's).
A second schedule drops the order: each instruction waits only for the earlier ones it
conflicts with (the most that reordering the same instructions could buy); a third cuts
every MVM, REQUANT and MAX run into CHUNKS runs of consecutive entries first. Printed per
network: cycles per inference and ADC bound/actual as the device runs today and under
each schedule.

    .venv/bin/python bench/overlap.py
"""

import dataclasses

import numpy as np

from firmware.compiler.build import build_executable
from firmware.frontend.train import init_mlp
from firmware.runtime.report import format_table
from golden import AccelConfig, isa
from golden.device import Device, instruction_counters
from golden.timing import FETCH_DECODE_CYCLES, adc_bound_cycles
from tessera.experiments.digits import MODELS
from tessera.experiments.mnist import lenet5

CHUNKS = 8
COLUMNS = ("now", "in order", "reordered", f"{CHUNKS} chunks")
UNITS = {isa.Opcode.PROGRAM: "tiles", isa.Opcode.MVM: "tiles",
         isa.Opcode.REQUANT: "requant", isa.Opcode.MAX: "max"}


def _run(base, stride, count):
    return {base + stride * i for i in range(count)}


def accesses(ins):
    """({(memory, entry)} read, {(memory, entry)} written) by one instruction, from its
    fields as golden/isa.py defines them."""
    n, op = ins.count, ins.opcode
    if op == isa.Opcode.MVM:
        reads = {("amem", ins.src + ins.src_stride * v + ins.aux * k)
                 for v in range(n) for k in range(ins.ktiles)}
        # requantizing, the sums go to amem (and, pooling, are maxed with what it holds)
        memory = "amem" if ins.requantize else "psum"
        writes = {(memory, ins.dst + ins.dst_stride * v + ins.aux2 * g)
                  for v in range(n) for g in range(ins.ngroups)}
        return reads | (writes if ins.accumulate or ins.max_into else set()), writes
    if op == isa.Opcode.REQUANT:
        return ({("psum", e) for e in _run(ins.src, ins.src_stride, n)},
                {("amem", e) for e in _run(ins.dst, ins.dst_stride, n)})
    if op == isa.Opcode.MAX:
        return ({("amem", e) for e in _run(ins.src, ins.src_stride, n)
                 | _run(ins.aux, ins.aux2, n)},
                {("amem", e) for e in _run(ins.dst, ins.dst_stride, n)})
    return set(), set()


def schedule(instructions, config, in_order=True):
    """Cycles of `instructions` (decoded, up to HALT) rescheduled. The next instruction is
    fetched while one runs. In order, an instruction starts no earlier than the one
    before it; else (`in_order` False: the bound of reordering them) only after the
    earlier ones it conflicts with, each unit taking its own in order."""
    issue, free, earlier, end = 0, {}, [], 0
    for ins in instructions:
        cycles = instruction_counters(ins, config)["cycles"]
        issue += FETCH_DECODE_CYCLES
        if ins.opcode not in UNITS:                          # HALT
            end = max(end, issue)
            continue
        unit = UNITS[ins.opcode]
        reads, writes = accesses(ins)
        start = max([issue, free.get(unit, 0)]
                    + [done for done, r, w in earlier if writes & (r | w) or reads & w])
        done = start + cycles - FETCH_DECODE_CYCLES
        free[unit] = done
        if in_order:         # what ended before this start cannot delay a later one
            earlier, issue = [job for job in earlier if job[0] > start], start
        earlier.append((done, reads, writes))
        end = max(end, done)
    return end


def in_chunks(instructions, pieces):
    """Each MVM, REQUANT and MAX run cut into `pieces` runs of consecutive entries (an
    MVM's in whole rounds of its replicas): the same work, as a compiler that pipelines
    chunks of a batch would emit it."""
    cut = []
    for ins in instructions:
        if ins.opcode not in (isa.Opcode.MVM, isa.Opcode.REQUANT, isa.Opcode.MAX):
            cut.append(ins)
            continue
        step = ins.replicas if ins.opcode == isa.Opcode.MVM else 1
        size = max(step, -(-ins.count // pieces // step) * step)
        for first in range(0, ins.count, size):
            moved = dict(count=min(size, ins.count - first),
                         src=ins.src + ins.src_stride * first,
                         dst=ins.dst + ins.dst_stride * first)
            if ins.opcode == isa.Opcode.MAX:
                moved["aux"] = ins.aux + ins.aux2 * first
            cut.append(dataclasses.replace(ins, **moved))
    return cut


def networks(rng):
    digits_mlp, digits_cnn = (model.build(rng) for model in MODELS)
    return [("digits MLP 64-32-10", digits_mlp, (64,), AccelConfig()),
            ("digits CNN", digits_cnn, (8, 8, 1), AccelConfig()),
            ("MNIST LeNet-5", lenet5(rng), (28, 28, 1), AccelConfig()),
            ("MLP 784-1024-1024-10, 64 tiles", init_mlp([784, 1024, 1024, 10], rng), (784,),
             AccelConfig(tiles=64))]


def main():
    rng = np.random.default_rng(0)
    rows = []
    for name, network, shape, config in networks(rng):
        exe = build_executable(network, config, rng.uniform(0, 1, (64, *shape))).executable
        totals = dict.fromkeys(COLUMNS, 0)
        conversions = 0
        for run, count in exe.distinct_runs(exe.batch):     # equal sub-batches: once
            words = np.asarray(run.program).reshape(-1, isa.WORDS_PER_INSTRUCTION)
            instructions = [isa.decode(w) for w in words]
            instructions = instructions[:[i.opcode for i in instructions].index(
                isa.Opcode.HALT) + 1]
            device = Device(config)
            device.load_program(words.ravel())
            counters = device.run().counters
            if sum(instruction_counters(i, config)["cycles"] for i in instructions) \
                    != counters["cycles"]:
                raise SystemExit(f"{name}: the instructions' cycles are not golden's")
            conversions += count * counters["adc_conversions"]
            totals["now"] += count * counters["cycles"]
            totals["in order"] += count * schedule(instructions, config)
            totals["reordered"] += count * schedule(instructions, config, in_order=False)
            totals[f"{CHUNKS} chunks"] += count * schedule(
                in_chunks(instructions, CHUNKS), config, in_order=False)
        bound = adc_bound_cycles(config, conversions)
        rows.append({"network": name, "batch": exe.batch, "bound": bound / exe.batch,
                     **{what: cycles / exe.batch for what, cycles in totals.items()},
                     **{f"ratio {what}": bound / cycles for what, cycles in totals.items()}})
    print(f"per inference, one batch of each executable's programs: golden cycles; the "
          f"same instructions issued in order with REQUANT and MAX overlapping the MVMs; "
          f"reordered as far as their dependences allow; and each run cut in {CHUNKS} "
          f"chunks, reordered")
    print(format_table(rows, [("network", "network", "{}"), ("batch", "batch", "{}"),
                              ("ADC bound/inf", "bound", "{:,.0f}")]
                       + [(f"cycles/inf {what}" if what == "now" else what, what, "{:,.0f}")
                          for what in COLUMNS]
                       + [(f"bound/actual {what}" if what == "now" else what,
                           f"ratio {what}", "{:.2f}") for what in COLUMNS]))


if __name__ == "__main__":
    main()
