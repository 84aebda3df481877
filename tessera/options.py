"""What the commands share: their common options and option types, the config from the
options, progress lines, and the error a command's bad input raises."""

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

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
        shown = {"adc_bits": "lossless", "requant_lanes": "one per column"}.get(
            field.name, default) if default is None else default
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


FRACTION = option_type("a fraction in [0, 1]", float, lambda v: 0 <= v <= 1)
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


def print_rows(rows):
    """(name, value) rows as an indented two-column list, names aligned."""
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


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


def add_preset_option(parser, listed=False):
    """--preset: the energy table, `golden.energy.DEFAULT_PRESET` unless given (`listed`:
    the help names every table's source)."""
    from golden.energy import DEFAULT_PRESET, PRESETS

    tables = ("energy table: " + "; ".join(f"{k}: {p.name}" for k, p in sorted(PRESETS.items()))
              if listed else "energy table")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help=f"{tables} (default: {DEFAULT_PRESET})")


def add_host_link_option(parser):
    from golden.host_link import DEFAULT_HOST_LINK, HOST_LINKS
    parser.add_argument("--host-link", choices=sorted(HOST_LINKS), default=DEFAULT_HOST_LINK,
                        help="link the host's words cross, for their cycles, reported apart "
                             "from the device's: " + "; ".join(
                                 v.describe() for _, v in sorted(HOST_LINKS.items()))
                             + f" (default: {DEFAULT_HOST_LINK})")

