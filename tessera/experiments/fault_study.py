"""Stuck cells on MNIST LeNet-5: accuracy of the golden device with a fraction of its cells
stuck (half at 0, half at the top level, seeded maps from `golden.faults`), running the
executable compiled without the fault map and those compiled around it (`tessera compile
--fault-map`: the bias corrected for inputs at rest, or for their calibration means; and
with `--fault-pairs`, each block split over two tiles), against the fault-free device;
with the cycles, energy and host words per inference."""

import numpy as np

from firmware.compiler.build import build_executable
from firmware.runtime.report import energy_key, energy_summary, format_table
from firmware.runtime.targets import GoldenTarget
from firmware.frontend.train import train
from golden import AccelConfig
from golden.energy import DEFAULT_PRESET
from golden.faults import FaultMap

from .mnist import LENET, lenet5, load_mnist_split

__all__ = ["run_fault_study"]

COLUMNS = [("stuck cells", "fraction", "{:.0%}"), ("seeds", "seeds", "{}"),
           ("unaware", "unaware", "{:.3f}"),
           ("mapped, bias at rest", "at_rest", "{:.3f}"),
           ("mapped", "aware", "{:.3f}"), ("Δ pts", "aware_delta", "{:+.1f}"),
           ("mapped in pairs", "pairs", "{:.3f}"), ("Δ pts, pairs", "pairs_delta", "{:+.1f}"),
           ("cycles/inf", "cycles", "{:.0f}"), ("cycles/inf, pairs", "pairs_cycles", "{:.0f}"),
           ("on-chip nJ/inf", "on_chip_nJ", "{:.1f}"),
           ("on-chip nJ/inf, pairs", "pairs_on_chip_nJ", "{:.1f}"),
           ("host words/inf", "host_words", "{:.0f}"),
           ("host words/inf, pairs", "pairs_host_words", "{:.0f}")]


def _measure(exe, x_q, labels, config, faults, preset):
    run = GoldenTarget(faults=faults).run(exe, x_q)
    energy = energy_summary(run.counters, config, len(x_q), preset, run.host_words)
    return {"accuracy": float(np.mean(run.outputs.argmax(1) == labels)),
            "cycles": energy["cycles_per_inference"],
            "on_chip_nJ": energy[energy_key("on_chip")] * 1e9,
            "host_words": energy["host_words_per_inference"]}


def run_fault_study(config=AccelConfig(), fractions=(0.01, 0.05, 0.10), seeds=(1, 2),
                    test_samples=500, seed=0, preset=DEFAULT_PRESET, log=print):
    """Train LeNet-5, quantise, then per fraction and seed of stuck cells run both
    executables on the faulty golden device. Returns (rows, table text)."""
    x_train, y_train, x_test, y_test = load_mnist_split(seed)
    x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    rng = np.random.default_rng(seed)
    log(f"training LeNet-5 on {len(x_train)} MNIST digits ({LENET.epochs} epochs) ...")
    network = train(lenet5(rng), x_train, y_train, LENET.epochs, rng, lr=0.02)
    calibration = x_train[:200]
    build = build_executable(network, config, calibration)
    x_q = build.executable.input.quantize(x_test)
    clean = _measure(build.executable, x_q, y_test, config, None, preset)
    rows = [{"fraction": 0.0, "seeds": "-", "unaware": clean["accuracy"],
             "at_rest": clean["accuracy"], "aware": clean["accuracy"], "aware_delta": 0.0,
             **clean}]
    for fraction in fractions:
        runs = []
        for map_seed in seeds:
            faults = FaultMap.random(config, fraction, map_seed)
            log(f"{fraction:.0%} stuck cells, map seed {map_seed}: {len(x_q)} digits, "
                f"unaware and mapped around ...")
            at_rest = build_executable(build.quantized, config, faults=faults).executable
            calibrated = build_executable(build.quantized, config, faults=faults,
                                          adc_calibration=calibration).executable
            pairs = build_executable(build.quantized, config, faults=faults,
                                     adc_calibration=calibration, fault_pairs=True).executable
            runs.append([_measure(exe, x_q, y_test, config, faults, preset)
                         for exe in (build.executable, at_rest, calibrated, pairs)])
        mean = lambda which, key: float(np.mean([r[which][key] for r in runs]))
        rows.append({"fraction": fraction, "seeds": len(seeds),
                     "unaware": mean(0, "accuracy"), "at_rest": mean(1, "accuracy"),
                     "aware": mean(2, "accuracy"),
                     "aware_delta": 100 * (mean(2, "accuracy") - clean["accuracy"]),
                     "pairs": mean(3, "accuracy"),
                     "pairs_delta": 100 * (mean(3, "accuracy") - clean["accuracy"]),
                     "cycles": mean(2, "cycles"), "on_chip_nJ": mean(2, "on_chip_nJ"),
                     "host_words": mean(2, "host_words"), "pairs_cycles": mean(3, "cycles"),
                     "pairs_on_chip_nJ": mean(3, "on_chip_nJ"),
                     "pairs_host_words": mean(3, "host_words")})
    title = (f"MNIST LeNet-5 with stuck cells ({len(x_q)} test digits, golden device "
             f"{config.name}, energy preset {preset}; per inference; accuracy the mean over "
             f"the map seeds)")
    return rows, title + "\n" + format_table(rows, COLUMNS)
