"""The `tessera` command line."""

import argparse
import asyncio
import dataclasses
import json
import pickle
import sys
from pathlib import Path

import numpy as np

from golden import AccelConfig

DEFAULT_BUILD = Path("build")


class UsageError(ValueError):
    """Bad input to a command: a file, an array, an option."""


def add_config_options(parser, defaults_from=None):
    """One option per AccelConfig field; `defaults_from` names where unset ones come
    from when that is not DESIGN.md (they are then left None for `config_from_args`)."""
    group = parser.add_argument_group(f"accelerator config (defaults: {defaults_from or 'DESIGN.md'})")
    for field in dataclasses.fields(AccelConfig):
        default = field.default
        shown = "lossless" if default is None else default
        group.add_argument(f"--{field.name.replace('_', '-')}", type=int,
                           default=None if defaults_from else default, metavar="N",
                           help=f"default: {defaults_from or shown}")


def config_from_args(args, base=None):
    """The AccelConfig the options give, unset ones taken from the `base` field dict."""
    fields = dict(base or {})
    for field in dataclasses.fields(AccelConfig):
        value = getattr(args, field.name)
        if value is not None or base is None:
            fields[field.name] = value
    return AccelConfig(**fields)


def progress_printer(label):
    def show(done, total):
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total} samples", end=end, file=sys.stderr, flush=True)
    return show


# Commands ------------------------------------------------------------------------------

def cmd_generate(args):
    import rtl
    config = config_from_args(args)
    component, name = {"accelerator": (rtl.Accelerator, "accelerator"),
                       "tile": (rtl.CrossbarTile, "crossbar_tile")}[args.top]
    print(f"elaborating {name} for {config.name} ...", flush=True)
    path = rtl.generate_verilog(component(config), args.out, name)
    print(f"wrote {path} and {path.with_suffix('.json')}")


