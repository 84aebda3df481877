"""`tessera sweep`."""

import dataclasses
from pathlib import Path

from golden import AccelConfig

from ..loaders import load_inputs, load_labels, load_network
from ..options import (DEFAULT_BUILD, MINUTES, NON_NEGATIVE_INT, POSITIVE_INT, SPARSITY,
                       UsageError, add_config_options, add_preset_option)

def run(args):
    from tessera.experiments.sweep import SweepData, SweptNetwork, run_sweep

    networks, layouts = {}, set()
    for path in args.networks:
        network, layout, given, head = load_network(path)
        name = Path(path).stem if Path(path).stem not in networks else str(path)
        networks[name] = SweptNetwork(network, given, head)
        layouts.add((layout, network.input_shape))
    if len(layouts) > 1:
        raise UsageError(f"the networks take different inputs ({sorted(layouts)}); a sweep "
                         f"runs the same --inputs through each")
    (layout, input_shape), = layouts
    calibration = load_inputs(args.calibration, "calibration data", input_shape, layout)
    inputs = load_inputs(args.inputs, "inputs", input_shape, layout)[:args.limit]
    classes = {n.network.shapes[-1][0] for n in networks.values()}
    labels = (load_labels(args.labels, len(inputs), min(classes)) if args.labels else None)
    axes = {field.name: getattr(args, field.name) for field in dataclasses.fields(AccelConfig)
            if getattr(args, field.name) is not None}
    axes["prune_blocks"] = args.prune_blocks
    data = SweepData.build(networks, calibration, inputs, labels, layout, args.preset)
    result = run_sweep(data, axes, args.out, scheduler=args.scheduler, workers=args.workers,
                       rtl_check=args.rtl_check, rtl_samples=args.rtl_samples, seed=args.seed,
                       timeout_s=args.timeout * 60)
    print(sweep_summary(result, data))
    print("wrote " + ", ".join(str(path) for path in result.files.values()))
    rtl_failed = [r for r in result.rtl_rows if not r["rtl_equals_golden"]]
    return 1 if rtl_failed or not result.front else 0


def sweep_summary(result, data):
    """The failed points, the Pareto front and the RTL checks, as text."""
    from firmware.runtime.report import format_table
    from tessera.experiments.sweep import quality_metric

    rows, metric = result.rows, quality_metric(result.rows)
    failed = [r for r in rows if r["error"] is not None]
    lines = [f"{len(rows) - len(failed)} of {len(rows)} points ran"
             + (f"; {len(failed)} failed, e.g. point {failed[0]['point']}: {failed[0]['error']}"
                if failed else "")]
    if result.front:
        by_point = {r["point"]: r for r in rows}
        basis = (f"top-1 accuracy on {len(data.inputs)} labelled samples" if metric == "accuracy"
                 else f"top-1 agreement with the unpruned float model on {len(data.inputs)} samples")
        lines.append(f"Pareto front ({basis}; energy per inference, {data.preset}):")
        columns = [("point", "point", "{}"), ("network", "network", "{}"), ("config", "config", "{}"),
                   ("pruned", "prune_blocks", "{:.2f}"), (metric, metric, "{:.3f}"),
                   ("on-chip nJ/inf", "on_chip_nJ_per_inference", "{:.1f}"),
                   ("cycles/inf", "cycles_per_inference", "{:.0f}"),
                   ("TOPS/W", "tops_per_watt", "{:.2f}")]
        lines.append(format_table([by_point[i] for i in result.front], columns))
    for r in result.rtl_rows:
        if r["error"] is not None:
            verdict = f"not run: {r['error']}"
        elif r["rtl_equals_golden"]:
            verdict = "RTL equals golden: outputs, every counter, the host words"
        else:
            verdict = f"RTL DIFFERS from golden: {r['differences']}"
        lines.append(f"RTL check, point {r['point']} ({r.get('config', '?')}, {r['samples']} "
                     f"samples): {verdict}")
    return "\n".join(lines)



def add_parser(commands):
    parser = commands.add_parser(
         "sweep", help="design-space sweep on Dask: configs x sparsity, golden runs, Pareto plot",
         description="Compile and run a network on the golden model at every point of the "
                     "cartesian product of the values given (each config option and "
                     "--prune-blocks take several), one Dask task a point, on an embedded "
                     "LocalCluster or an existing cluster. Writes one row per point to "
                     "sweep.csv and sweep.parquet (config, sparsity, accuracy or agreement, "
                     "cycles, energy by component per inference, TOPS/W, utilisation, "
                     "segments, or the point's error) and the accuracy-energy Pareto plot.")
    parser.add_argument("networks", nargs="+", metavar="network",
                        help="network .onnx or .npz, as for `tessera compile`; several are an "
                             "axis of the sweep (they must take the same inputs)")
    parser.add_argument("--calibration", required=True,
                        help="calibration inputs .npy (activation and ADC ranges)")
    parser.add_argument("--inputs", required=True, help="inputs .npy every point runs")
    parser.add_argument("--labels", default=None,
                        help="their classes, .npy of integers: accuracy (without: top-1 "
                             "agreement with the unpruned float model)")
    parser.add_argument("--limit", type=POSITIVE_INT, default=None, help="use only the first N inputs")
    parser.add_argument("--prune-blocks", type=SPARSITY, nargs="+", default=[0.0],
                        metavar="SPARSITY", help="block sparsities to sweep (default: 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_BUILD / "sweep",
                        help="results folder (default: build/sweep)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                        help="an existing Dask scheduler (default: an embedded LocalCluster)")
    parser.add_argument("--workers", type=POSITIVE_INT, default=None,
                        help="LocalCluster worker processes (default: one per core)")
    parser.add_argument("--rtl-check", type=NON_NEGATIVE_INT, default=0, metavar="N",
                        help="re-run N points (chosen with --seed) on the RTL, each checked "
                             "equal to golden (default: 0)")
    parser.add_argument("--rtl-samples", type=POSITIVE_INT, default=4,
                        help="samples per RTL check (default: 4)")
    parser.add_argument("--seed", type=NON_NEGATIVE_INT, default=0,
                        help="chooses the RTL-checked points and samples (default: 0)")
    parser.add_argument("--timeout", type=MINUTES, default=24 * 60, metavar="MINUTES",
                        help="bound of the golden runs, and again of the RTL checks; points "
                             "not done by then are rows with a timeout error (default: 1440)")
    add_preset_option(parser)
    add_config_options(parser, several=True)
    parser.set_defaults(handler=run)
    return parser
