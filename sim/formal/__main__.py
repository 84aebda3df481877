"""``python -m sim.formal`` (`make formal`): run every proof, then each of its mutants, and
print a table; exit 1 if a proof fails or a mutant is not shown failing (a trace from reset)."""

import argparse
import sys

from .proofs import PROOFS
from .sby import run_sby


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sim.formal",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"proofs to run (default: all of "
                        f"{', '.join(p.name for p in PROOFS)})")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {p.name for p in PROOFS}
    if unknown:
        parser.error(f"no proof named {', '.join(sorted(unknown))}")
    wrong = 0
    for proof in PROOFS:
        if args.names and proof.name not in args.names:
            continue
        runs = [(None, True)] + [(m, False) for m in proof.mutants] \
            + [(m, True) for m, _ in proof.survivors]
        for mutation, should_pass in runs:
            run = proof.design_run() if mutation is None else proof.mutant_run()
            result = run_sby(proof.name, proof.build(), mutation=mutation, **run)
            ok = result.passed if should_pass else result.status == "FAIL"
            wrong += not ok
            label = "design" if mutation is None else f"mutant {mutation}"
            print(f"{proof.name:22s} {label:44s} {result.status:5s} "
                  f"{'as expected' if ok else 'UNEXPECTED'} ({result.seconds:.1f} s)", flush=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
