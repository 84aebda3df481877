"""The end-to-end experiment: scikit-learn's digits, an MLP trained in NumPy, int8
quantised and block-pruned, run on the golden model (whole test split) and on the RTL
(a subset), with accuracy, cycles, energy and TOPS/W per variant."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware import Driver
from firmware.codegen import generate
from firmware.mapper import map_network
from firmware.prune import prune_blocks
from firmware.quantize import quantize
from firmware.report import energy_summary, format_table, layer_counters, plot_layer_energy
from firmware.runtime import run_network
from firmware.train import accuracy, init_mlp, train
from firmware.transports import GoldenBus
from golden import AccelConfig
from golden.device import Device
from golden.energy import PRESETS, energy_breakdown

__all__ = ["DigitsResult", "load_digits_split", "run_digits"]

HIDDEN = 32
SPARSITIES = (0.0, 0.5, 0.75)


@dataclass
class DigitsResult:
    rows: list
    table: str
    plots: list


def load_digits_split(seed):
    from sklearn.datasets import load_digits   # bundled with scikit-learn: no download
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def run_digits(config=None, rtl_samples=36, seed=0, preset="isaac_reram_32nm",
               out_dir=Path("build/report"), log=print):
    """Train, compress, run and report. `rtl_samples=None` runs the whole test split on RTL."""
    from sim.network import run_network_on_rtl

    config = config or AccelConfig()
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    log(f"training a 64-{HIDDEN}-10 MLP on {len(x_train)} digits ...")
    dense = train(init_mlp([64, HIDDEN, 10], rng), x_train, y_train, 40, rng)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, plots = [], []
    for sparsity in SPARSITIES:
        name = "dense" if sparsity == 0 else f"block {sparsity:.0%}"
        network = dense
        if sparsity:
            # The hidden layer is pruned; the 10-way classifier keeps its two blocks.
            network, masks = prune_blocks(dense, sparsity, config.rows, config.cols, layers=["dense0"])
            log(f"{name}: fine-tuning with the block mask ...")
            network = train(network, x_train, y_train, 15, rng, lr=0.02, masks=masks)
        qnet = quantize(network, x_train[:500])
        x_q = qnet.input.quantize(x_test)

        log(f"{name}: golden model, {len(x_q)} test digits ...")
        golden_run = asyncio.run(run_network(Driver(GoldenBus(Device(config))), qnet, x_q))
        reference = qnet.forward(x_q)
        if not np.array_equal(golden_run.outputs, reference):
            raise AssertionError(f"{name}: golden device disagrees with the int8 reference")

        subset = slice(None) if rtl_samples is None else slice(0, rtl_samples)
        log(f"{name}: RTL, {len(x_q[subset])} test digits (Verilator) ...")
        rtl_outputs, rtl_counters = run_network_on_rtl(qnet, x_q[subset], config, log=log)
        golden_subset = asyncio.run(run_network(Driver(GoldenBus(Device(config))), qnet, x_q[subset]))
        rtl_agrees = (np.array_equal(rtl_outputs, golden_subset.outputs)
                      and rtl_counters == golden_subset.counters)

        samples = len(rtl_outputs)
        energy = energy_summary(rtl_counters, config, samples, preset)
        network_map = map_network(qnet, config)
        program = generate(qnet, network_map)
        per_layer = {layer: energy_breakdown(counters, PRESETS[preset])
                     for layer, counters in layer_counters(program, config).items()}
        plots.append(plot_layer_energy(per_layer, out_dir / f"digits_energy_{int(sparsity * 100)}.png",
                                       f"digits MLP, {name}: energy per batch of {network_map.batch}"))
        rows.append({
            "variant": name,
            "float": accuracy(network, x_test, y_test),
            "int8 golden": float(np.mean(np.argmax(golden_run.outputs, 1) == y_test)),
            "int8 RTL": float(np.mean(np.argmax(rtl_outputs, 1) == y_test[subset])),
            "RTL samples": samples,
            "RTL = golden": "yes" if rtl_agrees else "NO",
            "blocks": sum(int(lm.nonzero.sum()) for lm in network_map.layers),
            "cycles/inf": energy["cycles_per_inference"],
            "nJ/inf": energy["per_inference"]["total"] * 1e9,
            "ADC nJ": energy["per_inference"].get("ADC", 0) * 1e9,
            "TOPS/W": energy["tops_per_watt"],
        })
    columns = [("variant", "variant", "{}"), ("float acc", "float", "{:.3f}"),
               ("int8 golden", "int8 golden", "{:.3f}"), ("int8 RTL", "int8 RTL", "{:.3f}"),
               ("RTL n", "RTL samples", "{}"), ("RTL=golden", "RTL = golden", "{}"),
               ("blocks", "blocks", "{}"), ("cycles/inf", "cycles/inf", "{:.1f}"),
               ("nJ/inf", "nJ/inf", "{:.2f}"), ("ADC nJ", "ADC nJ", "{:.2f}"),
               ("TOPS/W", "TOPS/W", "{:.2f}")]
    return DigitsResult(rows, format_table(rows, columns), plots)
