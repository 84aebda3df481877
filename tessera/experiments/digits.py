"""The end-to-end experiment: scikit-learn's digits, an MLP and a small CNN trained in
NumPy, block-pruned aligned to the crossbar and int8 quantised, run on the golden model
(whole test split) and on the RTL (a subset), with accuracy, cycles, energy and TOPS/W
per variant."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.compiler.build import build_executable
from firmware.compiler.prune import prune_blocks
from firmware.frontend.train import accuracy, init_cnn, init_mlp, train
from firmware.runtime.executable import load_executable
from firmware.runtime.report import (energy_key, energy_summary, format_table, layer_energy,
                                     plot_layer_energy)
from firmware.runtime.run import compare_runs
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig
from golden.energy import DEFAULT_PRESET, PRESETS

__all__ = ["DigitsResult", "Model", "MODELS", "load_digits_split", "run_digits"]

SPARSITIES = (0.0, 0.5, 0.75)
PRUNE_STEPS = (0.25, 0.5, 0.75)       # gradual: prune to each step, fine-tune, go on


@dataclass(frozen=True)
class Model:
    name: str
    build: object                      # rng -> float Network
    image: bool                        # inputs as (8, 8, 1) images, else 64 features
    epochs: int
    finetune_epochs: int               # per pruning step
    finetune_lr: float


MODELS = (
    # 64-32-10; pixels ordered by their variance over the training set, so that the rows of
    # a crossbar block hold pixels of like importance and whole low-variance blocks go.
    Model("MLP", lambda rng: init_mlp([64, 32, 10], rng), False, 40, 40, 0.05),
    # conv 5x5x32 (host im2col; per 16 channels, a block of the central taps and one of
    # the outer), 2x2 max pool (MAX runs), conv 2x2x16 (on-device im2col: a block per
    # (tap, 16 channels)), dense 16-10. With 16 channels, a 50 % conv 2x2 keeps two of its
    # four taps, half the pooled image: 1.5 points lost (mean of 5 seeds); with 32, each
    # tap keeps its stronger channel half: 0.2 points.
    Model("CNN", lambda rng: init_cnn((8, 8, 1), [(5, 32, 1), ("maxpool", 2), (2, 16, 1)], 10, rng),
          True, 30, 20, 0.05),
)


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


def _inputs(model, x, pixel_order):
    return x.reshape(-1, 8, 8, 1) if model.image else x[:, pixel_order]


def prune_gradually(network, sparsity, config, x, y, model, rng, log):
    """Block-prune every matrix layer to `sparsity` in steps, fine-tuning after each."""
    for step in [s for s in PRUNE_STEPS if s <= sparsity]:
        network, masks = prune_blocks(network, step, config.rows, config.cols)
        log(f"{model.name} block {sparsity:.0%}: pruned to {step:.0%}, fine-tuning ...")
        network = train(network, x, y, model.finetune_epochs, rng, lr=model.finetune_lr,
                        masks=masks)
    return network


def export_onnx(network, pixel_order, path):
    """`network` as ONNX on raw digits (1x8x8 images; the MLP's pixel order folded into its
    first layer's rows), for `tessera compile`."""
    import onnx

    from firmware.frontend.onnx_io import to_onnx
    if pixel_order is not None:
        first = network.layers[0]
        raw = np.empty_like(first.weights)
        raw[pixel_order] = first.weights
        network = network.with_layers([first.with_matrix(raw)] + list(network.layers[1:]))
    onnx.save(to_onnx(network, path.stem), path)
    return path


def run_variant(model, network, name, config, x_train, x_test, y_test, rtl_samples, preset,
                out_dir, log, pixel_order=None):
    """Quantise and compile to an executable file, run that file on golden (all) and RTL
    (subset), and return the table row."""
    from sim.network import RTLTarget

    stem = f"digits_{model.name.lower()}_{name.replace(' ', '_').replace('%', '')}"
    # The executable takes raw digits, as the saved test data holds them: the host puts
    # each pixel on the row the MLP's pixel order gives it.
    order = None if model.image else pixel_order
    build = build_executable(network, config, x_train[:500], input_order=order)
    qnet = build.quantized
    exe = load_executable(build.executable.save(out_dir / f"{stem}.tessera"))
    raw_test = x_test
    if order is not None:
        raw_test = np.empty_like(x_test)
        raw_test[:, order] = x_test
    x_q = exe.input.quantize(raw_test)
    log(f"{model.name} {name}: golden model, {len(x_q)} test digits ...")
    golden_run = GoldenTarget().run(exe, x_q)
    network_q = x_q if order is None else x_q[:, order]
    if not np.array_equal(golden_run.outputs, qnet.forward(network_q)):
        raise AssertionError(f"{model.name} {name}: golden device disagrees with the int8 reference")

    subset = slice(None) if rtl_samples is None else slice(0, rtl_samples)
    log(f"{model.name} {name}: RTL, {len(x_q[subset])} test digits (Verilator) ...")
    rtl_run = RTLTarget(log).run(exe, x_q[subset])
    differences = compare_runs(GoldenTarget().run(exe, x_q[subset]), rtl_run)
    for line in differences:
        log(f"{model.name} {name}: RTL differs from golden: {line}")

    samples = len(rtl_run.outputs)
    energy = energy_summary(rtl_run.counters, config, samples, preset, rtl_run.host_words)
    # One batch's counters per layer, divided by its samples: energy per inference.
    per_layer = layer_energy(exe, preset)
    plot = plot_layer_energy(per_layer, out_dir / f"{stem}.png",
                             f"digits {model.name}, {name}: on-chip energy per inference\n"
                             f"{PRESETS[preset].name}, {config.name}, batch of {exe.batch}")
    export_onnx(network, None if model.image else pixel_order, out_dir / f"{stem}.onnx")
    return plot, {
        "model": model.name, "variant": name,
        "float": accuracy(network, x_test, y_test),
        "int8 golden": float(np.mean(np.argmax(golden_run.outputs, 1) == y_test)),
        "int8 RTL": float(np.mean(np.argmax(rtl_run.outputs, 1) == y_test[subset])),
        "RTL samples": samples,
        "RTL = golden": "NO" if differences else "yes",
        "batch": exe.batch,
        "blocks": sum(segment.blocks for segment in exe.segments),
        "cycles/inf": energy["cycles_per_inference"],
        "nJ/inf": energy[energy_key("on_chip")] * 1e9,
        "off-chip nJ": energy[energy_key("off_chip")] * 1e9,
        "ADC nJ": energy[energy_key("components")].get("ADC", 0) * 1e9,
        "TOPS/W": energy["tops_per_watt"],
    }


def run_digits(config=None, rtl_samples=36, seed=0, preset=DEFAULT_PRESET,
               out_dir=Path("build/report"), models=MODELS, log=print):
    """Train, compress, run and report. `rtl_samples=None` runs the whole test split on RTL."""
    config = config or AccelConfig()
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    pixel_order = np.argsort(-x_train.var(axis=0), kind="stable")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Raw digits in ONNX's NCHW layout, for `tessera compile` / `run` on the exported models.
    np.save(out_dir / "digits_calibration.npy", x_train[:500].reshape(-1, 1, 8, 8))
    np.save(out_dir / "digits_test.npy", x_test.reshape(-1, 1, 8, 8))
    np.save(out_dir / "digits_test_labels.npy", y_test)
    rows, plots = [], []
    for model in models:
        rng = np.random.default_rng(seed)
        train_in, test_in = _inputs(model, x_train, pixel_order), _inputs(model, x_test, pixel_order)
        log(f"training the {model.name} on {len(x_train)} digits ...")
        dense = train(model.build(rng), train_in, y_train, model.epochs, rng)
        for sparsity in SPARSITIES:
            name = "dense" if sparsity == 0 else f"block {sparsity:.0%}"
            network = prune_gradually(dense, sparsity, config, train_in, y_train, model, rng, log)
            plot, row = run_variant(model, network, name, config, train_in, test_in, y_test,
                                    rtl_samples, preset, out_dir, log, pixel_order)
            base = row if sparsity == 0 else next(r for r in rows if r["model"] == model.name)
            row["cycles vs dense"] = row["cycles/inf"] / base["cycles/inf"] - 1
            row["energy vs dense"] = row["nJ/inf"] / base["nJ/inf"] - 1
            row["int8 vs dense"] = 100 * (row["int8 golden"] - base["int8 golden"])
            rows.append(row)
            plots.append(plot)
    columns = [("model", "model", "{}"), ("variant", "variant", "{}"),
               ("float acc", "float", "{:.3f}"), ("int8 golden", "int8 golden", "{:.3f}"),
               ("Δ points", "int8 vs dense", "{:+.1f}"), ("int8 RTL", "int8 RTL", "{:.3f}"),
               ("RTL n", "RTL samples", "{}"), ("RTL=golden", "RTL = golden", "{}"),
               ("blocks", "blocks", "{}"), ("cycles/inf", "cycles/inf", "{:.1f}"),
               ("batch", "batch", "{}"), ("Δ cycles", "cycles vs dense", "{:+.0%}"),
               ("on-chip nJ/inf", "nJ/inf", "{:.2f}"), ("Δ energy", "energy vs dense", "{:+.0%}"),
               ("ADC nJ", "ADC nJ", "{:.2f}"), ("off-chip nJ/inf", "off-chip nJ", "{:.2f}"),
               ("TOPS/W", "TOPS/W", "{:.2f}")]
    return DigitsResult(rows, format_table(rows, columns), plots)
