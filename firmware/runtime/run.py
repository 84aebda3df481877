"""Running an `Executable` through the driver, on any transport: segment by segment,
batch by batch, counting every word the host moves; and comparing two runs. Needs
neither the compiler nor Amaranth (the targets that own a transport: `.targets`)."""

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np

from golden.device import as_span
from golden.lookahead import Expected
from golden.regmap import COUNTERS

from ..windows import im2col_columns, pad_images

__all__ = ["NetworkRun", "run_executable", "compare_runs", "input_entries"]


@dataclass
class NetworkRun:
    outputs: np.ndarray                  # int8, (samples, outputs)
    counters: dict                       # device counters summed over the inference runs
    setup_counters: dict = field(default_factory=dict)   # tile programming, once
    host_words: dict = field(default_factory=dict)       # {"written"/"read": {memory: words}}
    runs: int = 0                        # device runs (segments x batches)
    batches: list = field(default_factory=list)          # samples of each batch, in order

    @property
    def batch(self):
        return max(self.batches, default=0)


def _add(total, counters, times=1):
    """`times` the `counters` of a run (a driver's read: every one of `COUNTERS`) into
    `total`."""
    for name in COUNTERS:
        total[name] = total.get(name, 0) + times * counters[name]


def input_entries(spec, config, x_q):
    """The amem entries of a batch of int8 samples: the first layer's vectors (im2col
    patches for a host-fed convolution) with their rows where the mapper laid them, int8
    like the lanes they fill."""
    x_q = np.asarray(x_q, np.int8).reshape(len(x_q), *spec.shape)
    if spec.kernel is not None:
        return im2col_columns(pad_images(x_q, spec.pads, spec.zero_point), *spec.kernel,
                              spec.stride, spec.row_index, spec.padded_rows
                              ).reshape(-1, config.rows)
    vectors = x_q.reshape(-1, len(spec.row_index))
    rows = spec.row_span
    if isinstance(rows, slice) and rows == slice(0, spec.padded_rows):   # all rows, in order
        return vectors.reshape(-1, config.rows)
    padded = np.zeros((len(vectors), spec.padded_rows), np.int8)
    padded[:, rows] = vectors
    return padded.reshape(-1, config.rows)


def int8_samples(x_q):
    """`x_q` as int8 (the host's tensors are amem lanes), or ValueError naming the first
    value that is not one: a write would keep its low 8 bits, a silently wrong sample."""
    x_q = np.asarray(x_q)
    if len(x_q) == 0:
        raise ValueError("no samples to run")
    if x_q.dtype.kind not in "iub":
        raise ValueError(f"samples must be integers (int8 values), not {x_q.dtype}")
    if x_q.dtype != np.int8 and (x_q.min() < -128 or x_q.max() > 127):
        outside = np.flatnonzero((x_q < -128) | (x_q > 127))
        where = np.unravel_index(outside[0], x_q.shape)
        raise ValueError(f"sample {where[0]} holds {x_q[where]} at index "
                         f"{tuple(int(i) for i in where[1:])}: int8 samples lie in "
                         f"-128..127 ({len(outside)} values outside)")
    return x_q.astype(np.int8, copy=False)


@functools.lru_cache(maxsize=4096)
def _moved(transfer):
    """(amem entries, tensor entries) of one sample that `transfer` moves, each a slice
    where they are consecutive (a view, not a gather); worked out once per transfer (a
    run moves the same ones batch after batch)."""
    return tuple(as_span(indices) for indices in transfer.indices())


def _groups(batches, limit):
    """(batch, how many of them) of equal consecutive `batches`, at most `limit` at a time:
    the batches a driver in lockstep runs at once."""
    groups = []
    for size, run in itertools.groupby(batches):
        count = len(list(run))
        groups += [(size, min(limit, count - first)) for first in range(0, count, limit)]
    return groups


def _images(exe, index):
    image = exe.segments[index]
    return index if image.images_from is None else image.images_from


async def _write_transfer(driver, transfer, host, group, batch, samples, devices):
    """What `transfer` moves from the host tensors into amem: `samples` (a slice) of each
    of `group` batches of `batch`, to `devices` devices (arrays shaped devices, samples,
    entries, rows)."""
    rows = driver.config.rows
    device, tensor = _moved(transfer)
    values = host[transfer.tensor].reshape(group, batch, -1, rows)[:, samples][:, :, tensor]
    if not (isinstance(device, slice) and device == slice(0, transfer.entries)):
        entries = np.zeros((*values.shape[:2], transfer.entries, rows), values.dtype)
        entries[:, :, device], values = values, entries
    await driver.write_entries("amem", transfer.base, values.reshape(devices, -1, rows))


