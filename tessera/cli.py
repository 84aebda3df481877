"""The `tessera` command line."""

import argparse
import dataclasses
import sys
from pathlib import Path

from golden import AccelConfig, ConfigError

DEFAULT_BUILD = Path("build")


def add_config_options(parser):
    group = parser.add_argument_group("accelerator config (defaults: DESIGN.md)")
    for field in dataclasses.fields(AccelConfig):
        default = field.default
        group.add_argument(f"--{field.name.replace('_', '-')}", type=int, default=default,
                           metavar="N", help=f"default: {'lossless' if default is None else default}")


def config_from_args(args):
    return AccelConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(AccelConfig)})


def cmd_generate(args):
    import rtl
    config = config_from_args(args)
    component, name = {"accelerator": (rtl.Accelerator, "accelerator"),
                       "tile": (rtl.CrossbarTile, "crossbar_tile")}[args.top]
    print(f"elaborating {name} for {config.name} ...", flush=True)
    path = rtl.generate_verilog(component(config), args.out, name)
    print(f"wrote {path} and {path.with_suffix('.json')}")


def cmd_demo(args):
    from sim.tile import run_tile_check

    if args.vectors <= 0:
        raise ConfigError(f"--vectors must be a positive integer, not {args.vectors!r}")
    config = config_from_args(args)
    print(f"Tessera demo: the crossbar tile RTL against the golden model, {args.vectors} "
          f"random int8 products\nconfig: {config}")
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
            ("verilate + compile", f"{run.build_seconds:.1f} s"),
            ("Verilog", run.log_path.parent / "crossbar_tile.v")]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0 if figures["value_mismatches"] == figures["cycle_mismatches"] == 0 else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Describe, verify and drive a tiled in-memory-computing crossbar accelerator.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="write Verilog and the config JSON",
                                   description="Write the accelerator's (or one tile's) Verilog "
                                               "and its config as JSON.")
    generate.add_argument("--top", choices=["accelerator", "tile"], default="accelerator",
                          help="what to generate (default: accelerator)")
    generate.add_argument("--out", type=Path, default=DEFAULT_BUILD / "verilog",
                          help="output folder (default: build/verilog)")
    add_config_options(generate)
    generate.set_defaults(handler=cmd_generate)

    demo = commands.add_parser("demo", help="check random products on the RTL against the golden model",
                               description="Verilate the crossbar tile, stream random int8 vectors "
                                           "through it and the golden model, and print a summary.")
    demo.add_argument("--vectors", type=int, default=2000, help="random input vectors (default: 2000)")
    demo.add_argument("--seed", type=int, default=1, help="NumPy seed (default: 1)")
    add_config_options(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except ConfigError as error:
        parser.exit(2, f"tessera {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
