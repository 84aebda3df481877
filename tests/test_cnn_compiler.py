"""Convolutions through the compiler: the IR, training gradients, block layout, and golden
runs equal to the int8 reference for host-fed and on-device (strided, wide) im2col."""

import itertools

import numpy as np
import pytest

from firmware.compiler import codegen
from firmware.compiler.pipeline import compile_network, map_network
from firmware.compiler.mapper import MappingError
from firmware.frontend.network import (AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, Network,
                                       NetworkError)
from firmware.windows import col2im, im2col, im2col_columns, pad_images
from firmware.compiler.prune import prune_blocks
from firmware.compiler.quantize import quantize
from firmware.runtime.targets import GoldenTarget
from firmware.frontend.train import init_cnn, train
from golden import AccelConfig, isa

CONFIG = AccelConfig()


def small_cnn(rng, channels=(16, 16), stride=2):
    return init_cnn((8, 8, 1), [(3, channels[0], 1), (3, channels[1], stride)], 10, rng)


def test_im2col_and_col2im_are_adjoint():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 6, 3))
    cols = im2col(x, 3, 2, stride=2)
    assert cols.shape == (2, 3, 3, 3 * 2 * 3)
    assert np.array_equal(cols[1, 2, 1, :3], x[1, 4, 2])           # tap (0, 0) of (2, 1)
    g = rng.normal(size=cols.shape)
    assert np.isclose((cols * g).sum(), (x * col2im(g, x.shape[1:], 3, 2, 2)).sum())


@pytest.mark.parametrize("pads", [(1, 2, 3, 0), (0, 0, 1, 1), (2, 2, 2, 2), (0, 0, 0, 0)])
def test_pad_images_borders_like_numpy_pad(pads):
    top, left, bottom, right = pads
    x = np.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2).astype(np.int8)
    expected = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-5)
    padded = pad_images(x, pads, -5)
    assert padded.dtype == np.int8 and np.array_equal(padded, expected)


def test_im2col_columns_puts_each_patch_value_in_its_row():
    """Patch column j lands in row columns[j] of zeros, checked element by element."""
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (2, 7, 6, 3))
    columns = rng.permutation(24)[:3 * 2 * 3]
    out = im2col_columns(x, 3, 2, 2, columns, 24)
    assert out.shape == (2, 3, 3, 24)
    for (n, i, j), (ky, kx, c) in itertools.product(np.ndindex(2, 3, 3), np.ndindex(3, 2, 3)):
        assert out[n, i, j, columns[(ky * 2 + kx) * 3 + c]] == x[n, 2 * i + ky, 2 * j + kx, c]
    assert np.count_nonzero(out[..., np.setdiff1d(np.arange(24), columns)]) == 0


@pytest.mark.parametrize("build, message", [
    (lambda: Conv2d("c", np.zeros((3, 3, 1)), np.zeros(1)),
     "layer 'c': weights must have 4 dimension(s), not shape (3, 3, 1)"),
    (lambda: Conv2d("c", np.zeros((3, 3, 1, 4)), np.zeros(3)),
     "layer 'c': bias has shape (3,), the weights have 4 output channels"),
    (lambda: Conv2d("c", np.zeros((3, 3, 1, 4)), np.zeros(4), stride=0),
     "layer 'c': stride must be a positive integer, not 0"),
    (lambda: Network((Conv2d("c", np.zeros((9, 9, 1, 4)), np.zeros(4)),), (8, 8, 1)),
     "layer 'c': its 9x9 kernel is larger than its 8x8 input"),
    (lambda: Network((Conv2d("c", np.zeros((3, 3, 2, 4)), np.zeros(4)),), (8, 8, 1)),
     "layer 'c' takes (height, width, 2) images, not an activation of shape (8, 8, 1), which the input gives"),
    (lambda: Network((Conv2d("c", np.zeros((3, 3, 1, 4)), np.zeros(4)),)),
     "layer 'c': a network that does not start with Dense needs its input_shape"),
    (lambda: Network((Conv2d("c", np.zeros((3, 3, 1, 4)), np.zeros(4)), Dense("d", np.zeros((144, 2)), np.zeros(2))), (8, 8, 1)),
     "layer 'd' takes 144 inputs, not an activation of shape (6, 6, 4), which 'c' gives"),
])
def test_conv_errors_name_the_layer(build, message):
    with pytest.raises(NetworkError) as info:
        build()
    assert message in str(info.value)


