"""How busy the tiles are, and how fast the golden model is, per network.

For each network (random weights of the demos' shapes; 50 % variants block-pruned without
fine-tuning, which keeps the block pattern): cycles per inference against the ADC bound
(every tile's ADCs converting every cycle: adc_conversions / (tiles x cols / adc_share x
slices)), their ratio (and, measured in the same run, the ratio with every job the widest
K-reduction, as jobs were shaped before the timing model chose, with every block
through psum, REQUANT and MAX runs, before MVMs requantised and pooled as they wrote, and
with every segment at the batch of the one that holds fewest, before segments ran
batches of their own),
the share of MVM vectors that use all tiles, and the golden
backend's wall time against an exact float64-BLAS forward pass of the same int8 network
(`QuantizedNetwork.forward`, written apart from golden's crossbar), both given the same
samples: one, and all of them at once (golden then runs the executable's batches side by
side, `golden.device.DeviceStack`, and makes a chain's products ahead as one,
`golden.lookahead`; measured in the same run with every product a run at a time too).

    .venv/bin/python bench/efficiency.py [--samples N]
"""

import argparse
import os
import time

import numpy as np

from firmware.compiler import codegen, mapper
from firmware.compiler.build import build_executable
from firmware.compiler.prune import prune_blocks
from firmware.runtime.report import format_table
from firmware.runtime.targets import GoldenTarget
from firmware.frontend.train import init_mlp
from golden import AccelConfig, isa, lookahead
from golden.timing import adc_bound_cycles
from tessera.experiments.digits import MODELS
from tessera.experiments.mnist import lenet5


REPEATS = 5
MIN_TIMING_S = 0.05


def networks(rng):
    digits_mlp, digits_cnn = (model.build(rng) for model in MODELS)
    big_mlp = init_mlp([784, 1024, 1024, 10], rng)
    return [("digits MLP 64-32-10", digits_mlp, (64,), AccelConfig()),
            ("digits CNN", digits_cnn, (8, 8, 1), AccelConfig()),
            # The default amem holds 13 CNN digits; four times as much holds a batch over 32.
            ("digits CNN, 4x memories", digits_cnn, (8, 8, 1),
             AccelConfig(amem_depth=4096, psum_depth=4096)),
            ("MLP 128-256-256-128", init_mlp([128, 256, 256, 128], rng), (128,), AccelConfig()),
            # the default config: its first convolution in bands of rows
            ("MNIST LeNet-5", lenet5(rng), (28, 28, 1), AccelConfig()),
            ("MLP 784-1024-1024-10", big_mlp, (784,), AccelConfig()),
            ("MLP 784-1024-1024-10, 64 tiles", big_mlp, (784,), AccelConfig(tiles=64))]


def fastest(work):
    """(the result, the shortest wall time of one call among REPEATS timings), as timeit
    advises (the rest is noise). Each timing averages enough calls to last at least
    MIN_TIMING_S: a lone call of a fraction of a millisecond moved by 20 % between runs."""
    started = time.perf_counter()
    result = work()
    calls = max(1, int(MIN_TIMING_S / max(time.perf_counter() - started, 1e-6)))
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        times.append((time.perf_counter() - started) / calls)
    return result, min(times)


def ratio_with(network, config, x, module, knob, value):
    """bound/actual with a rule of the compiler as it was before (`module.knob` set to
    `value` for the build), measured in the same run."""
    saved = getattr(module, knob)
    setattr(module, knob, value)
    try:
        return batch_ratio(build_executable(network, config, x), config, x)
    finally:
        setattr(module, knob, saved)


def batch_ratio(build, config, x):
    """bound/actual of one full batch of `build`'s executable."""
    exe = build.executable
    c = GoldenTarget().run(exe, build.quantized.input.quantize(x[:exe.batch])).counters
    return adc_bound_cycles(config, c["adc_conversions"]) / c["cycles"]


