"""`tessera bist`: the built-in self test, which finds stuck cells and writes a fault map."""

import sys

from ..options import (FRACTION, NON_NEGATIVE_INT, POSITIVE_INT, UsageError, add_config_options,
                       config_from_args, print_rows, progress_printer, refuse_overwrite)


def injected_faults(args, config):
    """The fault map to inject into a model (golden or RTL), or None for a board."""
    from golden.faults import FaultMap

    if args.backend == "board":
        if args.inject is not None or args.inject_map is not None:
            raise UsageError("--inject and --inject-map are for the models: a board's stuck "
                             "cells are its own")
        return None
    if args.inject is not None and args.inject_map is not None:
        raise UsageError("give --inject or --inject-map, not both")
    if args.inject_map is not None:
        faults = FaultMap.load(args.inject_map)
        if faults.config != config:
            raise UsageError(f"--inject-map {args.inject_map} is for {faults.config.name}, "
                             f"the device is {config.name} (set the config options to match)")
        return faults
    return FaultMap.random(config, args.inject or 0.0, args.seed)


def self_test_on(args, config, faults):
    """Run the self test on `--backend`; returns (found FaultMap, figures)."""
    from firmware.runtime.self_test import self_test
    from firmware.runtime.targets import BoardTarget, drive_golden
    from golden.device import Device
    from golden.faults import FaultMap

    progress = progress_printer("self test", "patterns")
    if args.backend == "rtl":
        from sim.accelerator import run_accelerator_check

        run = run_accelerator_check(config, order=("self_test",), faults=faults,
                                    log=lambda message: print(message, file=sys.stderr))
        if run.failed or "self_test" not in run.results:
            raise RuntimeError(f"the RTL self test failed; see {run.log_path}")
        figures = dict(run.results["self_test"])
        return FaultMap.from_json(figures.pop("found"), "the RTL self test"), figures
    if args.backend == "board":
        report = BoardTarget(args.port, args.baud).drive(lambda d: self_test(d, progress))
    else:
        report = drive_golden(Device(config, faults=faults), lambda d: self_test(d, progress))
    return report.faults, {"runs": report.runs, "device_cycles": report.device_cycles,
                           "ambiguous_weights": report.ambiguous_weights}


def summary_rows(found, figures, injected):
    from firmware.runtime.self_test import untestable_cells
    from golden.faults import STUCK_AT_1

    c = found.config
    cells = found.states.size
    ones = sum(found.states[cell] == STUCK_AT_1 for cell in found.faulty)
    per_tile = [int((found.states[t] != 0).sum()) for t in range(c.tiles)]
    rows = [("device", c.name),
            ("cells tested", f"{cells} ({c.tiles} tiles x 2 sides x {c.slices} slices x "
                             f"{c.rows} rows x {c.cols} columns)"),
            ("stuck cells found", f"{len(found.faulty)} ({found.fraction:.2%} of cells): "
                                  f"{len(found.faulty) - ones} at 0, {ones} at 1"),
            ("per tile", ", ".join(map(str, per_tile))),
            ("weights of alike assignments", f"{figures['ambiguous_weights']} (their stuck-at-1 "
                                             f"cells are one of several that compute alike)"),
            ("cells untestable at 0", f"{len(untestable_cells(c)) * c.rows * c.cols} per tile "
                                      f"(no int8 weight sets them: harmless)"),
            ("device runs", figures["runs"]),
            ("device cycles", f"{figures['device_cycles']} (whole self test)")]
    if injected is not None:
        want, got = set(injected.faulty), set(found.faulty)
        rows.append(("against the injected map", f"{len(want)} injected, {len(want & got)} "
                                                  f"found, {len(want - got)} missed, "
                                                  f"{len(got - want)} false"))
    return rows


def run(args):
    from firmware.runtime.self_test import SelfTestError

    config = config_from_args(args)
    refuse_overwrite(args.out, {"--inject-map": args.inject_map})
    if (args.port is None) != (args.backend != "board"):
        raise UsageError("--port names the board's serial port: give it with --backend board, "
                         "and only then")
    injected = injected_faults(args, config)
    try:
        found, figures = self_test_on(args, config, injected)
    except SelfTestError as error:
        print(f"tessera bist: {error}", file=sys.stderr)
        return 1
    asked = args.inject is not None or args.inject_map is not None
    rows = summary_rows(found, figures, injected if asked else None)
    print(f"self test on {args.backend}")
    print_rows(rows)
    found.save(args.out)
    print(f"fault map written to {args.out}")
    return 0


def add_parser(commands):
    parser = commands.add_parser(
        "bist", help="built-in self test: find stuck cells, write a fault map",
        description="Program every tile with test patterns, read them back through MVMs with "
                    "unit vectors (host interface and ISA only), and write the stuck cells "
                    "found as a fault map (JSON). On the models, --inject sticks random cells "
                    "first, so the map found can be checked against the one injected.")
    parser.add_argument("--backend", choices=["golden", "rtl", "board"], default="golden",
                        help="golden device model, Verilated RTL (built with fault injection), "
                             "or a board over its serial port (default: golden)")
    parser.add_argument("--inject", type=FRACTION, default=None, metavar="FRACTION",
                        help="models only: stick this fraction of cells, half at 0 and half "
                             "at 1, seeded by --seed")
    parser.add_argument("--inject-map", default=None, metavar="FILE",
                        help="models only: stick the cells of this fault map")
    parser.add_argument("--seed", type=NON_NEGATIVE_INT, default=1,
                        help="seed of --inject's draw (default: 1)")
    parser.add_argument("--port", default=None, metavar="DEVICE",
                        help="the board's serial port (with --backend board)")
    parser.add_argument("--baud", type=POSITIVE_INT, default=115200,
                        help="the board's UART baud rate, as built (default: 115200)")
    parser.add_argument("-o", "--out", default="fault_map.json",
                        help="where to write the fault map (default: fault_map.json)")
    add_config_options(parser)
    parser.set_defaults(handler=run)
    return parser