def assert_gradient_matches_finite_difference(net, x, y, layer, element):
    """One plain SGD step (no momentum yet at step 1: velocity = -lr * grad) moves weight
    `element` of layer `layer` by -lr times its finite-difference gradient."""
    def loss(network):
        logits = network.forward(x)
        logits = logits - logits.max(axis=1, keepdims=True)
        return -np.mean(logits[np.arange(len(x)), y] - np.log(np.exp(logits).sum(axis=1)))

    lr = 1e-3
    stepped = train(net, x, y, 1, np.random.default_rng(2), lr=lr, batch=len(x))
    analytic = (net.layers[layer].weights - stepped.layers[layer].weights)[element] / lr
    bumped = net.layers[layer].weights.copy()
    bumped[element] += 1e-6
    layers = list(net.layers)
    layers[layer] = layers[layer].with_matrix(bumped.reshape(layers[layer].matrix.shape))
    numeric = (loss(net.with_layers(layers)) - loss(net)) / 1e-6
    assert analytic == pytest.approx(numeric, rel=1e-3, abs=1e-7)


def test_conv_gradient_matches_finite_difference():
    rng = np.random.default_rng(1)
    net = small_cnn(rng, channels=(4, 3))
    x, y = rng.uniform(0, 1, (5, 8, 8, 1)), rng.integers(0, 10, 5)
    assert_gradient_matches_finite_difference(net, x, y, 1, (1, 2, 0, 1))


def test_padded_conv_gradient_matches_finite_difference():
    """Both convolutions padded: the first layer's weight gradient flows back through the
    second's padded input gradient, cropped to the unpadded image."""
    rng = np.random.default_rng(3)
    net = init_cnn((6, 6, 1), [(3, 4, 1, 1), (3, 3, 1, 1)], 10, rng)
    x, y = rng.uniform(0, 1, (5, 6, 6, 1)), rng.integers(0, 10, 5)
    for element in ((0, 0, 0, 1), (0, 1, 0, 1)):           # a corner tap, an edge tap
        assert_gradient_matches_finite_difference(net, x, y, 0, element)


def test_a_padded_first_conv_runs_on_golden():
    rng = np.random.default_rng(4)
    # 8x8 padded by 2 on each side: 5x5 windows give an 8x8 output (by hand: 12 - 5 + 1).
    net = init_cnn((8, 8, 1), [(5, 16, 1, 2), ("maxpool", 2), (2, 16, 1)], 10, rng)
    assert net.shapes[1] == (8, 8, 16)
    x = rng.uniform(0, 1, (7, 8, 8, 1))
    qnet = quantize(net, x)
    x_q = qnet.input.quantize(x)
    # The border is the input zero point (real 0): the quantised patch at the corner
    # holds it where the image is not.
    corner = qnet.layers[0].patches(x_q)[:, 0, 0].reshape(7, 5, 5)
    assert np.all(corner[:, :2, :] == qnet.input.zero_point)
    run = GoldenTarget().run(compile_network(qnet, CONFIG), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))


def cnn_with(rng, *middle):
    """conv 3x3x16 (host-fed), the `middle` layers on the device, then flatten and dense."""
    conv0 = Conv2d("conv0", rng.normal(0, 0.4, (3, 3, 1, 16)), rng.normal(0, 0.1, 16))
    network = Network((conv0, *middle), (9, 9, 1))
    features = int(np.prod(network.shapes[-1]))
    return Network((conv0, *middle, Flatten("flat"),
                    Dense("out", rng.normal(0, 0.3, (features, 10)), np.zeros(10), relu=False)),
                   (9, 9, 1))


