"""Networks bigger than the memories: segments cut at each memory's limit, runs on the
golden model equal to the int8 reference, and the host words a run moves."""

import numpy as np
import pytest

from firmware.compiler.pipeline import compile_network, map_network
from firmware.compiler.mapper import MappingError
from firmware.frontend.network import Dense, Network
from firmware.compiler.quantize import quantize
from firmware.runtime.targets import GoldenTarget
from firmware.frontend.train import init_cnn
from golden import AccelConfig


def mlp(rng, sizes, samples=12):
    network = Network(tuple(
        Dense(f"fc{i}", rng.normal(0, 1 / np.sqrt(a), (a, b)), rng.normal(0, 0.1, b),
              relu=i < len(sizes) - 2) for i, (a, b) in enumerate(zip(sizes, sizes[1:]))))
    x = rng.uniform(0, 1, (samples, sizes[0]))
    qnet = quantize(network, x)
    return qnet, qnet.input.quantize(x)


def assert_runs_exactly(qnet, x_q, config, batch=None):
    exe = compile_network(qnet, config, batch)
    run = GoldenTarget().run(exe, x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    assert len(np.unique(run.outputs, axis=0)) > 1                 # not a constant output
    return exe, run


def limits(config, qnet):
    return [segment.limit for segment in map_network(qnet, config).segments]


def test_the_big_mlp_runs_on_the_default_config():
    """784-512-256-10 on 4 tiles of 16x16 with 256-row wmem: 16 jobs (slots) a segment.
    By hand: fc0's 49 K blocks per output block make 12 jobs of 4 and one of 1 (32 x 13 =
    416 jobs, 26 parts), fc1's 32 make 8 of 4 (16 x 8 = 128, 8 parts), fc2's 16 make 4."""
    qnet, x_q = mlp(np.random.default_rng(0), (784, 512, 256, 10), samples=7)
    exe, run = assert_runs_exactly(qnet, x_q, AccelConfig())
    assert len(exe.segments) == 26 + 8 + 1
    # Every slot goes over the link once per batch, the lanes of one copy of its job:
    # 516 jobs of 4 K tiles (fc0 32 x 12, fc1 16 x 8, fc2 4) write 4 lanes, fc0's 32 jobs
    # of one block 1 lane (PROGRAM fills their 4 replicas from it); a lane's row of 16
    # int8 weights is 4 words, a slot 16 rows.
    assert run.host_words["written"]["wmem"] == len(run.batches) * (516 * 4 + 32) * 16 * 4
    # The input (784 -> 49 entries of 4 words) in, the output (1 entry) out, per sample;
    # the three layers run batches of their own, so fc0's and fc1's outputs (32 and 16
    # entries) go out and back in between them.
    assert len(set(exe.segment_batches)) == 3
    assert run.host_words["written"]["amem"] == 7 * (49 + 32 + 16) * 4
    assert run.host_words["read"]["amem"] == 7 * (1 + 32 + 16) * 4


def test_a_cnn_whose_weights_exceed_wmem_runs():
    rng = np.random.default_rng(1)
    network = init_cnn((8, 8, 1), [(3, 64, 1), (3, 64, 1)], 10, rng)   # conv1: 36 x 4 blocks
    x = rng.uniform(0, 1, (5, 8, 8, 1))
    qnet = quantize(network, x)
    exe, _ = assert_runs_exactly(qnet, qnet.input.quantize(x), AccelConfig())
    conv1 = [s for s in exe.segments if s.layers == ["conv1"]]
    # Per output block 9 jobs, one a tap (its 4 channel blocks, adjacent entries): 36 jobs,
    # 16 a segment.
    assert len(conv1) == 3 and all(s.part for s in conv1)


def test_segments_close_at_wmem_and_a_network_exactly_at_the_limit_is_one():
    # fc0: 2 jobs (an output block's 4 K blocks each); fc1: 1 job (2 K blocks, 2 replicas).
    qnet, x_q = mlp(np.random.default_rng(2), (64, 32, 10))
    exact = AccelConfig(wmem_depth=3 * 16)
    assert limits(exact, qnet) == ["end of network"]
    one_less = AccelConfig(wmem_depth=2 * 16)
    assert limits(one_less, qnet) == ["wmem", "end of network"]        # fc0 | fc1
    _, streamed = assert_runs_exactly(qnet, x_q, one_less, batch=4)
    # The same network held whole: the same outputs; streamed, each of the 3 batches
    # writes all 3 slots again, where the whole one writes them once. A slot is 16 rows
    # of one copy of its job's lanes (4 words a lane): fc0's 4, fc1's 2 (its replica
    # programmed from them).
    _, whole = assert_runs_exactly(qnet, x_q, exact, batch=4)
    assert np.array_equal(streamed.outputs, whole.outputs)
    assert whole.host_words["written"]["wmem"] == (4 + 4 + 2) * 16 * 4
    assert streamed.host_words["written"]["wmem"] == 3 * (4 + 4 + 2) * 16 * 4
    chunks = AccelConfig(wmem_depth=1 * 16)                            # fc0 in 1 + 1
    assert limits(chunks, qnet) == ["wmem", "end of layer", "end of network"]
    assert_runs_exactly(qnet, x_q, chunks)


def test_segments_close_at_qmem():
    # fc0 has 10 output blocks of 16 channels; qmem holds 4 entries: each part finishes at
    # most 4 output blocks (whole groups of 4 tiles' blocks).
    qnet, x_q = mlp(np.random.default_rng(3), (32, 160, 10))
    config = AccelConfig(qmem_depth=4)
    assert "qmem" in limits(config, qnet)
    exe, _ = assert_runs_exactly(qnet, x_q, config)
    assert all(len(segment.qmem) <= 4 for segment in exe.segments)


def test_segments_close_at_imem():
    qnet, x_q = mlp(np.random.default_rng(4), (64, 32, 10))
    # PROGRAM and a requantizing MVM a job (3 jobs) and HALT: 7 instructions in one
    config = AccelConfig(imem_depth=6)
    assert "imem" in limits(config, qnet)
    exe, _ = assert_runs_exactly(qnet, x_q, config)
    assert all(len(run.program) <= 6 for runs in exe.plans.values() for run in runs if run)


@pytest.mark.parametrize("memory, depth", [("amem", 9), ("psum", 4)])
def test_segments_close_at_activation_and_partial_sum_memories(memory, depth):
    # 64-48-48-10: fc0 alone needs 4 + 3 amem entries and 3 psum entries a sample, fc0 and
    # fc1 together 4 + 3 + 3 and 6 (by hand): the second layer starts a new segment. (wmem
    # holds all 12 + 9 + 3 blocks.)
    qnet, x_q = mlp(np.random.default_rng(5), (64, 48, 48, 10))
    config = AccelConfig(wmem_depth=24 * 16, **{f"{memory}_depth": depth})
    assert limits(config, qnet)[0] == memory
    exe, run = assert_runs_exactly(qnet, x_q, config)
    assert exe.batch == 1 and run.batches == [1] * len(x_q)


def test_one_sample_that_does_not_fit_is_refused_naming_the_layer():
    qnet, _ = mlp(np.random.default_rng(6), (64, 48, 10))
    with pytest.raises(MappingError, match="layer 'fc0': one sample needs 3 partial-sum "
                                           "entries, beyond psum_depth 2"):
        map_network(qnet, AccelConfig(psum_depth=2))
    # One block needs PROGRAM, MVM and HALT: two instructions are too few.
    with pytest.raises(MappingError, match=r"layer 'fc0': not even one job's weight blocks fit "
                                           r"a segment \(imem too small\)"):
        map_network(qnet, AccelConfig(imem_depth=2))


def test_a_residual_skip_from_an_earlier_segment_goes_through_the_host(residual_mlp):
    qnet, x_q = residual_mlp(seed=7, samples=10)
    config = AccelConfig(wmem_depth=3 * 16)
    exe, run = assert_runs_exactly(qnet, x_q, config)
    runs = exe.plans[1]
    producer = max(i for i, s in enumerate(exe.segments) if s.layers == ["fc0"])
    reader = min(i for i, s in enumerate(exe.segments) if s.layers == ["res"])
    assert [t.tensor for t in runs[producer].reads] == [1]             # fc0's output, fc1's input
    assert [t.tensor for t in runs[reader].writes][-1] == 1
    # The input, the skip out and back, the output: 4 + 3 + 3 + 1 entries of 4 words;
    # "res" holds fewer samples than the others, so fc1's output (its input) and its own
    # (3 entries each) go out and back in around it.
    assert exe.segment_batches[reader] < exe.segment_batches[reader - 1] == exe.batch
    assert exe.segment_batches[-1] == exe.batch
    assert run.host_words["written"]["amem"] == 10 * (4 + 3 + 3 + 3) * 4
    assert run.host_words["read"]["amem"] == 10 * (3 + 1 + 3 + 3) * 4


def test_a_partial_last_batch_runs_in_compiled_powers_of_two():
    qnet, x_q = mlp(np.random.default_rng(8), (64, 32, 10), samples=23)
    exe, run = assert_runs_exactly(qnet, x_q, AccelConfig(), batch=10)
    assert sorted(exe.plans) == [1, 2, 4, 8, 10]
    assert run.batches == [10, 10, 2, 1]