async def _read_transfer(driver, transfer, host, group, batch, samples, size):
    """What `transfer` moves from amem into its host tensor (made, for whole batches, on
    its first read), as `_write_transfer` moves them."""
    rows = driver.config.rows
    entries = (await driver.read_entries("amem", transfer.base, size * transfer.entries)
               ).reshape(group, samples.stop - samples.start, -1, rows)
    whole = host.get(transfer.tensor)
    if whole is None or whole.shape[1] != batch * transfer.sample_entries:
        whole = host[transfer.tensor] = np.zeros(
            (group, batch * transfer.sample_entries, rows), np.int8)
    device, tensor = _moved(transfer)
    part = whole.reshape(group, batch, -1, rows)[:, samples]
    part[:, :, tensor] = entries[:, :, device]


def _loads(exe, schedule):
    """(weight images, program) each run of `schedule` needs loaded, and those of the
    run before it, the last run before the first (one device runs batch after batch)."""
    needs = [(_images(exe, index), (index, size)) for index, size, _ in schedule]
    return list(zip(needs, needs[-1:] + needs[:-1]))


def _count_loads(loaded, steps, group):
    """How many times (weights, program) are loaded for one run of `steps` (its
    (needs, before) over sub-batches side by side) on `group` batches side by side: what
    one device running them batch after batch, sub-batch after sub-batch, would load.
    The first step of the first batch loads what the device lacks (`loaded`); the
    others, what the run before them left."""
    (needs, before), later = steps[0], steps[1:]
    weights = (loaded[0] != needs[0]) + (group - 1) * (before[0] != needs[0])
    programs = (loaded[1] != needs[1]) + (group - 1) * (before[1] != needs[1])
    for _, step_before in later:
        weights += group * (step_before[0] != needs[0])
        programs += group * (step_before[1] != needs[1])
    return weights, programs


def _weight_writes(config, image):
    """(first wmem row, int8 values, lanes) of the writes that load a segment's weights."""
    for first_slot, end_slot, lanes in image.lane_runs:
        rows = slice(first_slot * config.rows, end_slot * config.rows)
        yield rows.start, image.wmem_int8[rows], lanes * config.cols


def _expected(config, exe, size, indices, loads):
    """The device runs of segments `indices` at `size`, each loading as `loads` says."""
    runs = []
    for index, (weight_loads, _) in zip(indices, loads):
        key = ("expected", size, index, bool(weight_loads))
        runs += exe.worked_out(key, lambda: _segment_expected(config, exe, size, index,
                                                              bool(weight_loads)))
    return runs


def _segment_expected(config, exe, size, index, loads_weights):
    """The device runs of segment `index` at `size` (`golden.lookahead.Expected`s): its
    setup program if it has one and loads its weights, then its program."""
    image, run = exe.segments[index], exe.plans[size][index]
    writes = tuple((row, values[:, :lanes]) for row, values, lanes
                   in _weight_writes(config, image)) if loads_weights else ()
    runs = []
    if loads_weights and len(image.setup):
        runs.append(Expected(image.setup, writes))
        writes = ()
    amem = tuple((transfer.base, size * transfer.entries) for transfer in run.writes)
    if len(image.constants):
        amem += ((run.constants_base, len(image.constants)),)
    runs.append(Expected(run.program, writes, amem))
    return runs


async def _segment_run(driver, exe, index, size, host, group, batch, samples, loads, result):
    """Segment `index` run on `samples` of `group` batches of `batch`, `size` samples a
    device, its weights and program loaded as often as `loads` says."""
    config, image, run = driver.config, exe.segments[index], exe.plans[size][index]
    weight_loads, program_loads = loads
    if weight_loads:
        driver.lockstep(weight_loads)
        for row, values, lanes in _weight_writes(config, image):
            await driver.write_entries("wmem", row, values, lanes=lanes)
        await driver.write_entries("qmem", 0, image.qmem)
        if len(image.setup):
            await driver.load_words(image.setup)
            _add(result.setup_counters, (await driver.run()).counters, weight_loads)
    if program_loads:
        driver.lockstep(program_loads)
        await driver.load_words(run.program)
        for entry in run.zero_psum:
            await driver.write_entries("psum", int(entry), np.zeros((1, config.cols), np.int64))
    devices = group * (samples.stop - samples.start) // size
    driver.lockstep(devices)
    if len(image.constants):                 # other segments may have used the space
        await driver.write_entries("amem", run.constants_base, image.constants)
    for transfer in run.writes:
        await _write_transfer(driver, transfer, host, group, batch, samples, devices)
    status = await driver.run()
    _add(result.counters, status.counters, devices)
    result.runs += devices
    for transfer in run.reads:
        await _read_transfer(driver, transfer, host, group, batch, samples, size)


