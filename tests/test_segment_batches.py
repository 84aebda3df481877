"""Segments that run their own batch: a layer whose memories hold fewer samples than the
network's batch runs it in sub-batches, the others at the full batch; outputs as the
int8 reference, runs and cycles as counted by hand, and the file keeps it."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from firmware.compiler.mapper import MappingError
from firmware.compiler.pipeline import _network_batch, compile_network
from firmware.compiler.quantize import quantize
from firmware.runtime.executable import Executable, batch_sizes, load_executable
from firmware.runtime.run import compare_runs
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig, isa
from golden.device import instruction_counters

@pytest.fixture(scope="module")
def compiled(sub_batched_mlp):
    build, config = sub_batched_mlp
    rng = np.random.default_rng(11)
    network, x = build(rng), rng.uniform(0, 1, (32, 128))
    qnet = quantize(network, x)
    return qnet, compile_network(qnet, config), qnet.input.quantize(rng.uniform(0, 1, (33, 128)))


def program_cycles(run, config):
    return sum(instruction_counters(isa.decode(words), config)["cycles"] for words in run.program)


def test_the_chunks_run_a_batch_in_sub_batches_of_what_amem_holds(compiled):
    _, exe, _ = compiled
    assert [image.layers for image in exe.segments] == [["wide"]] * 3 + [["out"]]
    assert exe.segment_batches[:3] == [5] * 3 and exe.segment_batches[3] == exe.batch > 5
    # by hand: 8 x 5 + 3 x 5 = 55 entries fit 64, six samples' 66 do not
    chunk = [(i, 5, first) for first in (0, 5, 10) for i in range(3)]
    assert exe.schedule(15) == chunk + [(3, 15, 0)]
    assert exe.schedule(8) == [(i, size, first) for size, first in ((5, 0), (2, 5), (1, 7))
                               for i in range(3)] + [(3, 8, 0)]
    assert all(exe.plans[size][i] is None for size in exe.plans for i in range(3) if size > 5)


def test_a_sub_batched_run_equals_the_reference_and_counts_each_run(compiled):
    """15 + 15 + 2 + 1 samples. The chunks run 3 times a full batch, "out" once; against
    the executable of batch 5 (every segment at 5), the cycles differ by "out" at 15 in
    place of three runs of it at 5, each program's cycles summed by hand from the ISA's."""
    qnet, exe, x_q = compiled
    run = GoldenTarget().run(exe, x_q)
    assert run.batches == [15, 15, 2, 1]
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    assert run.runs == 2 * (9 + 1) + 2 * (3 + 1)
    at_five = compile_network(qnet, exe.config, batch=5)
    assert at_five.segment_batches == [5] * 4
    five = GoldenTarget().run(at_five, x_q[:30])
    whole = GoldenTarget().run(exe, x_q[:30])
    assert np.array_equal(five.outputs, whole.outputs)
    saved = 2 * (3 * program_cycles(at_five.plans[5][3], exe.config)
                 - program_cycles(exe.plans[15][3], exe.config))
    assert saved > 0
    assert whole.counters["cycles"] == five.counters["cycles"] - saved


def test_the_file_keeps_each_segments_batch(compiled, tmp_path):
    qnet, exe, x_q = compiled
    loaded = load_executable(exe.save(tmp_path / "sub.tessera"))
    assert loaded.segment_batches == exe.segment_batches
    assert {size: [run is None for run in runs] for size, runs in loaded.plans.items()} == \
        {size: [run is None for run in runs] for size, runs in exe.plans.items()}
    assert np.array_equal(GoldenTarget().run(loaded, x_q).outputs, qnet.forward(x_q))


def test_runs_after_runs_of_other_sizes_equal_runs_worked_out_afresh(compiled, tmp_path):
    """A run works out each batch shape's steps (samples, loads, declared runs) once and
    keeps them with the executable. Runs of 33, 7, 15 and 33 samples, one after another,
    on one device and on stacks, each equal the same run of a copy loaded from the file,
    which works them out afresh: outputs, counters, host words, batches and runs."""
    _, exe, x_q = compiled
    path = exe.save(tmp_path / "sub.tessera")
    for samples in (33, 7, 15, 33):
        for target in (GoldenTarget(), GoldenTarget(stack_bytes=0)):
            afresh = target.run(load_executable(path), x_q[:samples])
            assert compare_runs(afresh, target.run(exe, x_q[:samples])) == []
            assert afresh.runs > 0


def test_the_summary_says_which_segments_run_fewer_samples(compiled):
    _, exe, _ = compiled
    assert any("5 samples a run" in line for line in exe.summary)


def test_a_batch_is_taken_up_to_what_the_roomiest_segment_holds(compiled):
    """By hand, "out" holds 64 / (3 + 1) = 16 samples; the compiler chose 15, three runs
    of the chunks, where 16 takes four."""
    qnet, exe, _ = compiled
    assert exe.batch == 15
    sixteen = compile_network(qnet, exe.config, batch=16)
    assert sixteen.segment_batches == [5, 5, 5, 16]
    assert [size for i, size, _ in sixteen.schedule(16) if i == 0] == [5, 5, 5, 1]
    with pytest.raises(MappingError, match="batch must be in 1..16 "):
        compile_network(qnet, exe.config, batch=17)


def test_the_network_batch_loads_weights_least_often_a_sample():
    """By hand, segments of 0 and 10 blocks holding 2 and 3 samples (a run loads its
    blocks and program, weights 1 and 11): a batch of 3 runs them 2 + 1 times, 13 / 3
    loads a sample; of 2, 1 + 1 times, 12 / 2; of 1, 12."""
    segments = [SimpleNamespace(blocks=0), SimpleNamespace(blocks=10)]
    assert _network_batch(segments, [2, 3]) == 3
    # 0 and 100 blocks holding 4 and 3: 4 runs them 1 + 2 times (203 / 4), 3 once each
    # (102 / 3): the larger batch is not always the better
    segments[1].blocks = 100
    assert _network_batch(segments, [4, 3]) == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 3)), min_size=1, max_size=5),
       st.integers(1, 100))
def test_a_schedule_runs_every_sample_through_every_segment_once(chains, samples):
    """Random chains (a segment batch and a length each) as the compiler plans them
    (`batch_sizes` of each segment's largest), a random number of samples in the
    network's batches: each segment sees every sample of a batch exactly once, in
    sub-batches it has a plan for, and a chain's segments run each sub-batch in order
    before the next."""
    mosts = [most for most, length in chains for _ in range(length)]
    network = max(mosts)
    sizes = set(batch_sizes(network)).union(*(batch_sizes(m) for m in mosts))
    plans = {size: [object() if size in batch_sizes(m) else None for m in mosts]
             for size in sizes}
    exe = Executable(AccelConfig(), None, None, [None] * len(mosts), plans, False)
    assert exe.segment_batches == mosts
    for batch in exe.batches(samples):
        seen = [[] for _ in mosts]
        schedule = exe.schedule(batch)
        for index, size, first in schedule:
            assert plans[size][index] is not None and size <= mosts[index]
            seen[index] += range(first, first + size)
        assert all(sorted(s) == list(range(batch)) for s in seen)
        # consecutive segments of equal batches (chains) run each sub-batch in order
        start = [i if i == 0 or mosts[i] != mosts[i - 1] else None for i in range(len(mosts))]
        for i in range(1, len(mosts)):
            start[i] = start[i - 1] if start[i] is None else start[i]
        for (i, size, first), (j, next_size, next_first) in zip(schedule, schedule[1:]):
            if j == i + 1 and start[j] == start[i]:        # the next of the chain, same samples
                assert (next_first, next_size) == (first, size)
            elif j == i + 1:                                # the next chain, from the start
                assert next_first == 0
            else:                                           # the chain again, the next samples
                assert j == start[i] and next_first == first + size


def test_a_chain_whose_segments_run_different_sizes_is_refused(compiled):
    """The chunks run sub-batch by sub-batch together: a file where one of them lacks a
    size the others run would leave it without a program mid-chain."""
    from firmware.runtime.executable_schema import SchemaError, check_executable

    _, exe, _ = compiled
    plans = {size: list(runs) for size, runs in exe.plans.items()}
    plans[4][1] = None
    edited = Executable(exe.config, exe.input, exe.output, exe.segments, plans, exe.resident)
    with pytest.raises(SchemaError, match=r"plans: segment 1 runs batches of \[1, 2, 5\] "
                                          r"samples, segment 0 of \[1, 2, 4, 5\]"):
        check_executable(edited)
