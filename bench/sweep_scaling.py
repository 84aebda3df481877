"""Wall time of one design-space sweep on a LocalCluster of 1 worker against 2 (and more),
the rows of each run compared, and the Pareto front it found.

    .venv/bin/python bench/sweep_scaling.py [--dataset mnist|digits] [--limit N] [--workers 1 2]

The sweep is ADC bits 3-8 x cell bits 1, 2, 4 x block sparsity 0, 0.5, 0.75 (54 points) of
the demo's dense CNN, which `tessera demo` (digits) or `tessera demo --dataset mnist`
writes first.
"""

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from tessera.loaders import load_inputs, load_labels, load_network
from tessera.experiments.sweep import SweepData, SweptNetwork, run_sweep

DATASETS = {   # model, calibration, inputs, labels, memories (as the demo compiles them)
    "mnist": ("build/mnist/mnist_lenet5_dense.onnx", "build/mnist/mnist_calibration.npy",
              "build/mnist/mnist_test.npy", "build/mnist/mnist_test_labels.npy",
              {}, "tessera demo --dataset mnist"),
    "digits": ("build/report/digits_cnn_dense.onnx", "build/report/digits_calibration.npy",
               "build/report/digits_test.npy", "build/report/digits_test_labels.npy", {},
               "make demo"),
}
AXES = {"adc_bits": [3, 4, 5, 6, 7, 8], "cell_bits": [1, 2, 4], "prune_blocks": [0.0, 0.5, 0.75]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    parser.add_argument("--limit", type=int, default=300, help="test samples per point (default: 300)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("build/bench/sweep"))
    args = parser.parse_args()
    model, calibration, inputs, labels, memories, maker = DATASETS[args.dataset]
    if not Path(model).is_file():
        sys.exit(f"{model} not found: run `{maker}` first")
    network, layout, given, head = load_network(model)
    x = load_inputs(inputs, "inputs", network.input_shape, layout)[:args.limit]
    data = SweepData.build({Path(model).stem: SweptNetwork(network, given, head)},
                           load_inputs(calibration, "calibration", network.input_shape, layout),
                           x, load_labels(labels, len(x), network.shapes[-1][0]), layout)
    points = 1
    for values in AXES.values():
        points *= len(values)
    print(f"{points} points ({', '.join(f'{k} {v}' for k, v in AXES.items())}) of {Path(model).stem}, "
          f"{len(x)} samples each, golden model, on a LocalCluster of single-threaded worker "
          f"processes (cluster start-up included)")
    times, frames, result = {}, {}, None
    for workers in args.workers:
        started = time.perf_counter()
        result = run_sweep(data, AXES, args.out / f"workers{workers}", base=memories,
                           workers=workers, progress=False, log=lambda *_: None)
        times[workers] = time.perf_counter() - started
        frames[workers] = pd.DataFrame(result.rows).drop(columns="seconds")
        failed = sum(r["error"] is not None for r in result.rows)
        task_seconds = sum(r["seconds"] for r in result.rows)
        print(f"  {workers} worker(s): {times[workers]:7.1f} s wall, {task_seconds:7.1f} s in "
              f"tasks, {failed} failed point(s)")
    base = args.workers[0]
    for workers in args.workers[1:]:
        same = frames[workers].equals(frames[base])
        print(f"  {workers} workers against {base}: {times[base] / times[workers]:.2f}x faster "
              f"(bound: {workers / base:.0f}x); rows {'identical' if same else 'DIFFER'}")
    by_point = {r["point"]: r for r in result.rows}
    print(f"Pareto front (top-1 accuracy on {len(x)} test samples against on-chip energy per "
          f"inference, {data.preset}):")
    for i in result.front:
        r = by_point[i]
        print(f"  adc_bits {r['adc_bits']}, cell_bits {r['cell_bits']}, pruned {r['prune_blocks']:.2f}: "
              f"accuracy {r['accuracy']:.3f}, {r['on_chip_nJ_per_inference']:.1f} nJ, "
              f"{r['cycles_per_inference']:.0f} cycles, {r['tops_per_watt']:.2f} TOPS/W")
    print(f"rows and plot: {args.out}")


if __name__ == "__main__":
    main()