def _batch_steps(exe, batch, group, limit, loaded):
    """(steps, what is loaded after them) of `group` batches of `batch` side by side, at
    most `limit` devices at once, `loaded` (weight images, program) loaded before: each
    step (segments, samples a device, samples (a slice), their loads, their declared
    runs or None) runs the segments on those samples of every batch. Worked out once per
    batch shape (`Executable.worked_out`): a run repeats them batch after batch."""
    config, steps = exe.config, []
    loads, step = _loads(exe, exe.schedule(batch)), 0
    for indices, size, first, count in exe.rounds(batch):
        per = max(1, limit // group)                     # sub-batches side by side
        for start in range(0, count, per):
            subs = min(per, count - start)
            samples = slice(first + start * size, first + (start + subs) * size)
            segment_loads = []
            for position, index in enumerate(indices):
                begin = step + start * len(indices) + position
                mine = loads[begin:begin + subs * len(indices):len(indices)]
                segment_loads.append(_count_loads(loaded, mine, group))
                loaded = mine[-1][0]
            expected = (_expected(config, exe, size, indices, segment_loads)
                        if len(indices) > 1 else None)
            steps.append((indices, size, samples, segment_loads, expected))
        step += count * len(indices)
    return steps, loaded


async def run_executable(driver, exe, x_q, progress=None):
    """Run the int8 samples `x_q` (shaped as `exe.input.shape`, or flattened) through `exe`
    on the device behind `driver`. `progress(done, total)` is called after every batch.

    Batch after batch, as one device runs them; a driver that drives several devices in
    lockstep (the golden stack) runs equal batches side by side, a device each, moving and
    counting what one device would: a segment's weights and program go to the devices
    only as often as one device, batch after batch, would load them."""
    config = driver.config or await driver.discover()
    if config != exe.config:
        ours, theirs = exe.config.to_dict(), config.to_dict()
        fields = ", ".join(f"{k} {theirs[k]} (not {ours[k]})" for k in ours if ours[k] != theirs[k])
        raise ValueError(f"the executable is compiled for {exe.config.name}; the device's "
                         f"capability registers say {fields}")
    x_q = int8_samples(x_q)
    result = NetworkRun(np.zeros((len(x_q), exe.output.features), np.int64), {})
    driver.reset_transfer_counts()
    limit = driver.lockstep_limit
    loaded, done, declared = (None, None), 0, False
    for batch, group in _groups(exe.batches(len(x_q)), limit):
        chunk = x_q[done:done + batch * group]
        host = {0: input_entries(exe.input, config, chunk).reshape(group, -1, config.rows)}
        steps, loaded = exe.worked_out(("steps", batch, group, limit, loaded),
                                       lambda: _batch_steps(exe, batch, group, limit, loaded))
        for indices, size, samples, segment_loads, expected in steps:
            if expected is not None:             # a chain: products to share, maybe
                driver.expect(expected)
                declared = True
            for index, its_loads in zip(indices, segment_loads):
                await _segment_run(driver, exe, index, size, host, group, batch,
                                   samples, its_loads, result)
        final = host[max(host)]          # tensors are numbered in order: the output is last
        result.outputs[done:done + batch * group] = \
            final.reshape(batch * group, -1)[:, :exe.output.features]
        for _ in range(group):                      # batches side by side end together
            result.batches.append(batch)
            done += batch
            if progress:
                progress(done, len(x_q))
    if declared:
        driver.expect(None)
    driver.lockstep(1)
    result.host_words = driver.transfer_counts()
    return result


def compare_runs(expected, actual):
    """How `actual` differs from `expected` (two `NetworkRun`s of the same samples), one line
    a difference: the outputs, every counter of the inference and setup runs, the words
    the host moved to and from each memory, the batches and the device runs. Empty when
    they are the same run."""
    problems = []
    if expected.outputs.shape != actual.outputs.shape:
        problems.append(f"outputs: shape {actual.outputs.shape}, expected {expected.outputs.shape}")
    else:
        differ = np.argwhere(expected.outputs != actual.outputs)
        if len(differ):
            sample, output = (int(i) for i in differ[0])
            problems.append(f"outputs: {len(differ)} of {expected.outputs.size} values differ, "
                            f"first sample {sample} output {output}: "
                            f"{actual.outputs[sample, output]} (expected "
                            f"{expected.outputs[sample, output]})")
    for what in ("counters", "setup_counters"):
        want, got = getattr(expected, what), getattr(actual, what)
        for name in sorted(set(want) | set(got)):
            if want.get(name) != got.get(name):
                problems.append(f"{what} {name}: {got.get(name)} (expected {want.get(name)})")
    for way in sorted(set(expected.host_words) | set(actual.host_words)):
        want, got = expected.host_words.get(way, {}), actual.host_words.get(way, {})
        for memory in sorted(set(want) | set(got)):
            if want.get(memory) != got.get(memory):
                problems.append(f"host words {way} {memory}: {got.get(memory)} "
                                f"(expected {want.get(memory)})")
    for what in ("batches", "runs"):
        if getattr(expected, what) != getattr(actual, what):
            problems.append(f"{what}: {getattr(actual, what)} (expected "
                            f"{getattr(expected, what)})")
    return problems
