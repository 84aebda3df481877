"""Stuck cells on MNIST LeNet-5, with and without mapping around them
(`tessera.experiments.fault_study`): accuracy, cycles, energy and host words per inference.

    .venv/bin/python bench/faults.py [--samples N] [--seeds S ...] [--fractions F ...]
"""

import argparse
import time

from tessera.experiments.fault_study import run_fault_study


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500, help="test digits (default: 500)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                        help="fault map seeds per fraction (default: 1 2)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.10],
                        help="fractions of stuck cells (default: 0.01 0.05 0.10)")
    args = parser.parse_args()
    started = time.monotonic()
    _, table = run_fault_study(fractions=args.fractions, seeds=tuple(args.seeds),
                               test_samples=args.samples)
    print(table)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
