"""`tessera run`."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from firmware.runtime.report import energy_key

from ..loaders import load_inputs, load_labels
from ..options import (NON_NEGATIVE_INT, POSITIVE_INT, UsageError, add_host_link_option,
                       add_preset_option, progress_printer, refuse_overwrite)

RUN_DIGEST = "run_sha256"      # run.json's SHA-256 of its other fields


CLIPPING_WARNING = 0.01         # inputs clipped by the input quantisation above this warn


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


def fault_map_of(args, exe):
    """The `--fault-map` the golden device runs with, checked against the executable's
    config; None without one."""
    from golden.faults import FaultMap

    if args.fault_map is None:
        return None
    faults = FaultMap.load(args.fault_map)
    if faults.config != exe.config:
        raise UsageError(f"--fault-map {args.fault_map} is for {faults.config.name}, the "
                         f"executable for {exe.config.name}")
    return faults


def target_of(args, nonideal, faults=None):
    """The target `--backend` names, with its options."""
    from firmware.runtime.targets import BoardTarget, GoldenTarget

    if (nonideal is not None or faults is not None) and args.backend != "golden":
        raise UsageError("non-idealities and --fault-map are modelled on the golden backend "
                         "only (`tessera bist --backend rtl` runs the RTL with stuck cells)")
    if (args.port is None) != (args.backend != "board"):
        raise UsageError("--port names the board's serial port: give it with --backend board, "
                         "and only then")
    if args.backend == "board":
        return BoardTarget(args.port, args.baud)
    if args.fast_load and args.backend != "rtl":
        raise UsageError("--fast-load is an RTL simulation option: give it with --backend rtl")
    if args.backend == "rtl":
        from sim.network import RTLTarget
        return RTLTarget(fast_load=args.fast_load)
    return GoldenTarget(nonideal, faults)


def run_record(args, exe, run, x_q, labels, clipped, nonideal, ideal, faults=None):
    """run.json's fields: what ran where, its outputs and counters, and the figures the
    run measured (accuracy; with non-idealities, how far from the ideal run)."""
    predictions = np.argmax(run.outputs, axis=1)
    record = {"backend": args.backend, "config": exe.config.to_dict(), "samples": len(x_q),
              "outputs_int8": run.outputs.tolist(),
              "outputs": exe.output.finish(run.outputs).tolist(),
              "predictions": predictions.tolist(), "counters": run.counters,
              "host_words": run.host_words, "setup_counters": run.setup_counters,
              "batch": exe.batch, "batches": run.batches, "segments": len(exe.segments),
              "inputs_clipped_fraction": clipped}
    if labels is not None:
        record["accuracy"] = float(np.mean(predictions == labels))
    if nonideal is not None:
        record["nonideal"] = dataclasses.asdict(nonideal)
    if faults is not None:
        record["fault_map"] = {"file": str(args.fault_map), "stuck_cells": len(faults.faulty),
                               "fraction": faults.fraction}
    if ideal is not None:
        ideal_predictions = np.argmax(ideal.outputs, axis=1)
        record["top1_agreement_with_ideal"] = float(np.mean(predictions == ideal_predictions))
        record["mean_abs_output_error_int8"] = float(np.mean(np.abs(run.outputs - ideal.outputs)))
        if labels is not None:
            record["ideal_accuracy"] = float(np.mean(ideal_predictions == labels))
    return record


def print_summary(record, exe, summary, nonideal):
    """The run's figures, each with its unit and basis."""
    clipped = record["inputs_clipped_fraction"]
    print(f"{record['samples']} samples on {record['backend']}, {exe.config.name}, "
          f"{len(exe.segments)} segment(s), in {describe_batches(record['batches'])}")
    print(f"  cycles per inference       {summary['cycles_per_inference']:.1f}  (mean over these "
          f"batches; a full batch is {exe.batch})")
    print(f"  on-chip energy             {summary[energy_key('on_chip')] * 1e9:.2f} nJ per "
          f"inference ({summary['preset']})")
    print(f"  off-chip (host transfers)  {summary[energy_key('off_chip')] * 1e9:.2f} nJ per "
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
    if "accuracy" in record:
        print(f"  top-1 accuracy             {record['accuracy']:.4f} ({record['samples']} labels)")
    if nonideal is not None:
        print(f"  non-idealities             {nonideal.describe()}")
    if "fault_map" in record:
        faults = record["fault_map"]
        print(f"  stuck cells                {faults['stuck_cells']} ({faults['fraction']:.2%} of "
              f"the cells), from {faults['file']}")
    if "top1_agreement_with_ideal" in record:
        print(f"  against the ideal run      top-1 agreement {record['top1_agreement_with_ideal']:.4f}, "
              f"mean |output error| {record['mean_abs_output_error_int8']:.2f} int8 LSB"
              + (f", accuracy {record['accuracy']:.4f} vs {record['ideal_accuracy']:.4f} ideal "
                 f"({100 * (record['accuracy'] - record['ideal_accuracy']):+.1f} points)"
                 if "accuracy" in record else ""))


def run(args):
    from firmware.data_files import record_digest
    from firmware.runtime.executable import load_executable
    from firmware.runtime.report import energy_summary
    from firmware.runtime.targets import GoldenTarget, TargetError

    refuse_overwrite(args.out, {"executable": args.compiled, "--inputs": args.inputs,
                                "--labels": args.labels})
    exe = load_executable(args.compiled)
    inputs = load_inputs(args.inputs, "inputs", exe.input.shape, exe.input.layout)
    inputs = inputs[:args.limit]
    labels = (load_labels(args.labels, len(inputs), exe.output.features)
              if args.labels else None)
    x_q = exe.input.quantize(inputs)
    nonideal = nonidealities_from_args(args)
    faults = fault_map_of(args, exe)
    target = target_of(args, nonideal, faults)
    ideal = None
    try:
        if nonideal is not None:        # the same device (stuck cells too), no analog effects
            ideal = GoldenTarget(faults=faults).run(exe, x_q,
                                                    progress=progress_printer("golden, ideal"))
        run = target.run(exe, x_q, progress=progress_printer(target.name))
    except TargetError as error:
        print(f"tessera run: {error}", file=sys.stderr)
        return 1
    summary = energy_summary(run.counters, exe.config, len(x_q), args.preset, run.host_words,
                             args.host_link)
    record = run_record(args, exe, run, x_q, labels, exe.input.clipped_fraction(inputs),
                        nonideal, ideal, faults)
    record[RUN_DIGEST] = record_digest(record, RUN_DIGEST)
    Path(args.out).write_text(json.dumps(record))
    print_summary(record, exe, summary, nonideal)
    print(f"wrote {args.out}")


def add_parser(commands):
    parser = commands.add_parser("run", help="run a compiled network on the golden model, the "
                                             "RTL or a board",
                                 description="Run float inputs (.npy) through an executable from "
                                             "`tessera compile`; print cycles, energy on and off "
                                             "chip (and accuracy with --labels); save run.json.")
    parser.add_argument("compiled", help="executable written by `tessera compile`")
    parser.add_argument("--inputs", required=True,
                        help="inputs .npy, laid out as for `tessera compile --calibration`")
    parser.add_argument("--backend", choices=["golden", "rtl", "board"], default="golden",
                        help="golden device model, Verilated RTL, or a board built by `tessera "
                             "build` over its serial port (default: golden)")
    parser.add_argument("--fast-load", action="store_true",
                        help="with --backend rtl: write and read memory images straight into "
                             "the simulated memories instead of over AXI4-Lite (the same "
                             "contents and host-word counts, much faster)")
    parser.add_argument("--port", default=None, metavar="DEVICE",
                        help="the board's serial port, e.g. /dev/ttyUSB1 (with --backend board)")
    parser.add_argument("--baud", type=POSITIVE_INT, default=115200,
                        help="the board's UART baud rate, as built (default: 115200)")
    parser.add_argument("--limit", type=POSITIVE_INT, default=None,
                        help="run only the first N samples")
    parser.add_argument("--labels", default=None,
                        help="true classes, .npy of integers (samples,): prints top-1 accuracy")
    add_preset_option(parser)
    parser.add_argument("--out", default="run.json", help="outputs and counters (default: run.json)")
    add_host_link_option(parser)
    analog = parser.add_argument_group(
        "non-idealities", "analog effects on the golden backend (off by default); the run is "
                          "then repeated ideal and compared")
    for option, (field, text) in NONIDEAL_OPTIONS.items():
        analog.add_argument(option, dest=field, type=float, default=0.0, metavar="X",
                            help=f"{text} (default: 0)")
    analog.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="seed of the non-idealities (default: 0)")
    analog.add_argument("--fault-map", default=None, metavar="FILE",
                        help="stick the cells of this fault map (from `tessera bist`) on the "
                             "golden device (the ideal run, with other non-idealities, keeps "
                             "them: it isolates the analog effects)")
    parser.set_defaults(handler=run)
    return parser
