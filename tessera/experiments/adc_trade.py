"""The analog trade on one page: accuracy against ADC bits (with and without per-layer ADC
calibration), energy per inference and TOPS/W, for a trained CNN on the golden model; the
per-layer energy breakdown; published efficiencies marked for context."""

import csv
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from firmware.compiler.build import build_executable
from firmware.compiler.pipeline import LossyAdcWarning
from firmware.compiler.quantize import quantize
from firmware.runtime.report import (energy_key, energy_summary, format_table, layer_energy,
                                     plot_layer_energy)
from firmware.runtime.targets import GoldenTarget
from firmware.frontend.train import train
from golden import AccelConfig
from golden.energy import DEFAULT_PRESET, PRESETS

__all__ = ["ANCHORS", "run_adc_trade"]

# Published efficiencies, 8-bit inputs and weights (TOPS/W, 2 ops a MAC), for context.
ANCHORS = {
    # ISAAC Table 6 per IMA: (ADC 16 + DAC 4 + crossbars 2.4 + shift-add 0.2) mW per 100 ns
    # read of 8 x 128 x 128 1b x 2b products; an 8b x 8b MAC is 32 of them: 0.552 pJ.
    "ISAAC tile (Table 6)": 2 / (22.6e-3 * 100e-9 / (8 * 128 * 128) * 32) / 1e12,
    # Hung et al., Nature Electronics 2021: 15.6 TOPS/W at 8b inputs x 8b weights.
    "TSMC 22 nm ReRAM macro (Hung 2021)": 15.6,
    # Valavi et al., JSSC 2019: 866 1b-TOPS/W; an 8b x 8b MAC is 64 1b x 1b ones.
    "SRAM charge-domain (Valavi 2019), /64": 866 / 64,
}


def _train_model(dataset, seed, log):
    rng = np.random.default_rng(seed)
    if dataset == "mnist":
        from tessera.experiments.mnist import LENET, lenet5, load_mnist_split
        x_train, y_train, x_test, y_test = load_mnist_split(seed)
        network, epochs, name = lenet5(rng), LENET.epochs, "MNIST LeNet-5"
    else:
        from tessera.experiments.digits import MODELS, load_digits_split
        x_train, y_train, x_test, y_test = load_digits_split(seed)
        x_train, x_test = x_train.reshape(-1, 8, 8, 1), x_test.reshape(-1, 8, 8, 1)
        cnn = MODELS[1]
        network, epochs, name = cnn.build(rng), cnn.epochs, "digits CNN"
    log(f"training {name} on {len(x_train)} samples ({epochs} epochs) ...")
    network = train(network, x_train, y_train, epochs, rng, lr=0.02 if dataset == "mnist" else 0.05)
    return name, network, x_train, x_test, y_test


