"""The formal proofs (sim/formal) pass on the design and fail on its deliberately broken
copies: each proof can fail. `make formal` runs the same with a table."""

import pytest

from sim.formal.proofs import PROOFS
from sim.formal.sby import run_sby

CASES = [pytest.param(proof, mutation, id=f"{proof.name}-{mutation or 'design'}",
                      marks=[pytest.mark.slow] if proof.slow else [])
         for proof in PROOFS for mutation in (None, *proof.mutants)]


@pytest.mark.parametrize("proof, mutation", CASES)
def test_proof_holds_on_the_design_and_fails_on_its_mutants(proof, mutation):
    run = proof.design_run() if mutation is None else proof.mutant_run()
    result = run_sby(proof.name, proof.build(), mutation=mutation, **run)
    if mutation is None:
        assert result.passed, result.summary()
    else:
        assert result.status == "FAIL", result.summary()
