"""`tessera tile-check`."""

import sys

from ..options import (NON_NEGATIVE_INT, POSITIVE_INT, add_config_options, config_from_args,
                       print_rows)

def run(args):
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
    print_rows(rows)
    return 0 if figures["value_mismatches"] == figures["cycle_mismatches"] == 0 else 1



def add_parser(commands):
    parser = commands.add_parser("tile-check", help="random products on one tile: RTL vs golden",
                                 description="Verilate the crossbar tile, stream random int8 vectors "
                                             "through it and the golden model, and print a summary.")
    parser.add_argument("--vectors", type=POSITIVE_INT, default=2000, help="random input vectors (default: 2000)")
    parser.add_argument("--seed", type=NON_NEGATIVE_INT, default=1, help="NumPy seed (default: 1)")
    add_config_options(parser)
    parser.set_defaults(handler=run)
    return parser
