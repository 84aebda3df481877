"""Compiler stages: network IR checks, quantisation, pruning, mapping, code generation,
and an end-to-end run on the golden transport against the int8 reference."""

import numpy as np
import pytest

from firmware.compiler.pipeline import compile_network, map_network
from firmware.compiler.mapper import MappingError
from firmware.frontend.network import Dense, Network, NetworkError
from firmware.compiler.prune import block_mask, prune_blocks, prune_magnitude
from firmware.compiler.quantize import calibrate, quantize
from firmware.frontend.quant_params import TensorQuant
from firmware.frontend.train import init_cnn
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig, isa
from golden.energy import PRESETS, energy_breakdown, ops_per_run

CONFIG = AccelConfig()


def random_network(rng, sizes=(40, 24, 10)):
    return Network(tuple(Dense(f"fc{i}", rng.normal(0, 0.3, (a, b)), rng.normal(0, 0.1, b),
                               relu=i < len(sizes) - 2)
                         for i, (a, b) in enumerate(zip(sizes, sizes[1:]))))


@pytest.mark.parametrize("build, message", [
    (lambda: Dense("fc", np.zeros((3, 4)), np.zeros(5)), "layer 'fc': bias has shape (5,), the weights have 4 outputs"),
    (lambda: Dense("fc", np.zeros(3), np.zeros(3)), "layer 'fc': weights must have 2 dimension(s), not shape (3,)"),
    (lambda: Dense("fc", np.array([["a"]]), np.zeros(1)), "layer 'fc': weights must be a real numeric array"),
    (lambda: Dense("fc", np.full((2, 2), np.nan), np.zeros(2)), "layer 'fc': weights holds NaN"),
    (lambda: Network(()), "at least one layer"),
    (lambda: Network((Dense("a", np.zeros((3, 4)), np.zeros(4)), Dense("b", np.zeros((5, 2)), np.zeros(2)))),
     "layer 'b' takes 5 inputs, not an activation of shape (4,), which 'a' gives"),
    (lambda: Network(("conv3x3",)), "layer 0 (str) is not supported; supported: Dense, Conv2d, MaxPool2d, AvgPool2d, Flatten"),
])
def test_network_errors_name_the_layer(build, message):
    with pytest.raises(NetworkError) as info:
        build()
    assert message in str(info.value)


def test_tensor_quant_covers_range_and_zero():
    q = TensorQuant.covering(0.0, 2.55)
    assert q.zero_point == -128 and q.quantize([0.0])[0] == -128 and q.quantize([2.55])[0] == 127
    symmetric = TensorQuant.covering(-1.0, 1.0)
    assert abs(symmetric.dequantize(symmetric.quantize([0.5]))[0] - 0.5) <= symmetric.scale / 2


def test_percentile_calibration_ignores_outliers():
    rng = np.random.default_rng(0)
    net = random_network(rng)
    samples = rng.normal(0, 1, (500, 40))
    samples[0, 0] = 1000.0
    minmax = calibrate(net, samples, "minmax")[0]
    clipped = calibrate(net, samples, "percentile", 99.9)[0]
    assert clipped.scale < minmax.scale / 10
    with pytest.raises(ValueError, match="calibration method must be 'minmax' or 'percentile', not 'mean'"):
        calibrate(net, samples, "mean")


def test_quantised_network_tracks_float():
    rng = np.random.default_rng(1)
    net = random_network(rng)
    x = rng.uniform(0, 1, (300, 40))
    q = quantize(net, x)
    float_out, int_out = net.forward(x), q.output.dequantize(q.forward(q.input.quantize(x)))
    assert np.abs(float_out - int_out).mean() < 0.05 * np.abs(float_out).mean() + 0.02
    assert np.all(np.abs(q.layers[0].weights) <= 127)


