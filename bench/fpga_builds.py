"""Full-size bitstreams: each board's config (rtl/boards.py) through the YoWASP tools,
with resources used / available, Fmax against the board clock and the build time.

    .venv/bin/python bench/fpga_builds.py [--board icebreaker|ulx3s]

The ULX3S build of the default config takes tens of minutes on two cores.
"""

import argparse
import sys
import time

from golden import AccelConfig
from rtl.boards import BOARD_CONFIGS
from rtl.fpga_build import FpgaBuildError, build_board
from sim.runner import BUILD_ROOT


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", choices=sorted(BOARD_CONFIGS), action="append",
                        help="build only this board (repeatable; default: all)")
    boards = parser.parse_args().board or sorted(BOARD_CONFIGS)
    failed = False
    for board in boards:
        config = AccelConfig(**BOARD_CONFIGS[board])
        started = time.monotonic()
        try:
            report = build_board(board, config, BUILD_ROOT / "boards",
                                 log=lambda message: print(message, flush=True))
        except FpgaBuildError as error:
            print(f"{board}: {error}")
            failed = True
            continue
        for line in report.lines():
            print(line)
        print(f"  Fmax / clock {report.fmax_mhz / report.target_mhz:.2f}, "
              f"built in {time.monotonic() - started:.0f} s", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
