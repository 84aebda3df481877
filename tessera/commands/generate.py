"""`tessera generate`."""

from pathlib import Path

from ..options import DEFAULT_BUILD, add_config_options, config_from_args

def run(args):
    import rtl
    config = config_from_args(args)
    component, name = {"accelerator": (rtl.Accelerator, "accelerator"),
                       "tile": (rtl.CrossbarTile, "crossbar_tile")}[args.top]
    print(f"elaborating {name} for {config.name} ...", flush=True)
    path = rtl.generate_verilog(component(config), args.out, name)
    print(f"wrote {path} and {path.with_suffix('.json')}")



def add_parser(commands):
    parser = commands.add_parser("generate", help="write Verilog and the config JSON",
                                 description="Write the accelerator's (or one tile's) Verilog "
                                             "and its config as JSON.")
    parser.add_argument("--top", choices=["accelerator", "tile"], default="accelerator",
                        help="what to generate (default: accelerator)")
    parser.add_argument("--out", type=Path, default=DEFAULT_BUILD / "verilog",
                        help="output folder (default: build/verilog)")
    add_config_options(parser)
    parser.set_defaults(handler=run)
    return parser