def cmd_tile_check(args):
    from sim.tile import run_tile_check

    if args.vectors <= 0:
        raise UsageError(f"--vectors must be a positive integer, not {args.vectors!r}")
    config = config_from_args(args)
    print(f"crossbar tile RTL against the golden model, {args.vectors} random int8 products\n"
          f"config: {config}")
    run = run_tile_check(config, vectors=args.vectors, seed=args.seed,
                         log=lambda message: print(message, flush=True))
    figures = run.results
    if run.failed or not figures:
        print(f"simulation failed; last lines of {run.log_path}:\n{run.log_tail()}", file=sys.stderr)
        return 1
    rows = [("config", config.name),
            ("lossless ADC", f"{config.is_lossless} (adc_bits {config.adc_bits}, "
                             f"lossless {config.lossless_adc_bits})"),
            ("vectors", figures["vectors"]),
            ("value mismatches", figures["value_mismatches"]),
            ("cycle mismatches", figures["cycle_mismatches"]),
            ("saturated ADC codes", figures["saturated_codes"]),
            ("cycles per product", figures["cycles_per_product"]),
            ("simulated cycles", figures["sim_cycles"]),
            ("simulated cycles/s", f"{figures['sim_cycles_per_second']:,.0f}"),
            ("Verilog", run.log_path.parent / "crossbar_tile.v")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0 if figures["value_mismatches"] == figures["cycle_mismatches"] == 0 else 1


def cmd_build(args):
    from rtl.boards import BOARD_CONFIGS
    from rtl.fpga_build import FpgaBuildError, build_board

    config = config_from_args(args, base=BOARD_CONFIGS[args.board])
    try:
        report = build_board(args.board, config, args.out, args.baud,
                             log=lambda message: print(message, flush=True))
    except FpgaBuildError as error:
        print(f"tessera build: {error}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def cmd_demo(args):
    from tessera.digits import run_digits

    config = config_from_args(args)
    rtl_samples = None if args.rtl_all else args.rtl_samples
    if rtl_samples is not None and rtl_samples <= 0:
        raise UsageError(f"--rtl-samples must be a positive integer, not {rtl_samples!r}")
    print(f"Tessera demo: digits MLP and CNN, dense and block-pruned, int8, on {config.name}\n"
          f"golden model on the whole test split, RTL (Verilator) on "
          f"{'all of it' if rtl_samples is None else f'{rtl_samples} digits'}; energy preset "
          f"{args.preset}", flush=True)
    result = run_digits(config, rtl_samples=rtl_samples, preset=args.preset,
                        out_dir=args.out, log=lambda message: print(message, flush=True))
    print()
    print(result.table)
    print("\nper-layer energy plots: " + ", ".join(str(p) for p in result.plots))
    return 0 if all(row["RTL = golden"] == "yes" for row in result.rows) else 1


def load_network(path):
    """(float Network, input layout) from an .onnx model (NCHW images, see
    :mod:`firmware.onnx_io`) or an .npz holding w0, b0, w1, b1, ... (float, weights
    (in, out)) and optionally `relu`, one bool per layer (default: all but the last)."""
    from firmware.network import Dense, Network

    path = Path(path)
    if not path.exists():
        raise UsageError(f"network file {path} does not exist")
    if path.suffix == ".onnx":
        from firmware.onnx_io import load_onnx
        network = load_onnx(path)
        return network, "NCHW" if len(network.input_shape) == 3 else "vector"
    with np.load(path) as arrays:
        count = sum(1 for key in arrays.files if key.startswith("w") and key[1:].isdigit())
        if count == 0:
            raise UsageError(f"{path}: no layer arrays w0, b0, ... found (keys: {arrays.files})")
        relu = arrays["relu"] if "relu" in arrays.files else [i < count - 1 for i in range(count)]
        layers = []
        for i in range(count):
            if f"b{i}" not in arrays.files:
                raise UsageError(f"{path}: layer {i} has w{i} but no b{i}")
            layers.append(Dense(f"dense{i}", arrays[f"w{i}"], arrays[f"b{i}"], bool(relu[i])))
    return Network(tuple(layers)), "vector"


def load_inputs(path, what, input_shape, layout):
    """Samples from an .npy as the network takes them (NHWC images). `layout` "NCHW"
    (an ONNX model's) takes (samples, C, H, W), or each sample flattened in that order."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} file {path} does not exist")
    array = np.load(path)
    features = int(np.prod(input_shape))
    if layout == "NCHW":
        height, width, channels = input_shape
        expected = f"(samples, {channels}, {height}, {width}) or (samples, {features})"
        if array.ndim == 2 and array.shape[1] == features:
            array = array.reshape(len(array), channels, height, width)
        if array.shape[1:] != (channels, height, width):
            raise UsageError(f"{what} {path} must have shape {expected}, not {array.shape}")
        return array.transpose(0, 2, 3, 1)
    if array.ndim < 2 or int(np.prod(array.shape[1:])) != features:
        raise UsageError(f"{what} {path} must have shape (samples, "
                         f"{', '.join(map(str, input_shape))}), not {array.shape}")
    return array.reshape(len(array), *input_shape)


def cmd_compile(args):
    from firmware.codegen import generate
    from firmware.mapper import map_network
    from firmware.prune import prune_blocks
    from firmware.quantize import quantize

    config = config_from_args(args)
    network, layout = load_network(args.network)
    calibration = load_inputs(args.calibration, "calibration data", network.input_shape, layout)
    if args.prune_blocks:
        network, _ = prune_blocks(network, args.prune_blocks, config.rows, config.cols,
                                  layers=args.prune_layers)
    qnet = quantize(network, calibration, args.method, args.percentile)
    network_map = map_network(qnet, config)
    program = generate(qnet, network_map)
    with open(args.out, "wb") as f:
        pickle.dump({"config": config.to_dict(), "qnet": qnet, "input_layout": layout}, f)
    print(f"compiled {len(qnet.layers)} layers for {config.name}: batch {network_map.batch}, "
          f"{network_map.images} weight blocks, {len(program.inference)} instructions a batch, "
          f"tiles {'resident' if network_map.resident else 'reprogrammed every batch'}")
    for lm in network_map.layers:
        print(f"  {lm.name}: {lm.k_blocks}x{lm.n_blocks} blocks, {lm.nonzero.sum()} stored "
              f"({lm.block_utilisation:.0%}), crossbar cell utilisation {lm.cell_utilisation:.0%}")
    print(f"wrote {args.out}")


def cmd_run(args):
    from firmware import Driver
    from firmware.report import energy_summary
    from firmware.runtime import run_network
    from firmware.transports import GoldenBus
    from golden.device import Device

    with open(args.compiled, "rb") as f:
        compiled = pickle.load(f)
    config, qnet = AccelConfig.from_dict(compiled["config"]), compiled["qnet"]
    inputs = load_inputs(args.inputs, "inputs", qnet.input_shape,
                         compiled.get("input_layout", "vector"))
    x_q = qnet.input.quantize(inputs[:args.limit])
    if args.backend == "golden":
        run = asyncio.run(run_network(Driver(GoldenBus(Device(config))), qnet, x_q,
                                      progress=progress_printer("golden")))
        outputs, counters = run.outputs, run.counters
    else:
        from sim.network import run_network_on_rtl
        outputs, counters = run_network_on_rtl(qnet, x_q, config)
    summary = energy_summary(counters, config, len(x_q), args.preset)
    record = {"backend": args.backend, "config": config.to_dict(), "samples": len(x_q),
              "outputs_int8": outputs.tolist(),
              "outputs": qnet.output.dequantize(outputs).tolist(),
              "predictions": np.argmax(outputs, axis=1).tolist(), "counters": counters}
    Path(args.out).write_text(json.dumps(record))
    print(f"{len(x_q)} samples on {args.backend}: {summary['cycles_per_inference']:.1f} cycles and "
          f"{summary['per_inference']['total'] * 1e9:.2f} nJ per inference ({summary['preset']}); "
          f"wrote {args.out}")


def cmd_report(args):
    from firmware.report import energy_summary

    path = Path(args.run)
    if not path.exists():
        raise UsageError(f"run file {path} does not exist")
    record = json.loads(path.read_text())
    config = AccelConfig.from_dict(record["config"])
    summary = energy_summary(record["counters"], config, record["samples"], args.preset)
    print(f"{record['samples']} samples on {record['backend']}, {config.name}, {summary['preset']}")
    print(f"  cycles per inference  {summary['cycles_per_inference']:.1f}")
    for component, joules in sorted(summary["per_inference"].items(), key=lambda kv: -kv[1]):
        print(f"  {component:<20}  {joules * 1e9:10.3f} nJ")
    print(f"  TOPS/W                {summary['tops_per_watt']:.3f}")
    print("counters: " + ", ".join(f"{k}={v}" for k, v in record["counters"].items()))


def build_parser():
    from golden.energy import PRESETS

    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Describe, verify and drive a tiled in-memory-computing crossbar accelerator.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="digits end to end: train, prune, quantise, run on golden and RTL",
        description="Train an MLP on scikit-learn's digits, block-prune it (0/50/75 %%), "
                    "quantise to int8, run it on the golden model and on the RTL, and print "
                    "accuracy, cycles, energy and TOPS/W per variant.")
    demo.add_argument("--rtl-samples", type=int, default=36,
                      help="test digits run on the RTL (default: 36, one batch)")
    demo.add_argument("--rtl-all", action="store_true", help="run the whole test split on the RTL")
    demo.add_argument("--preset", choices=sorted(PRESETS), default="isaac_reram_32nm",
                      help="energy table (default: isaac_reram_32nm)")
    demo.add_argument("--out", type=Path, default=DEFAULT_BUILD / "report",
                      help="folder for the plots (default: build/report)")
    add_config_options(demo)
    demo.set_defaults(handler=cmd_demo)

    tile = commands.add_parser("tile-check", help="random products on one tile: RTL vs golden",
                               description="Verilate the crossbar tile, stream random int8 vectors "
                                           "through it and the golden model, and print a summary.")
    tile.add_argument("--vectors", type=int, default=2000, help="random input vectors (default: 2000)")
    tile.add_argument("--seed", type=int, default=1, help="NumPy seed (default: 1)")
    add_config_options(tile)
    tile.set_defaults(handler=cmd_tile_check)

    generate = commands.add_parser("generate", help="write Verilog and the config JSON",
                                   description="Write the accelerator's (or one tile's) Verilog "
                                               "and its config as JSON.")
    generate.add_argument("--top", choices=["accelerator", "tile"], default="accelerator",
                          help="what to generate (default: accelerator)")
    generate.add_argument("--out", type=Path, default=DEFAULT_BUILD / "verilog",
                          help="output folder (default: build/verilog)")
    add_config_options(generate)
    generate.set_defaults(handler=cmd_generate)

    build = commands.add_parser(
        "build", help="FPGA bitstream with the YoWASP tools, and its resources and Fmax",
        description="Build the accelerator behind the UART bridge for a board with the "
                    "open toolchain from PyPI (YoWASP Yosys and nextpnr), and report resources "
                    "used / available and Fmax against the board clock. Fails, saying which, "
                    "when the design does not fit or misses timing.")
    build.add_argument("--board", required=True, choices=["icebreaker", "ulx3s"],
                       help="iCEBreaker (iCE40UP5K) or ULX3S 85F (ECP5)")
    build.add_argument("--baud", type=int, default=115200, help="UART baud rate (default: 115200)")
    build.add_argument("--out", type=Path, default=DEFAULT_BUILD / "boards",
                       help="build folder (default: build/boards)")
    add_config_options(build, defaults_from="the board's config, rtl/boards.py")
    build.set_defaults(handler=cmd_build)

    compile_ = commands.add_parser(
        "compile", help="quantise, prune and map a network",
        description="Read a float network (an ONNX model: Gemm/MatMul, Conv, Relu, MaxPool, "
                    "AveragePool, Flatten, residual Add; or an .npz with w0, b0, w1, b1, ..., "
                    "weights (in, out)), "
                    "optionally block-prune it, quantise it to int8 with calibration data, map "
                    "it onto the accelerator and save the result.")
    compile_.add_argument("network", help="network .onnx or .npz")
    compile_.add_argument("--calibration", required=True,
                          help="calibration inputs, .npy in the model's layout: (samples, "
                               "features), or (samples, C, H, W) for an ONNX CNN")
    compile_.add_argument("--method", choices=["minmax", "percentile"], default="minmax",
                          help="activation calibration (default: minmax)")
    compile_.add_argument("--percentile", type=float, default=99.99, help="for --method percentile")
    compile_.add_argument("--prune-blocks", type=float, default=0.0, metavar="SPARSITY",
                          help="block sparsity aligned to rows x cols (default: 0)")
    compile_.add_argument("--prune-layers", nargs="*", metavar="LAYER",
                          help="layers to prune (default: all)")
    compile_.add_argument("--out", default="compiled.pkl", help="output file (default: compiled.pkl)")
    add_config_options(compile_)
    compile_.set_defaults(handler=cmd_compile)

    run = commands.add_parser("run", help="run a compiled network on the golden model or the RTL",
                              description="Run float inputs (.npy) through a compiled network.")
    run.add_argument("compiled", help="file written by `tessera compile`")
    run.add_argument("--inputs", required=True,
                     help="inputs .npy, laid out as for `tessera compile --calibration`")
    run.add_argument("--backend", choices=["golden", "rtl"], default="golden",
                     help="golden device model or Verilated RTL (default: golden)")
    run.add_argument("--limit", type=int, default=None, help="run only the first N samples")
    run.add_argument("--preset", choices=sorted(PRESETS), default="isaac_reram_32nm")
    run.add_argument("--out", default="run.json", help="outputs and counters (default: run.json)")
    run.set_defaults(handler=cmd_run)

    report = commands.add_parser("report", help="energy breakdown and TOPS/W of a run",
                                 description="Energy per inference by component, and TOPS/W, "
                                             "from the counters a `tessera run` saved.")
    report.add_argument("run", help="file written by `tessera run`")
    report.add_argument("--preset", choices=sorted(PRESETS), default="isaac_reram_32nm")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except (ValueError, KeyError, OSError) as error:
        # ConfigError, UsageError, NetworkError, MappingError: each names what was wrong
        parser.exit(2, f"tessera {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