@pytest.mark.parametrize("middle", [
    # a padded convolution of an on-device image: a PadMap borders it with the zero point
    lambda rng: [Conv2d("conv1", rng.normal(0, 0.3, (3, 3, 16, 16)), np.zeros(16),
                        pads=(1, 1, 1, 1))],
    # asymmetric padding (SAME_UPPER of an even kernel), strided
    lambda rng: [Conv2d("conv1", rng.normal(0, 0.3, (2, 2, 16, 16)), np.zeros(16), stride=2,
                        pads=(0, 0, 1, 1))],
    # an overlapping max pool with padding (ResNet's stem: 3x3, stride 2, pad 1): -128 border
    lambda rng: [MaxPool2d("pool", 3, stride=2, pads=(1, 1, 1, 1))],
    # an overlapping max pool without padding, then a padded average pool
    lambda rng: [MaxPool2d("pool", 3, stride=1), AvgPool2d("avg", 2, stride=2, pads=(1, 1, 0, 0))],
])
def test_on_device_padding_and_strided_pools_run_on_golden(middle):
    rng = np.random.default_rng(13)
    net = cnn_with(rng, *middle(rng))
    x = rng.uniform(0, 1, (6, 9, 9, 1))
    qnet = quantize(net, x)
    x_q = qnet.input.quantize(x)
    exe = compile_network(qnet, CONFIG)
    run = GoldenTarget().run(exe, x_q)
    reference = qnet.forward(x_q)
    assert np.array_equal(run.outputs, reference)
    assert len(np.unique(reference, axis=0)) > 1


def test_pooling_reference_by_hand():
    """A 3x3 stride-2 max pool padded by 1 on a 4x4 ramp: windows centred on (0,0), (0,2),
    (2,0), (2,2) take the maxima of rows/columns 0-1, 1-3 (by hand)."""
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    pooled = MaxPool2d("p", 3, stride=2, pads=(1, 1, 1, 1)).forward(x)
    assert pooled[0, :, :, 0].tolist() == [[5, 7], [13, 15]]
    averaged = AvgPool2d("a", 2, stride=2, pads=(1, 1, 1, 1)).forward(x)
    assert averaged[0, 0, 0, 0] == 0 / 4 and averaged[0, 1, 1, 0] == (5 + 6 + 9 + 10) / 4


def test_block_pruning_of_an_on_device_conv_drops_whole_taps():
    rng = np.random.default_rng(3)
    net = small_cnn(rng, channels=(8, 16))          # 8 channels pad to one 16-row block a tap
    pruned, masks = prune_blocks(net, 0.5, CONFIG.rows, CONFIG.cols, layers=["conv1"])
    tap_kept = masks["conv1"].reshape(9, 8, 16).all(axis=(1, 2))
    tap_dropped = ~masks["conv1"].reshape(9, 8, 16).any(axis=(1, 2))
    assert np.all(tap_kept | tap_dropped) and tap_dropped.sum() == round(0.5 * 9)
    assert np.array_equal(masks["conv0"], np.ones_like(masks["conv0"]))


@pytest.mark.parametrize("stride, sparsity", [(1, 0.0), (2, 0.0), (2, 0.5)])
def test_cnn_golden_run_equals_int8_reference(stride, sparsity):
    rng = np.random.default_rng(4 + stride)
    net = small_cnn(rng, stride=stride)
    if stride == 1:                                  # a third conv keeps the dense small
        net = init_cnn((8, 8, 1), [(3, 8, 1), (2, 16, 1), (2, 16, 2)], 10, rng)
    if sparsity:
        net, _ = prune_blocks(net, sparsity, CONFIG.rows, CONFIG.cols)
    x = rng.uniform(0, 1, (11, 8, 8, 1))
    qnet = quantize(net, x)
    x_q = qnet.input.quantize(x)
    network_map = map_network(qnet, CONFIG)
    assert network_map.layers[0].positions == 36 and network_map.layers[0].samples_contiguous
    assert not network_map.layers[1].samples_contiguous          # wide, per-sample runs
    run = GoldenTarget().run(compile_network(qnet, CONFIG), x_q)
    reference = qnet.forward(x_q)
    assert np.array_equal(run.outputs, reference)
    assert len(np.unique(reference, axis=0)) > 1                  # not a constant output
    blocks = sum(int(lm.nonzero.sum()) for lm in network_map.layers)
    assert run.counters["mvm_products"] > 0 and blocks <= network_map.blocks