def test_magnitude_and_block_pruning():
    rng = np.random.default_rng(2)
    net = random_network(rng, (64, 32, 10))
    pruned, masks = prune_magnitude(net, 0.5)
    assert abs((pruned.layers[0].weights == 0).mean() - 0.5) < 0.01
    blocked, masks = prune_blocks(net, 0.5, 16, 16, layers=["fc0"])
    blocks = (blocked.layers[0].weights.reshape(4, 16, 2, 16) != 0).any(axis=(1, 3))
    assert blocks.sum() == 4 and np.array_equal(blocked.layers[1].weights, net.layers[1].weights)
    assert block_mask(np.ones((20, 20)), 0.5, 16, 16).shape == (20, 20)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), not 1.0"):
        prune_blocks(net, 1.0, 16, 16)
    with pytest.raises(ValueError, match="no layer 'fc9'"):
        prune_blocks(net, 0.5, 16, 16, layers=["fc9"])


def test_mapper_skips_zero_blocks_and_reports_utilisation():
    rng = np.random.default_rng(3)
    net, _ = prune_blocks(random_network(rng, (64, 32, 10)), 0.5, 16, 16, layers=["fc0"])
    q = quantize(net, rng.uniform(0, 1, (100, 64)))
    network_map = map_network(q, CONFIG)
    first = network_map.layers[0]
    assert (first.k_blocks, first.n_blocks) == (4, 2) and first.nonzero.sum() == 4
    assert first.block_utilisation == 0.5 and network_map.blocks == 4 + 2
    # fc1's 32x10 weights in two 16x16 blocks; a cell holds a weight unless it is padding
    # or a weight that rounds to int8 zero
    assert network_map.layers[1].cell_utilisation == pytest.approx(
        np.count_nonzero(q.layers[1].weights) / (2 * 256))
    assert 0.98 * 32 * 10 / (2 * 256) <= network_map.layers[1].cell_utilisation <= 32 * 10 / 512
    exe = compile_network(q, CONFIG)
    words = np.vstack([exe.segments[0].setup.reshape(-1, 4), exe.plans[exe.batch][0].program])
    instructions = [isa.decode(w) for w in words]
    programs = [i for i in instructions if i.opcode == isa.Opcode.PROGRAM]
    # One PROGRAM per job: fc0's output blocks each hold 2 stored K blocks (runs of 1 or 2,
    # or both), fc1 is one job of its 2 K blocks; every job's tiles hold stored blocks only.
    tiles = sum(i.count for i in programs)
    assert tiles >= 6 and all(i.count & (i.count - 1) == 0 for i in programs)
    products = sum(i.ktiles * i.ngroups for i in instructions if i.opcode == isa.Opcode.MVM)
    assert products == 6


def test_mapping_errors_name_the_layer_and_memory():
    rng = np.random.default_rng(4)
    tiny = AccelConfig(amem_depth=2)
    small = quantize(random_network(rng, (64, 32, 10)), rng.uniform(0, 1, (50, 64)))
    # fc0 in bands of its K blocks: one block's input entry and its 2 output entries
    # (by hand: 32/16) need 3 entries.
    with pytest.raises(MappingError, match="layer 'fc0': even a band of one K block needs 3 "
                                           "amem entries .* beyond amem_depth 2: give "
                                           "--amem-depth 4"):
        map_network(small, tiny)
    # a 224x224 image of 4 channels flattened into a Dense is 224 * 224 entries: the
    # convolution before it runs in tiles, the Dense in bands of its K blocks (by hand:
    # 224 * 224 pixels of one entry, 50,176 K blocks; a band holds at most 1,024 entries)
    image = quantize(init_cnn((224, 224, 3), [(3, 4, 1, 1)], 2, rng), rng.uniform(0, 1, (2, 224, 224, 3)))
    network_map = map_network(image, CONFIG)
    classifier = [seg for seg in network_map.segments
                  if network_map.steps[seg.steps[0]].name == "classifier"]
    assert len(classifier) >= 50176 // 1024 and all(seg.band.k_blocks for seg in classifier)
    # 1,024 amem entries hold 146 samples of 4 + 2 + 1 entries (by hand).
    with pytest.raises(MappingError, match="batch must be in 1..146"):
        map_network(small, CONFIG, batch=147)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75])
