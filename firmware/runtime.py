"""Running a compiled network through the driver, on any transport."""

from dataclasses import dataclass, field

import numpy as np

from golden.regmap import COUNTERS

from .codegen import generate
from .mapper import input_entries, map_network

__all__ = ["NetworkRun", "run_network"]


@dataclass
class NetworkRun:
    outputs: np.ndarray                  # int8, (samples, outputs)
    counters: dict                       # summed over the inference runs
    setup_counters: dict = field(default_factory=dict)
    runs: int = 0
    batch: int = 0


def _add(total, counters):
    for name in COUNTERS:
        total[name] = total.get(name, 0) + counters.get(name, 0)


async def run_network(driver, qnet, x_q, batch=None, progress=None):
    """Run the int8 inputs `x_q` through `qnet` on the device behind `driver`.

    Weights and quantisation parameters are loaded once; inputs go in a batch at a time
    (the largest the memories hold, or `batch`). `progress(done, total)` is called after
    every batch.
    """
    config = driver.config or await driver.discover()
    x_q = np.asarray(x_q, np.int64)
    first = map_network(qnet, config, batch)
    plans = {first.batch: (first, generate(qnet, first))}
    program = plans[first.batch][1]

    await driver.write_entries("wmem", 0, program.wmem)
    await driver.write_entries("qmem", 0, program.qmem)
    result = NetworkRun(np.zeros((len(x_q), qnet.layers[-1].weights.shape[1]), np.int64), {},
                        batch=first.batch)
    if program.setup:
        await driver.load_program(program.setup)
        result.setup_counters = (await driver.run()).counters

    loaded = None
    for start in range(0, len(x_q), first.batch):
        chunk = x_q[start:start + first.batch]
        if len(chunk) not in plans:
            tail = map_network(qnet, config, len(chunk))
            plans[len(chunk)] = (tail, generate(qnet, tail))
        network_map, program = plans[len(chunk)]
        if loaded != len(chunk):
            zeros = np.zeros((1, config.cols), np.int64)
            for entry in network_map.zero_psum_entries:
                await driver.write_entries("psum", entry, zeros)
            await driver.load_program(program.inference)
            loaded = len(chunk)
        await driver.write_entries("amem", network_map.layers[0].input_base,
                                   input_entries(qnet, network_map, chunk))
        status = await driver.run()
        _add(result.counters, status.counters)
        entries = await driver.read_entries("amem", network_map.output_base,
                                            len(chunk) * network_map.output_blocks)
        outputs = entries.reshape(len(chunk), -1)[:, :result.outputs.shape[1]]
        result.outputs[start:start + len(chunk)] = outputs
        result.runs += 1
        if progress:
            progress(min(start + first.batch, len(x_q)), len(x_q))
    return result
