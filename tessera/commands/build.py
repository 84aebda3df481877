"""`tessera build`."""

import sys
from pathlib import Path

from ..options import (DEFAULT_BUILD, MINUTES, POSITIVE_INT, add_config_options,
                       config_from_args)

def run(args):
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



def add_parser(commands):
    parser = commands.add_parser(
         "build", help="FPGA bitstream with the YoWASP tools, and its resources and Fmax",
         description="Build the accelerator behind the UART bridge for a board with the "
                     "open toolchain from PyPI (YoWASP Yosys and nextpnr), and report resources "
                     "used / available and Fmax against the board clock. Fails, saying which, "
                     "when the design does not fit or misses timing.")
    parser.add_argument("--board", required=True, choices=["icebreaker", "ulx3s"],
                        help="iCEBreaker (iCE40UP5K) or ULX3S 85F (ECP5)")
    parser.add_argument("--baud", type=POSITIVE_INT, default=115200, help="UART baud rate (default: 115200)")
    parser.add_argument("--out", type=Path, default=DEFAULT_BUILD / "boards",
                        help="build folder (default: build/boards)")
    parser.add_argument("--timeout", type=MINUTES, default=None, metavar="MINUTES",
                        help="bound of the whole build, minutes (default: 15 for iCE40, 25 for "
                             "ECP5); a stopped build says how far routing got")
    parser.add_argument("--seeds", type=POSITIVE_INT, default=1,
                        help="nextpnr seeds to try, two processes at a time, each bounded by "
                             "its share of the time left; the first to route wins (default: 1)")
    parser.add_argument("--router", choices=["router1", "router2"], default=None,
                        help="nextpnr's router (default: router2 for ECP5, nextpnr's own for "
                             "iCE40)")
    add_config_options(parser, defaults_from="the board's config, rtl/boards.py")
    parser.set_defaults(handler=run)
    return parser