def test_golden_run_equals_int8_reference(sparsity):
    rng = np.random.default_rng(5)
    net, _ = prune_blocks(random_network(rng, (64, 32, 10)), sparsity, 16, 16)
    x = rng.uniform(0, 1, (50, 64))
    q = quantize(net, x)
    x_q = q.input.quantize(x)
    progress = []
    run = GoldenTarget().run(compile_network(q, CONFIG, batch=16), x_q,
                     progress=lambda done, total: progress.append(done))
    assert np.array_equal(run.outputs, q.forward(x_q))
    assert progress == [16, 32, 48, 50] and run.runs == 4
    energy = energy_breakdown(run.counters, PRESETS["isaac_reram_32nm"], CONFIG)
    assert energy["total"] > 0 and energy["ADC"] > 0
    assert ops_per_run(run.counters, CONFIG) == 2 * run.counters["mvm_products"] * 256


def residual_network(rng):
    from firmware.frontend.network import Add
    return Network((Dense("fc0", rng.normal(0, 0.3, (40, 24)), rng.normal(0, 0.1, 24)),
                    Dense("fc1", rng.normal(0, 0.3, (24, 24)), rng.normal(0, 0.1, 24)),
                    Add("res", ("fc1", "fc0"), relu=True),
                    Dense("out", rng.normal(0, 0.3, (24, 10)), np.zeros(10), relu=False)))