def test_cnn_mapping_errors_name_the_layer():
    rng = np.random.default_rng(5)
    conv_last = Network((Conv2d("c", rng.normal(size=(3, 3, 1, 4)), np.zeros(4)),), (8, 8, 1))
    with pytest.raises(MappingError, match="layer 'c': the network must end in a Dense layer "
                                           "or in a convolution or global pool of one pixel"):
        map_network(quantize(conv_last, rng.uniform(0, 1, (4, 8, 8, 1))), CONFIG)
    exe = compile_network(quantize(small_cnn(rng), rng.uniform(0, 1, (4, 8, 8, 1))), CONFIG)
    assert all(len(run.program) <= CONFIG.imem_depth for run in exe.plans[exe.batch])


@pytest.mark.parametrize("fused", [True, False], ids=["mvms pool", "max runs"])
@pytest.mark.parametrize("features", [
    [(3, 16, 1), ("maxpool", 2), (2, 16, 1)],     # host conv -> pool -> on-device conv
    [(3, 32, 1), ("maxpool", 3), (2, 16, 1)],     # two entries a pixel, 3x3 windows
    [(2, 16, 1), (3, 16, 1), ("maxpool", 2)],     # pooling a wide image (pitch 7, valid 5),
])                                                # the odd row and column cropped
def test_maxpool_through_the_compiler(features, fused, monkeypatch):
    """Pooled by MVMs that requantise into the maximum (where the windows tile the
    image and that is faster) or by MAX runs: either way as the int8 reference."""
    monkeypatch.setattr(codegen, "FUSED_OUTPUTS", fused)
    rng = np.random.default_rng(6)
    net = init_cnn((8, 8, 1), features, 10, rng)
    x, y = rng.uniform(0, 1, (12, 8, 8, 1)), rng.integers(0, 10, 12)
    net = train(net, x, y, 2, rng)                   # runs the pooling backward pass
    qnet = quantize(net, x)
    x_q = qnet.input.quantize(x)
    exe = compile_network(qnet, CONFIG)
    program = [isa.decode(words) for words in exe.plans[exe.batch][0].program]
    pooling_mvms = sum(ins.opcode == isa.Opcode.MVM and ins.max_into for ins in program)
    max_runs = sum(ins.opcode == isa.Opcode.MAX for ins in program)
    if not fused:
        assert max_runs > 0 and pooling_mvms == 0
    run = GoldenTarget().run(exe, x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))


def test_digits_cnn_pools_in_its_mvms_in_fewer_cycles():
    """The digits CNN's first convolution and its 2x2 pool: one requantizing MVM per
    window and offset over the batch (the first offset's written, the others' maximum
    taken), no psum, REQUANT or MAX for it; outputs as the int8 reference's, in fewer
    cycles than with MAX runs (the same network compiled both ways)."""
    from tessera.experiments.digits import MODELS
    rng = np.random.default_rng(8)
    qnet = quantize(MODELS[1].build(rng), rng.uniform(0, 1, (32, 8, 8, 1)))
    x_q = qnet.input.quantize(rng.uniform(0, 1, (40, 8, 8, 1)))
    runs = {}
    for fused in (True, False):
        codegen.FUSED_OUTPUTS = fused
        try:
            exe = compile_network(qnet, CONFIG)
        finally:
            codegen.FUSED_OUTPUTS = True
        program = [isa.decode(words) for words in exe.plans[exe.batch][0].program]
        runs[fused] = program, GoldenTarget().run(exe, x_q)
    program, run = runs[True]
    pooling = [ins for ins in program if ins.opcode == isa.Opcode.MVM and ins.requantize
               and ins.ngroups == 2]
    assert len(pooling) == 16                # 2x2 pooled pixels x 4 offsets
    assert sum(ins.max_into for ins in pooling) == 12
    assert not any(ins.opcode == isa.Opcode.MAX for ins in program)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    assert np.array_equal(runs[False][1].outputs, run.outputs)
    assert run.counters["cycles"] < runs[False][1].counters["cycles"]


