"""The networks users have: published architectures (tessera.zoo, seeded He weights, BN
statistics measured on the calibration images) imported, quantised, compiled and run.

For each architecture and input size it prints whether it compiles (or the one-line
refusal), the compile time, the segments, and for the sizes it runs (--run): cycles,
on-chip and off-chip energy and host words per inference (golden model, batch as
compiled, the ISAAC preset), golden wall time per inference and against an exact
float64-BLAS forward pass of the same int8 network (both after a warm-up run of the
same samples), golden against BLAS at one sample (the fastest of 5 timings of at least
50 ms each), on that executable and on one compiled for a batch of 1 (`--batch 1`:
every segment's output stays on chip), the share of int8 outputs
equal to the int8 reference, and top-1 agreement with onnxruntime's QDQ model of the same
network (reference mode, after onnxruntime's pre-processing).

    .venv/bin/python bench/zoo.py [--sizes 32 224] [--run 32] [--samples 4]
        [--amem-depth N] [--only resnet18 ...]
"""

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from firmware.compiler.build import build_executable
from firmware.frontend.network import NetworkError
from firmware.frontend.onnx_io import load_onnx_model
from firmware.frontend.onnx_reference import quantize_with_onnxruntime, run_reference
from firmware.compiler.quantize import CalibrationWarning, quantize
from firmware.runtime.report import energy_key, energy_summary, format_table
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig
from golden.energy import DEFAULT_PRESET
from tessera.zoo import build

from efficiency import fastest                                      # (bench/)

# name: (architecture, options at full width); the small sizes run at width 1/4
ZOO = {
    "resnet18": ("resnet", dict(blocks=(2, 2, 2, 2), stem="imagenet")),
    "resnet50": ("resnet", dict(blocks=(3, 4, 6, 3), bottleneck=True, stem="imagenet")),
    "vgg16": ("vgg", dict(layers=16)),
    "vgg19": ("vgg", dict(layers=19)),
    "mobilenet_v1": ("mobilenet", {}),
    "squeezenet1.1": ("squeezenet", {}),
    "densenet121": ("densenet", dict(layers=(6, 12, 24, 16), growth=32)),
    "inception_v1": ("inception", dict(modules=9)),
    "alexnet": ("alexnet", {}),
}
PRESET = DEFAULT_PRESET