def test_residual_add_trains_quantises_and_runs_on_golden():
    from firmware.frontend.train import train
    rng = np.random.default_rng(8)
    net = residual_network(rng)
    x, y = rng.uniform(0, 1, (30, 40)), rng.integers(0, 10, 30)
    acts = net.activations(x)
    assert np.allclose(acts[3], np.maximum(acts[2] + acts[1], 0))
    # The skip gradient reaches fc0: one SGD step against a finite difference.
    def loss(network):
        logits = network.forward(x)
        logits = logits - logits.max(axis=1, keepdims=True)
        return -np.mean(logits[np.arange(30), y] - np.log(np.exp(logits).sum(axis=1)))
    stepped = train(net, x, y, 1, np.random.default_rng(0), lr=1e-3, batch=30)
    analytic = (net.layers[0].weights - stepped.layers[0].weights)[3, 5] / 1e-3
    bumped = net.layers[0].weights.copy()
    bumped[3, 5] += 1e-6
    numeric = (loss(net.with_layers([net.layers[0].with_matrix(bumped)] + list(net.layers[1:])))
               - loss(net)) / 1e-6
    assert analytic == pytest.approx(numeric, rel=1e-3, abs=1e-7)

    qnet = quantize(net, x)
    x_q = qnet.input.quantize(x)
    res = qnet.layers[2]
    assert res.weights.shape == (48, 24) and res.weights.max() <= 127
    wa, wb = res.weights[0, 0], res.weights[24, 0]              # the two diagonals
    ratio = res.input.scale / qnet.layers[0].output.scale        # x's scale over the skip's
    assert abs(wa / wb - ratio) / ratio < 1e-3
    run = GoldenTarget().run(compile_network(qnet, CONFIG), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    # The int8 network tracks the float one.
    assert np.mean(qnet.predict(x) == np.argmax(net.forward(x), axis=1)) > 0.8


@pytest.mark.parametrize("a, b, expected", [
    (1.0, 1.0, (1, 1)), (0.5, 1.0, (1, 2)), (3.0, 7.0, (3, 7)),
    # 0.8137 ~ 83/102 = 0.81373, a convergent of [0; 1, 4, 2, 1, 2, 1, 1, 3] and, by
    # exhaustive search of p/q <= 127/127, the closest; 1000 is beyond 127: the smaller weighs 1
    (0.8137, 1.0, (83, 102)), (1000.0, 1.0, (127, 1)),
])
def test_scale_weights_are_the_best_ratio_within_int8(a, b, expected):
    from firmware.compiler.quantize import scale_weights
    assert scale_weights(a, b) == expected


def test_residual_add_errors_name_the_layer():
    from firmware.frontend.network import Add
    rng = np.random.default_rng(9)
    dense = Dense("fc", rng.normal(size=(4, 3)), np.zeros(3))
    with pytest.raises(NetworkError, match="layer 'res' reads 'nowhere', which is neither the "
                                           "network input .* nor a layer before it"):
        Network((dense, Add("res", ("fc", "nowhere"))))
    with pytest.raises(NetworkError, match=r"layer 'res' adds tensors of shapes \(2,\), \(3,\)"):
        Network((dense, Dense("fc2", rng.normal(size=(3, 2)), np.zeros(2)), Add("res", ("fc2", "fc"))))


@pytest.mark.parametrize("dead", ["one hidden unit", "whole layer"])
def test_dead_channels_and_zero_layers_compile_and_run(dead):
    """A hidden unit whose weights are ~0 (1e-12) or a layer of zeros used to raise
    'requantisation scale must be in [2**-32, 1)'; now its weights quantise to 0 and its
    output is its bias, as in the float network."""
    rng = np.random.default_rng(11)
    net = random_network(rng, (40, 24, 10))
    w0 = net.layers[0].weights.copy()
    if dead == "one hidden unit":
        w0[:, 5] = 1e-12
    else:
        w0[:] = 0.0
    net = net.with_layers([net.layers[0].with_matrix(w0)] + list(net.layers[1:]))
    x = rng.uniform(0, 1, (60, 40))
    q = quantize(net, x)
    assert np.all(q.layers[0].weights[:, 5] == 0)
    x_q = q.input.quantize(x)
    run = GoldenTarget().run(compile_network(q, CONFIG), x_q)
    assert np.array_equal(run.outputs, q.forward(x_q))
    # The dead unit outputs relu(its bias) for every sample, to within one output LSB.
    int_hidden = q.layers[0].output.dequantize(q.layers[0].forward(x_q))[:, 5]
    expected = max(net.layers[0].bias[5], 0.0)
    assert np.abs(int_hidden - expected).max() <= q.layers[0].output.scale


def test_an_upper_clamp_reaches_the_requantiser():
    """Clip(0, 0.5) with an output range of [0, 2] (as a quantised model may give): the
    clamp is quantize(0.5) = -128 + 0.5 / (2 / 255) = -64 (by hand), on golden as in the
    int8 reference."""
    from firmware.frontend.quant_params import GivenQuant
    rng = np.random.default_rng(12)
    net = Network((Dense("fc0", rng.normal(0, 0.5, (40, 24)), rng.normal(0, 0.1, 24), clip=0.5),
                   Dense("out", rng.normal(0, 0.3, (24, 10)), np.zeros(10), relu=False)))
    x = rng.uniform(0, 1, (30, 40))
    given = GivenQuant((TensorQuant.covering(0, 1), TensorQuant.covering(0, 2), None), {})
    q = quantize(net, x, given=given)
    assert q.layers[0].clamp_max == -64
    x_q = q.input.quantize(x)
    hidden = q.layers[0].forward(x_q)
    assert hidden.max() == -64 and (hidden == -64).mean() > 0.1      # the clamp binds
    run = GoldenTarget().run(compile_network(q, CONFIG), x_q)
    assert np.array_equal(run.outputs, q.forward(x_q))


def test_jobs_take_the_shape_the_timing_model_finds_fastest():
    """By hand from golden.timing, on 16 tiles at a batch of 8 (8-step conversions,
    16-row PROGRAMs of 17 cycles, 3 cycles to fetch each instruction):

    fc0, 256-32 (16 K x 2 N blocks): as two jobs of 16 K tiles, a round feeds 16 inputs,
    P = 18, an MVM 17 + 7 x 18 + 8 + 1 + 2 = 154 cycles; as two of 8 K x 2 N, P = 10,
    91 cycles, the second accumulating: 2 x (3 + 17 + 3 + 91) = 228 cycles.
    fc1, 32-16 (2 K x 1 N): 4 replicas, each round feeding 8 inputs for 2 vectors (P =
    10): 9 + 10 + 8 + 4 + 2 = 33 cycles (one replica: 70; eight: 35). Its sums are whole
    (one job), so the MVM requantises them as it writes: its 4 writes a round become 4
    requantisations, the last written 6 cycles after its read: 9 + 10 + 8 + 4 + 6 = 37,
    and no REQUANT: 3 + 17 + 3 + 37 = 60.
    fc0's REQUANTs of 8 entries, 3 + 8 + 4 each, and a HALT: 228 + 60 + 30 + 3 = 321
    cycles a batch, which the golden device counts."""
    rng = np.random.default_rng(9)
    q = quantize(random_network(rng, (256, 32, 16)), rng.uniform(0, 1, (50, 256)))
    config = AccelConfig(tiles=16)
    network_map = map_network(q, config, batch=8)
    shapes = [[(j.ktiles, j.ngroups, j.replicas) for j in lm.jobs] for lm in network_map.layers]
    assert shapes == [[(8, 2, 1), (8, 2, 1)], [(2, 1, 4)]]
    exe = compile_network(q, config, batch=8)
    x_q = q.input.quantize(rng.uniform(0, 1, (8, 256)))
    run = GoldenTarget().run(exe, x_q)
    assert run.counters["cycles"] == 321
    assert np.array_equal(run.outputs, q.forward(x_q))


def test_jobs_are_shaped_for_the_batch_they_run_at():
    """Without a batch, the mapping finds the largest and shapes the jobs for it: the
    same jobs as when that batch is asked for, and other jobs than for one sample."""
    rng = np.random.default_rng(10)
    q = quantize(random_network(rng, (256, 64, 10)), rng.uniform(0, 1, (50, 256)))
    config = AccelConfig(tiles=64, wmem_depth=64, amem_depth=256, psum_depth=256)
    shapes = lambda network_map: [[(j.ktiles, j.ngroups, j.replicas) for j in lm.jobs]
                                  for lm in network_map.layers]
    found = map_network(q, config)
    assert found.batch > 1
    assert shapes(found) == shapes(map_network(q, config, batch=found.batch))
    assert shapes(found) != shapes(map_network(q, config, batch=1))
    exe = compile_network(q, config)
    x_q = q.input.quantize(rng.uniform(0, 1, (exe.batch, 256)))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, q.forward(x_q))