def measure(name, network, shape, config, samples, rng):
    x = rng.uniform(0, 1, (64, *shape))
    # every job the widest K-reduction (before the timing model shaped them); every block
    # through psum, REQUANT and MAX runs (before MVMs requantised and pooled as they wrote)
    k_first = ratio_with(network, config, x, mapper, "SHAPE_GAIN", 0.0)
    unfused = ratio_with(network, config, x, codegen, "FUSED_OUTPUTS", False)
    build = build_executable(network, config, x)
    qnet, exe = build.quantized, build.executable
    # every segment at the batch of the one that holds fewest (before segments had their own)
    one_batch = batch_ratio(build_executable(network, config, x,
                                             batch=min(exe.segment_batches)), config, x)
    # Whole batches only, so that both sides run the executable's batch every time.
    samples = -(-samples // exe.batch) * exe.batch
    x_q = qnet.input.quantize(rng.uniform(0, 1, (samples, *shape)))
    GoldenTarget().run(exe, x_q[:4]), qnet.forward(x_q[:4])            # warm-up: first calls
    _, golden_one = fastest(lambda: GoldenTarget().run(exe, x_q[:1]))
    _, numpy_one = fastest(lambda: qnet.forward(x_q[:1]))
    run, golden_s = fastest(lambda: GoldenTarget().run(exe, x_q))
    reference, numpy_s = fastest(lambda: qnet.forward(x_q))
    # every product a run at a time (before products were made ahead: golden.lookahead)
    saved, lookahead.MAX_COLUMNS = lookahead.MAX_COLUMNS, 0
    try:
        _, alone_s = fastest(lambda: GoldenTarget().run(exe, x_q))
    finally:
        lookahead.MAX_COLUMNS = saved
    if not np.array_equal(run.outputs, reference):
        raise SystemExit(f"{name}: golden differs from the int8 reference")
    c = run.counters
    bound = adc_bound_cycles(config, c["adc_conversions"])
    full = vectors = 0
    for segment_run, count in exe.distinct_runs(exe.batch):  # equal sub-batches: once
        for words in segment_run.program:
            ins = isa.decode(words)
            if ins.opcode == isa.Opcode.MVM:
                vectors += count * ins.count
                full += count * ins.count if ins.mvm_tiles == config.tiles else 0
    return {"network": name, "config": config.name, "batch": exe.batch,
            "segments": len(exe.segments), "cycles": c["cycles"] / samples,
            "bound": bound / samples, "ratio": bound / c["cycles"], "k first": k_first,
            "unfused": unfused, "one batch": one_batch,
            "all tiles": full / vectors if vectors else 0.0,
            "samples": samples, "golden 1": 1e3 * golden_one, "x numpy 1": golden_one / numpy_one,
            "golden ms": 1e3 * golden_s / samples, "numpy ms": 1e3 * numpy_s / samples,
            "x numpy": golden_s / numpy_s, "x alone": alone_s / numpy_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256,
                        help="inferences per network, rounded up to whole batches (default: 256)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name, network, shape, config in networks(rng):
        for sparsity in (0.0, 0.5):
            variant = network if not sparsity else \
                prune_blocks(network, sparsity, config.rows, config.cols)[0]
            label = f"{name}{' 50 %' if sparsity else ''}"
            print(f"{label} ...", flush=True)
            rows.append(measure(label, variant, shape, config, args.samples, rng))
    columns = [("network", "network", "{}"), ("batch", "batch", "{}"),
               ("segments", "segments", "{}"), ("cycles/inf", "cycles", "{:.0f}"),
               ("ADC bound/inf", "bound", "{:.0f}"), ("bound/actual", "ratio", "{:.2f}"),
               ("... widest K first", "k first", "{:.2f}"),
               ("... REQUANT and MAX runs", "unfused", "{:.2f}"),
               ("... one batch for all segments", "one batch", "{:.2f}"),
               ("vectors on all tiles", "all tiles", "{:.0%}"),
               ("golden ms, 1 sample", "golden 1", "{:.3f}"), ("golden/NumPy", "x numpy 1", "{:.1f}x"),
               ("samples", "samples", "{}"),
               ("golden ms/inf", "golden ms", "{:.4f}"), ("NumPy ms/inf", "numpy ms", "{:.4f}"),
               ("golden/NumPy", "x numpy", "{:.1f}x"),
               ("... products one run at a time", "x alone", "{:.1f}x")]
    print(f"\nAt least {args.samples} inferences each, in whole batches; cycles from the golden "
          f"model's counters; wall times on this machine, per call, the fastest of {REPEATS} "
          f"timings of at least {MIN_TIMING_S * 1e3:.0f} ms each: golden "
          f"(its equal batches side by side) and the NumPy forward pass given the same samples, "
          f"one sample and all of them, both on BLAS's default threads ({os.cpu_count()} "
          f"cores here)")
    print(format_table(rows, columns))


if __name__ == "__main__":
    main()
