"""The `tessera` command line: the parser assembled from `tessera.commands`, and the one
place a command's error becomes its one-line message and exit status."""

import argparse
import os
import sys

from .commands import COMMANDS


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one `--help` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = Parser(
        prog="tessera",
        description="Describe, verify and drive a tiled in-memory-computing crossbar accelerator.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
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