def test_an_input_order_lets_the_executable_take_samples_as_users_hold_them(small_network):
    """A network trained on permuted inputs, compiled with that permutation, takes the
    unpermuted samples: its outputs equal the int8 reference on the permuted ones."""
    qnet, x_q = small_network(seed=5, samples=9)
    order = np.random.default_rng(5).permutation(32)     # network element j = user's order[j]
    users = np.empty_like(x_q)
    users[:, order] = x_q
    exe = compile_network(qnet, AccelConfig(), input_order=order)
    assert np.array_equal(GoldenTarget().run(exe, users).outputs, qnet.forward(x_q))
    assert not np.array_equal(GoldenTarget().run(compile_network(qnet, AccelConfig()), users).outputs,
                              qnet.forward(x_q))
    with pytest.raises(MappingError, match="input_order must be a permutation of the 32"):
        compile_network(qnet, AccelConfig(), input_order=order[:-1])


def test_min_max_calibration_streams_to_the_same_ranges():
    """Chunks of 3 samples give the ranges of every tensor's min and max over all 20."""
    rng = np.random.default_rng(6)
    network = init_cnn((8, 8, 1), [(3, 4, 1, 1), ("maxpool", 2), (2, 6, 1)], 10, rng)
    samples = rng.uniform(0, 1, (20, 8, 8, 1))
    expected = [TensorQuant.covering(v.min(), v.max()) for v in network.activations(samples)]
    streamed = calibrate(network, samples, chunk=3)
    # A 3-sample product may sum in another order than the 20-sample one (BLAS blocking):
    # scales agree to float rounding, zero points exactly.
    assert [q.zero_point for q in streamed] == [q.zero_point for q in expected]
    np.testing.assert_allclose([q.scale for q in streamed], [q.scale for q in expected],
                               rtol=1e-12)