@pytest.mark.parametrize("features", [
    [(3, 16, 1), ("maxpool", 2), (2, 16, 1)],     # 3x3 pooled pixels, one entry each
    [(3, 32, 1), ("maxpool", 3), (2, 16, 1)],     # 2x2 of 3x3 windows, two entries a pixel
])
def test_pooling_mvms_along_rows_and_over_samples_match_the_reference(features, monkeypatch):
    """Every batch's program pooled by MVMs, whatever it costs (MAX runs made dearer than
    anything): runs over the samples, or, for a batch smaller than a row of windows, along
    the row (one a sample and offset); the outputs as the int8 reference's."""
    monkeypatch.setattr(codegen, "_cycles", lambda program, config: sum(
        10_000 if ins.opcode == isa.Opcode.MAX else 1 for ins in program))
    rng = np.random.default_rng(6)
    qnet = quantize(init_cnn((8, 8, 1), features, 10, rng), rng.uniform(0, 1, (12, 8, 8, 1)))
    exe = compile_network(qnet, CONFIG)
    counts = set()
    for batch, runs in exe.plans.items():
        program = [isa.decode(words) for run in runs for words in run.program]
        assert not any(ins.opcode == isa.Opcode.MAX for ins in program), batch
        counts |= {(batch, ins.count) for ins in program if ins.max_into}
    width = 3 if features[1] == ("maxpool", 2) else 2           # pooled pixels a row
    assert (1, width) in counts                                  # a row of windows
    assert (exe.batch, exe.batch) in counts                      # over the samples
    x_q = qnet.input.quantize(rng.uniform(0, 1, (2 * exe.batch + 1, 8, 8, 1)))
    run = GoldenTarget().run(exe, x_q)
    assert run.batches[-1] == 1
    assert np.array_equal(run.outputs, qnet.forward(x_q))


def test_fewer_requantisers_than_columns_compile_to_requant_and_max_runs():
    """4 requantisers for 16 columns (the ULX3S board's): no MVM may requantise, so the
    digits CNN compiles to REQUANT and MAX runs, with the int8 reference's outputs."""
    from tessera.experiments.digits import MODELS
    rng = np.random.default_rng(8)
    qnet = quantize(MODELS[1].build(rng), rng.uniform(0, 1, (32, 8, 8, 1)))
    exe = compile_network(qnet, AccelConfig(requant_lanes=4))
    program = [isa.decode(words) for run in exe.plans[exe.batch] for words in run.program]
    opcodes = {ins.opcode for ins in program}
    assert isa.Opcode.REQUANT in opcodes and isa.Opcode.MAX in opcodes
    assert not any(ins.opcode == isa.Opcode.MVM and ins.flags & (isa.FLAG_REQUANTIZE
                                                                 | isa.FLAG_MAX)
                   for ins in program)
    x_q = qnet.input.quantize(rng.uniform(0, 1, (20, 8, 8, 1)))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))


def test_maxpool_reference_takes_each_window_maximum():
    rng = np.random.default_rng(6)
    net = init_cnn((8, 8, 1), [(3, 16, 1), ("maxpool", 2), (2, 16, 1)], 10, rng)
    assert net.shapes[2] == (3, 3, 16) and net.shapes[3] == (2, 2, 16)
    x = rng.uniform(0, 1, (12, 8, 8, 1))
    qnet = quantize(net, x)
    x_q = qnet.input.quantize(x)
    conv = qnet.layers[0].forward(x_q)
    assert np.array_equal(qnet.layers[1].forward(conv)[:, 1, 2], conv[:, 2:4, 4:6].max(axis=(1, 2)))


