"""The formal proofs (sim/formal) pass on the design and fail on its deliberately broken
copies: each proof can fail. `make formal` runs the same with a table."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from golden import AccelConfig, crossbar_mvm
from sim.formal.proofs import PROOFS
from sim.formal.sby import run_sby
from sim.formal.tile import TILE_CASES, spec_partial_sums, spec_step_sums

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


# The tile proofs check the RTL against `spec_step_sums`/`spec_partial_sums`. These tests
# tie that spec to golden (by simulation) and, for lossless configs, to ``x @ w``.

@pytest.mark.parametrize("name, config", [(name, config) for name, config, _ in TILE_CASES])
def test_tile_proof_spec_equals_golden(name, config):
    rng = np.random.default_rng(26)
    c = config
    x = [Signal(signed(8), name=f"x{r}") for r in range(c.rows)]
    w = [[Signal(signed(8), name=f"w{r}_{col}") for col in range(c.cols)]
         for r in range(c.rows)]
    shift, offset = Signal(range(c.max_adc_shift + 1)), Signal()
    m = Module()
    results = [Signal(signed(64), name=f"result{col}") for col in range(c.cols)]
    partial = spec_partial_sums(c, spec_step_sums(c, x, w, shift, offset)[0])
    m.d.comb += [result.eq(value << shift) for result, value in zip(results, partial[-1])]
    extremes = np.array([-128, -127, -1, 0, 1, 127])
    vectors = [(rng.choice(extremes, c.rows), rng.choice(extremes, (c.rows, c.cols)))
               for _ in range(20)]
    vectors += [(rng.integers(-128, 128, c.rows), rng.integers(-128, 128, (c.rows, c.cols)))
                for _ in range(60)]
    mismatches = []

    async def testbench(ctx):
        for i, (xs, ws) in enumerate(vectors):
            adc_shift, offset_inputs = i % (c.max_adc_shift + 1), bool(i % 2)
            for signal, value in zip(x, xs):
                ctx.set(signal, int(value))
            for r in range(c.rows):
                for col in range(c.cols):
                    ctx.set(w[r][col], int(ws[r, col]))
            ctx.set(shift, adc_shift)
            ctx.set(offset, offset_inputs)
            got = [ctx.get(result) for result in results]
            want = crossbar_mvm(c, xs, ws, adc_shift, offset_inputs).tolist()
            if got != want:
                mismatches.append((xs.tolist(), ws.tolist(), adc_shift, offset_inputs, got, want))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert not mismatches, f"{len(mismatches)} of {len(vectors)} differ, first {mismatches[0]}"


@pytest.mark.parametrize("cell_bits, dac_bits", sorted(
    {(config.cell_bits, config.dac_bits) for _, config, _ in TILE_CASES if config.is_lossless}))
def test_lossless_spec_is_the_product_for_every_int8_pair(cell_bits, dac_bits):
    """Golden's arithmetic over every input byte and every weight byte of one cell, in
    both encodings: with no rounding or saturation, sums over rows add these."""
    config = AccelConfig(tiles=1, rows=1, cols=1, cell_bits=cell_bits, dac_bits=dac_bits)
    x = np.arange(-128, 128)[:, None]
    for offset_inputs in (False, True):
        for weight in range(-128, 128):
            got = crossbar_mvm(config, x, [[weight]], offset_inputs=offset_inputs)[:, 0]
            assert np.array_equal(got, (x[:, 0] + 128 * offset_inputs) * weight), weight