def run_adc_trade(dataset="mnist", bits=(4, 5, 6, 7, 8), test_samples=500, seed=0,
                  preset=DEFAULT_PRESET, out_dir=Path("build/adc_trade"), log=print):
    """Train, quantise, and for each ADC width compile with and without calibration, run on
    the golden model and tabulate (text and CSV, energies per inference); write the plots. Returns (rows, table text, plot paths)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name, network, x_train, x_test, y_test = _train_model(dataset, seed, log)
    x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    calibration = x_train[:200]
    qnet = quantize(network, calibration)
    base = AccelConfig()
    reference = float(np.mean(qnet.predict(x_test) == y_test))
    # The per-layer breakdown: 2 bits below lossless, calibrated, if swept.
    plot_bits = base.lossless_adc_bits - 2 if base.lossless_adc_bits - 2 in bits else min(bits)
    rows, layer_plot = [], None
    for adc_bits in bits:
        config = replace(base, adc_bits=adc_bits)
        variants = [("lossless", calibration)] if config.is_lossless else \
            [("calibrated", calibration), ("uncalibrated", None)]
        for kind, data in variants:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LossyAdcWarning)   # uncalibrated is the point
                exe = build_executable(qnet, config, adc_calibration=data).executable
            x_q = exe.input.quantize(x_test)
            log(f"{adc_bits}-bit ADC, {kind}: golden model, {len(x_q)} test samples ...")
            run = GoldenTarget().run(exe, x_q)
            energy = energy_summary(run.counters, config, len(x_q), preset, run.host_words)
            per_inference = energy[energy_key("components")]
            rows.append({"ADC bits": adc_bits, "ADC range": kind,
                         "accuracy": float(np.mean(run.outputs.argmax(1) == y_test)),
                         "int8 reference": reference,
                         "nJ/inf": energy[energy_key("on_chip")] * 1e9,
                         "ADC nJ/inf": per_inference.get("ADC", 0.0) * 1e9,
                         "TOPS/W": energy["tops_per_watt"],
                         "cycles/inf": energy["cycles_per_inference"]})
            if adc_bits == plot_bits and kind != "uncalibrated":
                per_layer = layer_energy(exe, preset)
                layer_plot = plot_layer_energy(
                    per_layer, out_dir / f"{dataset}_layers_adc{adc_bits}.png",
                    f"{name}, {adc_bits}-bit ADC ({kind}): on-chip energy per inference\n"
                    f"{PRESETS[preset].name}, {config.name}, batch of {exe.batch}")
    columns = [("ADC bits", "ADC bits", "{}"), ("ADC range", "ADC range", "{}"),
               ("top-1", "accuracy", "{:.3f}"), ("int8 reference", "int8 reference", "{:.3f}"),
               ("on-chip nJ/inf", "nJ/inf", "{:.1f}"), ("ADC nJ/inf", "ADC nJ/inf", "{:.1f}"),
               ("TOPS/W", "TOPS/W", "{:.2f}"), ("cycles/inf", "cycles/inf", "{:.0f}")]
    table = (f"{name}, {len(x_test)} test samples, golden model; {PRESETS[preset].name}; "
             f"config {base.name} with adc_bits varied; energy per inference\n"
             + format_table(rows, columns))
    (out_dir / f"{dataset}_adc_trade.txt").write_text(table + "\n")
    with open(out_dir / f"{dataset}_adc_trade.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot = _plot(rows, name, preset, base, out_dir / f"{dataset}_adc_trade.png")
    return rows, table, [plot, layer_plot]


def _plot(rows, name, preset, base, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc_ax, eff_ax) = plt.subplots(1, 2, figsize=(10, 4))
    labels = {"calibrated": "calibrated per layer (encoding, shift)",
              "uncalibrated": "uncalibrated (two's complement, shift 0)", "lossless": "lossless"}
    for kind, marker in (("calibrated", "o"), ("uncalibrated", "x"), ("lossless", "s")):
        mine = [r for r in rows if r["ADC range"] == kind]
        if mine:
            acc_ax.plot([r["nJ/inf"] for r in mine], [100 * r["accuracy"] for r in mine], marker,
                        label=labels[kind], linestyle="-" if kind != "lossless" else "none")
            for r in mine:
                acc_ax.annotate(f"{r['ADC bits']}b", (r["nJ/inf"], 100 * r["accuracy"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
    acc_ax.axhline(100 * rows[0]["int8 reference"], color="grey", linewidth=0.8,
                   linestyle=":", label="int8 reference")
    acc_ax.set_xlabel("on-chip energy per inference (nJ)")
    acc_ax.set_ylabel("top-1 accuracy (%)")
    acc_ax.legend(fontsize=8)
    by_bits = {r["ADC bits"]: r["TOPS/W"] for r in rows}
    eff_ax.plot(list(by_bits), list(by_bits.values()), "o-", label=f"{name} on this config")
    for (label, value), style, above in zip(ANCHORS.items(), ("--", "-.", ":"), (3, 3, -9)):
        eff_ax.axhline(value, color="grey", linestyle=style, linewidth=0.9)
        eff_ax.annotate(f"{label}: {value:.1f}", (min(by_bits), value), fontsize=7,
                        textcoords="offset points", xytext=(0, above))
    eff_ax.set_yscale("log")
    eff_ax.set_xlabel("ADC bits")
    eff_ax.set_ylabel("TOPS/W (on chip, 8b x 8b, 2 ops a MAC)")
    fig.suptitle(f"{name}: accuracy, energy and efficiency against ADC bits\n"
                 f"{PRESETS[preset].name}; {base.name}, adc_bits varied", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