def test_pool_errors_name_the_layer():
    from firmware.frontend.network import MaxPool2d
    with pytest.raises(NetworkError, match="layer 'p': size must be an integer of at least 2"):
        MaxPool2d("p", 1)
    with pytest.raises(NetworkError, match="layer 'p': its 4x4 window is larger than its 3x3 input"):
        Network((MaxPool2d("p", 4), Flatten("f")), (3, 3, 2))
    host_pool = Network((MaxPool2d("p", 2), Flatten("f"), Dense("d", np.ones((8, 2)), np.zeros(2))),
                        (4, 4, 2))
    qnet = quantize(host_pool, np.random.default_rng(0).uniform(0, 1, (4, 4, 4, 2)))
    with pytest.raises(MappingError, match="layer 'p': pooling runs on an image a Conv2d"):
        map_network(qnet, CONFIG)


def test_avgpool_runs_on_the_crossbar_as_identity_taps():
    from firmware.compiler.quantize import QuantizedConv2d
    rng = np.random.default_rng(7)
    net = init_cnn((8, 8, 1), [(3, 16, 1), ("avgpool", 2), (2, 16, 1)], 10, rng)
    x = rng.uniform(0, 1, (10, 8, 8, 1))
    assert np.allclose(net.layers[1].forward(np.ones((1, 6, 6, 2)) * 3), 3)
    net = train(net, x, rng.integers(0, 10, 10), 2, rng)
    qnet = quantize(net, x)
    pool = qnet.layers[1]
    assert isinstance(pool, QuantizedConv2d) and pool.input == pool.output
    x_q = qnet.input.quantize(x)
    conv_q = qnet.layers[0].forward(x_q)
    exact = conv_q[:, :6, :6].reshape(10, 3, 2, 3, 2, 16).mean(axis=(2, 4))
    assert np.abs(pool.forward(conv_q) - exact).max() <= 0.5     # rounded, not truncated
    network_map = map_network(qnet, CONFIG)
    assert network_map.layers[1].k_blocks == 4                   # one block per window tap
    run = GoldenTarget().run(compile_network(qnet, CONFIG), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))



def test_residual_add_of_images_runs_on_golden():
    rng = np.random.default_rng(9)
    # conv 3x3 (host) -> conv 1x1 (on-device) + the conv 3x3's image -> 2x2 max pool -> dense:
    # the add is a 1x1 convolution of two on-device images.
    net = init_cnn((8, 8, 1), [(3, 16, 1), ("residual",), ("maxpool", 2)], 10, rng)
    assert [type(layer).__name__ for layer in net.layers][:3] == ["Conv2d", "Conv2d", "Add"]
    x, y = rng.uniform(0, 1, (10, 8, 8, 1)), rng.integers(0, 10, 10)
    net = train(net, x, y, 1, rng)                  # back-propagates through both paths
    qnet = quantize(net, x)
    x_q = qnet.input.quantize(x)
    network_map = map_network(qnet, CONFIG)
    add = next(lm for lm in network_map.layers if lm.name == "add1")
    assert add.positions == 6 * 6 and add.k_inputs == {1: 1}      # skip block from conv1's input
    run = GoldenTarget().run(compile_network(qnet, CONFIG), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))


def test_residual_add_of_a_flattened_image_is_refused_naming_the_layer():
    from firmware.frontend.network import Add
    rng = np.random.default_rng(9)
    # The skip is a Flatten's output: the image is on the device, but not laid out as a vector.
    net = Network((Conv2d("c0", rng.normal(size=(5, 5, 1, 4)), np.zeros(4)), Flatten("flat"),
                   Dense("d1", rng.normal(size=(64, 64)), np.zeros(64)), Add("res", ("d1", "flat")),
                   Dense("out", rng.normal(size=(64, 3)), np.zeros(3), relu=False)), (8, 8, 1))
    qnet = quantize(net, rng.uniform(0, 1, (4, 8, 8, 1)))
    with pytest.raises(MappingError, match="layer 'res': mixes images and vectors"):
        map_network(qnet, CONFIG)
