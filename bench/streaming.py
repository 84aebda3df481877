"""What streaming a network costs, and what bursts buy the golden backend.

An MLP 784-512-256-10 (random weights) compiled for the default config runs on the
golden backend twice in the same process: with the driver's bursts (one array copy per
run of entries) and with every transfer as single words (the transport before bursts).
Prints its segments, host words and energy per inference on and off chip, cycles per
inference, and wall time per inference for both, with their ratio. Outputs are checked
equal to the int8 reference.

    .venv/bin/python bench/streaming.py [--samples N] [--sizes 784-512-256-10]

(`--samples` defaults to one full batch of the executable.)
"""

import argparse
import asyncio
import time

import numpy as np

from firmware import Driver
from firmware.compiler.build import build_executable
from firmware.frontend.network import Dense, Network
from firmware.runtime.report import energy_key, energy_summary
from firmware.runtime.run import run_executable
from firmware.runtime.transports import GoldenBus
from golden import AccelConfig
from golden.device import Device
from golden.energy import DEFAULT_PRESET


class WordBus(GoldenBus):
    """The golden bus as it was before bursts: every word one read or write (no entry
    stores or loads, which the driver would take instead of bursts)."""
    max_burst = 1
    store_entries = load_entries = None

    async def read_burst(self, address, count):
        return [await self.read(address + 4 * i) for i in range(count)]

    async def write_burst(self, address, words):
        for i, value in enumerate(words):
            await self.write(address + 4 * i, value)


def timed_run(bus_class, exe, x_q):
    driver = Driver(bus_class(Device(exe.config)))
    started = time.perf_counter()
    run = asyncio.run(run_executable(driver, exe, x_q))
    return run, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None,
                        help="inferences (default: one full batch of the executable)")
    parser.add_argument("--sizes", default="784-512-256-10", help="MLP layer sizes")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split("-")]
    rng = np.random.default_rng(0)
    network = Network(tuple(
        Dense(f"fc{i}", rng.normal(0, 1 / np.sqrt(a), (a, b)), rng.normal(0, 0.1, b),
              relu=i < len(sizes) - 2) for i, (a, b) in enumerate(zip(sizes, sizes[1:]))))
    x = rng.uniform(0, 1, (64, sizes[0]))             # calibration
    config = AccelConfig()

    started = time.perf_counter()
    build = build_executable(network, config, x)
    compile_s = time.perf_counter() - started
    qnet, exe = build.quantized, build.executable
    x_q = exe.input.quantize(rng.uniform(0, 1, (args.samples or exe.batch, sizes[0])))
    print(f"MLP {args.sizes} (random weights) on {config.name}; quantised and compiled in "
          f"{compile_s:.2f} s")
    print("\n".join(exe.summary))

    timed_run(GoldenBus, exe, x_q)          # warm-up: programs are planned on their first run
    burst_run, burst_s = timed_run(GoldenBus, exe, x_q)
    word_run, word_s = timed_run(WordBus, exe, x_q)
    reference = qnet.forward(x_q)
    for name, run in (("bursts", burst_run), ("words", word_run)):
        if not np.array_equal(run.outputs, reference):
            raise SystemExit(f"golden run with {name} differs from the int8 reference")
    assert burst_run.counters == word_run.counters and burst_run.host_words == word_run.host_words

    n = len(x_q)
    energy = energy_summary(burst_run.counters, config, n, args.preset, burst_run.host_words)
    written = sum(burst_run.host_words["written"].values()) / n
    read = sum(burst_run.host_words["read"].values()) / n
    print(f"\n{n} inferences in batches of {' + '.join(map(str, burst_run.batches))}; "
          f"per inference ({energy['preset']}):")
    print(f"  device runs               {burst_run.runs / n:12.1f}")
    print(f"  cycles                    {energy['cycles_per_inference']:12.1f}")
    print(f"  host words written        {written:12.1f}   "
          + ", ".join(f"{k} {v / n:.0f}" for k, v in burst_run.host_words["written"].items()))
    print(f"  host words read           {read:12.1f}   "
          + ", ".join(f"{k} {v / n:.0f}" for k, v in burst_run.host_words["read"].items()))
    print(f"  on-chip energy            {energy[energy_key('on_chip')] * 1e9:12.2f} nJ")
    print(f"  off-chip energy           {energy[energy_key('off_chip')] * 1e9:12.2f} nJ "
          f"({energy[energy_key('off_chip')] / energy[energy_key('on_chip')]:.1f}x on chip)")
    print(f"  golden wall time, bursts  {1e3 * burst_s / n:12.2f} ms")
    print(f"  golden wall time, words   {1e3 * word_s / n:12.2f} ms   "
          f"(bursts {word_s / burst_s:.1f}x faster)")


if __name__ == "__main__":
    main()