def measure(name, size, run, samples, config, folder, rng):
    architecture, options = ZOO[name]
    width = 1.0 if size >= 224 else 0.25
    x = rng.uniform(0, 1, (max(samples, 4) + 4, 3, size, size)).astype(np.float32)
    calibration, test = x[:4], x[4:4 + samples]
    row = {"network": name, "size": size, "width": width}
    model, _ = build(architecture, calibration[:2], size=size, width=width,
                     classes=1000 if size >= 224 else 10, **options)
    path = folder / f"{name}_{size}.onnx"
    import onnx
    onnx.save(model, path)
    try:
        network = load_onnx_model(path).network
    except NetworkError as error:
        return dict(row, compiles=f"refused at import: {str(error).split(': ', 1)[1][:90]}")
    nhwc = lambda a: a.transpose(0, 2, 3, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        qnet = quantize(network, nhwc(calibration))
    start = time.perf_counter()
    try:
        exe = build_executable(qnet, config).executable
    except NetworkError as error:
        return dict(row, compiles=f"refused: {str(error)[:110]}")
    row.update(compiles="yes", compile_s=round(time.perf_counter() - start, 1),
               segments=len(exe.segments))
    if not run:
        return row
    x_q = qnet.input.quantize(nhwc(test))
    # warm-up: each program's plan and caches are made on its first run, and the samples'
    # batch runs programs of sizes one sample does not
    GoldenTarget().run(exe, x_q), qnet.forward(x_q)
    start = time.perf_counter()
    golden = GoldenTarget().run(exe, x_q)
    golden_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = qnet.forward(x_q)             # the exact float64-BLAS int8 forward pass
    row["golden_ms_per_inference"] = 1e3 * golden_s / len(x_q)
    row["golden_vs_blas"] = golden_s / (time.perf_counter() - start)
    energy = energy_summary(golden.counters, config, len(x_q), PRESET, golden.host_words)
    row.update(cycles_per_inference=int(energy["cycles_per_inference"]),
               **{energy_key(where, "uJ"): round(energy[energy_key(where)] * 1e6, 2)
                  for where in ("on_chip", "off_chip")},
               host_words=int(energy["host_words_per_inference"]),
               equal_int8_reference=float(np.mean(golden.outputs == reference)))
    one = x_q[:1]
    _, blas_one = fastest(lambda: qnet.forward(one))
    for key, executable in (("golden_vs_blas_1", exe),
                            ("golden_vs_blas_1_at_batch_1",
                             build_executable(qnet, config, batch=1).executable)):
        GoldenTarget().run(executable, one)                         # warm-up
        row[key] = fastest(lambda: GoldenTarget().run(executable, one))[1] / blas_one
    quantized = folder / f"{name}_{size}_qdq.onnx"
    quantize_with_onnxruntime(path, quantized, calibration, preprocess=True)
    imported = load_onnx_model(quantized)
    qdq = build_executable(imported.network, config, nhwc(calibration), given=imported.quant)
    ours = GoldenTarget().run(qdq.executable, qdq.executable.input.quantize(nhwc(test))).outputs
    row["top1_vs_onnxruntime_qdq"] = float(np.mean(
        ours.argmax(1) == run_reference(quantized, test).argmax(1)))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224],
                        help="input sizes, pixels (default: 32 224)")
    parser.add_argument("--run", type=int, nargs="*", default=[32],
                        help="sizes also run on golden and onnxruntime (default: 32)")
    parser.add_argument("--samples", type=int, default=16, help="samples run (default: 16)")
    parser.add_argument("--amem-depth", type=int, default=None,
                        help="activation entries (default: the default config's 1,024)")
    parser.add_argument("--only", nargs="+", choices=sorted(ZOO), help="these networks only")
    args = parser.parse_args()
    config = AccelConfig() if args.amem_depth is None else AccelConfig(
        amem_depth=args.amem_depth, psum_depth=args.amem_depth)
    print(f"config {config.name}; energy per inference with the {PRESET} preset, host "
          f"words at its off-chip cost; small sizes at width 1/4 and 10 classes, 224 at "
          f"full width and 1,000")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only or ZOO:
            for size in args.sizes:
                rng = np.random.default_rng(0)
                row = measure(name, size if name != "alexnet" else max(size, 64),
                              size in args.run, args.samples, config, Path(folder), rng)
                print(row, flush=True)
                rows.append(row)
    columns = [("network", "network", "{}"), ("px", "size", "{}"),
               ("compile s", "compile_s", "{}"), ("segments", "segments", "{}"),
               ("cycles/inf", "cycles_per_inference", "{:,}"),
               ("on-chip uJ/inf", energy_key("on_chip", "uJ"), "{}"), ("off-chip uJ/inf", energy_key("off_chip", "uJ"), "{}"),
               ("host words/inf", "host_words", "{:,}"),
               ("golden ms/inf", "golden_ms_per_inference", "{:.1f}"),
               ("golden / BLAS", "golden_vs_blas", "{:.1f}x"),
               ("1 sample", "golden_vs_blas_1", "{:.2f}x"),
               ("1 sample, --batch 1", "golden_vs_blas_1_at_batch_1", "{:.2f}x"),
               ("= int8 ref", "equal_int8_reference", "{:.3f}"),
               ("top-1 = ORT QDQ", "top1_vs_onnxruntime_qdq", "{:.2f}")]
    print(format_table(rows, columns))
    for row in rows:
        if row["compiles"] != "yes":
            print(f"{row['network']} at {row['size']} px: {row['compiles']}")


if __name__ == "__main__":
    main()
