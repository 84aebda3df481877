"""Networks that branch, as the published architectures do: residual blocks with
projection shortcuts (ResNet), four-way channel concatenations (Inception), chains of
concatenations with BatchNormalization and ReLU on their own (DenseNet), and sums of
several tensors. Each is built with onnx's helper API (`tessera.zoo`), imported, checked
against onnxruntime in its reference mode, compiled onto several configs and run on the
golden model against the int8 reference."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnxruntime.quantization import QuantFormat, QuantType  # noqa: E402

from firmware.compiler.pipeline import compile_network, map_network  # noqa: E402
from firmware.compiler.mapper import MappingError  # noqa: E402
from firmware.frontend.network import (NETWORK_INPUT, Add, Concat, Conv2d, Dense, Flatten,  # noqa: E402
                              MaxPool2d, Network, NetworkError)
from firmware.frontend.onnx_io import load_onnx_model  # noqa: E402
from firmware.frontend.onnx_reference import (quantize_with_onnxruntime, run_reference,  # noqa: E402
                                     run_reference_tensors)
from firmware.compiler.quantize import QuantizedConcat, quantize  # noqa: E402
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig  # noqa: E402
from tessera.zoo import build  # noqa: E402

CASES = {
    "ResNet, projection shortcuts": ("resnet", dict(size=8, width=1 / 8, blocks=(1, 1))),
    "Inception, four-way concat": ("inception", dict(size=8, width=1 / 8, modules=2)),
    "DenseNet, concat chains and standalone BN": ("densenet", dict(size=8, width=0.5,
                                                                   layers=(2, 1))),
}
CONFIGS = {
    "default": AccelConfig(),
    # small memories: many segments, tensors crossing them through the host
    "8x8 tiles, small memories": AccelConfig(tiles=8, rows=8, cols=8, wmem_depth=128,
                                             amem_depth=512, psum_depth=512, imem_depth=256),
}
FORMS = {
    "QDQ per-tensor": dict(quant_format=QuantFormat.QDQ, per_channel=False,
                           activation_type=QuantType.QInt8),
    "QOperator": dict(quant_format=QuantFormat.QOperator, per_channel=False,
                      activation_type=QuantType.QUInt8),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Per case: the float model's path and 200 NCHW samples (BN statistics from 16)."""
    folder, built = tmp_path_factory.mktemp("zoo"), {}
    rng = np.random.default_rng(0)
    for case, (architecture, options) in CASES.items():
        x = rng.uniform(0, 1, (200, 3, options["size"], options["size"])).astype(np.float32)
        model, _ = build(architecture, x[:16], **options)
        path = folder / f"{architecture}.onnx"
        onnx.save(model, path)
        built[case] = path, x
    return built


def nhwc(x):
    return x.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("case", CASES)
def test_branching_models_import_as_onnxruntime_computes_them(zoo, case):
    path, x = zoo[case]
    network = load_onnx_model(path).network
    assert any(len(reads) > 1 for reads in network.reads)          # it does branch
    assert np.allclose(network.forward(nhwc(x)), run_reference(path, x), atol=1e-4)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("case", CASES)
def test_branching_models_run_on_golden_equal_to_the_int8_reference(zoo, case, config):
    path, x = zoo[case]
    qnet = quantize(load_onnx_model(path).network, nhwc(x[:100]))
    x_q = qnet.input.quantize(nhwc(x[100:140]))
    exe = compile_network(qnet, CONFIGS[config])
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))


def layer_by_layer_lsb(path, imported, qnet, x):
    """Per layer whose input(s) and output onnxruntime's quantised model holds at the
    scales `qnet` uses: that layer of `qnet` run on onnxruntime's int8 inputs, against its
    int8 output, in LSBs."""
    quants = qnet.layers[0].input, *[layer.output for layer in qnet.layers]
    held = [name if name is not None and quants[t] == imported.quant.ranges[t] else None
            for t, name in enumerate(imported.tensors)]
    seen = run_reference_tensors(path, x, [name for name in held if name is not None])

    def int8(t):
        values = seen[held[t]]
        if values.dtype.kind == "f":                  # a DequantizeLinear's output
            values = np.rint(values / quants[t].scale) + quants[t].zero_point
        values = values.astype(np.int64) - (128 if values.dtype == np.uint8 else 0)
        return nhwc(values) if values.ndim == 4 else values

    lsb = {}
    for index, (layer, tensors) in enumerate(zip(qnet.layers, qnet.reads)):
        if all(held[t] is not None for t in (*tensors, index + 1)):
            ours = layer.forward(*[int8(t) for t in tensors])
            lsb[layer.name] = np.abs(ours - int8(index + 1))
    return lsb


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CASES)
def test_onnxruntime_quantised_branching_models_agree_layer_by_layer(zoo, tmp_path, case, form):
    """onnxruntime quantises after its recommended pre-processing (BatchNormalization folded
    into the Conv before it). Fed onnxruntime's own int8 inputs, every layer gives its int8
    outputs within one LSB: equal for convolutions, but for an add's integer weights
    (their ratio within ~1e-4 of the scales') and an average pool's ties, which
    onnxruntime rounds to even and the requantiser up. Through a whole network these
    one-LSB steps add up (measured: ResNet within 1, Inception exact, DenseNet up to 14
    where onnxruntime keeps a BatchNormalization in float), so the end-to-end check is
    top-1 agreement."""
    path, x = zoo[case]
    quantize_with_onnxruntime(path, tmp_path / "q.onnx", x[:100], preprocess=True, **FORMS[form])
    imported = load_onnx_model(tmp_path / "q.onnx")
    # QOperator leaves a BatchNormalization after the last Concat in float: calibrate it
    qnet = quantize(imported.network, nhwc(x[:100]), given=imported.quant)
    lsb = layer_by_layer_lsb(tmp_path / "q.onnx", imported, qnet, x[100:])
    assert len(lsb) >= 0.8 * len(qnet.matrix_layers())        # measured: 16 of 19 to all
    assert max(d.max() for d in lsb.values()) <= 1, {k: d.max() for k, d in lsb.items()}
    exact = np.mean(np.concatenate([(d == 0).ravel() for d in lsb.values()]))
    assert exact >= 0.97, exact
    x_q = qnet.input.quantize(nhwc(x[100:]))
    run = GoldenTarget().run(compile_network(qnet, AccelConfig()), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    reference = run_reference(tmp_path / "q.onnx", x[100:])
    assert np.mean(run.outputs.argmax(1) == reference.argmax(1)) >= 0.94


def test_a_concat_rescales_a_wider_input_with_an_integer_weight():
    """A quantised model may give a Concat a narrower range than one of its inputs has:
    the requantiser only scales down, so that input's identity weight grows to 2."""
    from firmware.frontend.quant_params import GivenQuant, TensorQuant
    rng = np.random.default_rng(5)
    net = Network((Dense("a", rng.normal(size=(6, 4)), np.zeros(4)),
                   Dense("b", rng.normal(size=(4, 4)), np.zeros(4)),
                   Concat("cat", ("a", "b")),
                   Dense("out", rng.normal(size=(8, 3)), np.zeros(3), relu=False)))
    wide, narrow = TensorQuant(0.05, -128), TensorQuant(0.03, -128)
    given = GivenQuant((TensorQuant(0.01, 0), wide, TensorQuant(0.02, -128), narrow,
                        TensorQuant(0.1, 0)), {})
    qnet = quantize(net, None, given=given)
    cat = qnet.layers[2]
    assert isinstance(cat, QuantizedConcat) and cat.output == narrow
    assert np.array_equal(np.diag(cat.weights), [2] * 4 + [1] * 4)
    x_a = np.arange(-128, 128, 4)[:, None].repeat(4, axis=1)
    x_b = np.full_like(x_a, -128)
    # real 0.05 * (q + 128) at 0.03: round(q_real / 0.03) - 128, clipped (hand derivation)
    expected = np.clip(np.rint(0.05 * (x_a + 128) / 0.03) - 128, -128, 127)
    assert np.array_equal(cat.forward(x_a, x_b)[:, :4], expected)


def test_a_sum_of_three_and_a_concat_of_vectors_run_on_golden():
    rng = np.random.default_rng(6)
    net = Network((Dense("a", rng.normal(0, 0.4, (10, 12)), rng.normal(0, 0.1, 12)),
                   Dense("b", rng.normal(0, 0.4, (12, 12)), rng.normal(0, 0.1, 12)),
                   Dense("c", rng.normal(0, 0.4, (12, 12)), rng.normal(0, 0.1, 12), reads=("a",)),
                   Add("sum", ("a", "b", "c"), relu=True),
                   Concat("cat", ("sum", "b")),
                   Dense("out", rng.normal(0, 0.3, (24, 5)), np.zeros(5), relu=False)))
    x = rng.uniform(0, 1, (60, 10))
    y = net.forward(x)          # float: the add and concat by hand
    a = np.maximum(x @ net.layers[0].weights + net.layers[0].bias, 0)
    b = np.maximum(a @ net.layers[1].weights + net.layers[1].bias, 0)
    c = np.maximum(a @ net.layers[2].weights + net.layers[2].bias, 0)
    s = np.maximum(a + b + c, 0)
    assert np.allclose(y, np.hstack([s, b]) @ net.layers[5].weights)
    qnet = quantize(net, x[:40])
    x_q = qnet.input.quantize(x[40:])
    exe = compile_network(qnet, AccelConfig(tiles=4, rows=8, cols=8))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))


def inception_module(rng, channels=16):
    """A stem, then an Inception module of whole blocks of `channels` (1x1; 1x1-3x3;
    3x3 max pool-1x1) concatenated, a max pool of the concatenation, a 1x1 convolution of
    that and a dense layer."""
    def conv(name, k, cin, cout, **options):
        weights = rng.normal(0, (2 / (k * k * cin)) ** 0.5, (k, k, cin, cout))
        return Conv2d(name, weights, rng.normal(0, 0.1, cout), **options)

    c = channels
    return Network((conv("stem", 3, 3, c, pads=(1, 1, 1, 1)),
                    conv("a", 1, c, c),
                    conv("b0", 1, c, c, reads=("stem",)),
                    conv("b", 3, c, c, pads=(1, 1, 1, 1)),
                    MaxPool2d("p", 3, 1, (1, 1, 1, 1), reads=("stem",)),
                    conv("d", 1, c, c),
                    Concat("cat", ("a", "b", "d")),
                    MaxPool2d("pool", 2),
                    conv("mix", 1, 3 * c, c),
                    Flatten("f"),
                    Dense("out", rng.normal(0, 0.2, (9 * c, 5)), np.zeros(5), relu=False)),
                   (6, 6, 3))


@pytest.mark.parametrize("rows, free", [(16, True), (32, False)])
def test_a_concat_of_one_quantisation_and_whole_blocks_costs_nothing(rows, free):
    """Calibrated by Tessera, a Concat's inputs take its range (TFLite's rule), so it
    changes no value: with each input whole blocks of `rows` channels, no step copies it;
    the 1x1 convolution reads the three producers' tensors where they are and the max pool
    runs part by part. With 16 channels in 32-row blocks it stays a step. Either way golden
    equals the int8 reference, which computes the Concat through its requantisation."""
    rng = np.random.default_rng(8)
    net = inception_module(rng)
    x = rng.uniform(0, 1, (48, 6, 6, 3))
    qnet = quantize(net, x[:32])
    names = [layer.name for layer in qnet.layers]
    cat = qnet.layers[names.index("cat")]
    assert cat.layout_only
    assert all(qnet.layers[names.index(n)].output == cat.output for n in "abd")
    x_parts = [rng.integers(-128, 128, (10, 16)) for _ in range(3)]
    assert np.array_equal(cat.forward(*x_parts), np.hstack(x_parts))      # the identity
    config = AccelConfig(rows=rows, cols=16)
    steps = {step.name: step for step in map_network(qnet, config).steps}
    assert ("cat" in steps) is not free
    if free:
        assert {"pool.part0", "pool.part1", "pool.part2"} <= set(steps)
        assert len(steps["mix"].source_groups) == 3           # the pooled parts, in place
    x_q = qnet.input.quantize(x[32:])
    assert np.array_equal(GoldenTarget().run(compile_network(qnet, config), x_q).outputs,
                          qnet.forward(x_q))


def test_graph_errors_name_the_layer():
    rng = np.random.default_rng(7)
    conv = Conv2d("c", rng.normal(size=(1, 1, 2, 3)), np.zeros(3))
    with pytest.raises(NetworkError, match=r"layer 'cat' concatenates tensors of shapes "
                                           r"\(2, 2, 2\), \(4, 4, 2\); all but the channels"):
        Network((conv, Conv2d("d", rng.normal(size=(3, 3, 3, 2)), np.zeros(2)),
                 Concat("cat", ("d", NETWORK_INPUT)), Flatten("f")), (4, 4, 2))
    with pytest.raises(NetworkError, match="layer 'cat': a Concat reads two or more"):
        Concat("cat", ("c",))
    with pytest.raises(NetworkError, match="layer 'c': no layer reads its output"):
        Network((conv, Conv2d("d", rng.normal(size=(1, 1, 2, 3)), np.zeros(3),
                              reads=(NETWORK_INPUT,))), (4, 4, 2))
    # the host writes the input once, in the first layer's layout: a second reader is refused
    net = Network((conv, Conv2d("d", rng.normal(size=(1, 1, 2, 3)), np.zeros(3),
                                reads=(NETWORK_INPUT,)),
                   Add("sum", ("c", "d")), Flatten("f"),
                   Dense("out", rng.normal(size=(48, 2)), np.zeros(2))), (4, 4, 2))
    with pytest.raises(MappingError, match="layer 'd': reads the network's input, which the "
                                           "host writes once"):
        map_network(quantize(net, rng.uniform(0, 1, (8, 4, 4, 2))), AccelConfig())


def average_pool_graph(rng, count_include_pad):
    """Conv -> Relu -> AveragePool 3x3/1 padded by 1 (count_include_pad as given) -> Conv
    -> Relu -> GlobalAveragePool -> Flatten -> Gemm (Inception's and ShuffleNet's pool)."""
    from onnx import TensorProto, helper, numpy_helper
    init = {"k1": rng.normal(0, 0.5, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
            "k2": rng.normal(0, 0.3, (8, 8, 1, 1)), "b2": rng.normal(0, 0.1, 8),
            "w": rng.normal(0, 0.5, (8, 5)), "b": rng.normal(0, 0.1, 5)}
    nodes = [helper.make_node("Conv", ["x", "k1", "b1"], ["c1"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("AveragePool", ["r1"], ["p"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], count_include_pad=count_include_pad),
             helper.make_node("Conv", ["p", "k2", "b2"], ["c2"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pools_with_either_count_include_pad(tmp_path, count_include_pad):
    """Leaving the padding out of the count, a 3x3/1 pool of a 6x6 image divides corners by
    4, edges by 6 and the inside by 9 (by hand): three classes of requantisation
    parameters, one REQUANT run per class and row. Float equals onnxruntime; golden equals
    the int8 reference on the default config and in bands on 64 entries; onnxruntime's
    QDQ model agrees layer by layer within one LSB."""
    rng = np.random.default_rng(31)
    model = average_pool_graph(rng, count_include_pad)
    onnx.save(model, tmp_path / "avg.onnx")
    x = rng.uniform(0, 1, (300, 3, 8, 8)).astype(np.float32)
    network = load_onnx_model(tmp_path / "avg.onnx").network
    assert np.allclose(network.forward(nhwc(x)), run_reference(model, x), atol=1e-4)
    qnet = quantize(network, nhwc(x[:100]))
    pool = qnet.layers[1]
    if count_include_pad:
        assert pool.classes is None
    else:
        assert [len(pool.class_params), pool.classes[0, 0], pool.classes[0, 1],
                pool.classes[1, 1]] == [3, 0, 1, 2]
    x_q = qnet.input.quantize(nhwc(x[100:140]))
    for config in (AccelConfig(), AccelConfig(amem_depth=64, psum_depth=64)):
        exe = compile_network(qnet, config)
        assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))
    assert any((" band" in image.limit or " tiles of " in image.limit)
               and image.layers == [pool.name] for image in exe.segments)
    quantize_with_onnxruntime(tmp_path / "avg.onnx", tmp_path / "q.onnx", x[:100],
                              preprocess=True, **FORMS["QOperator"])
    imported = load_onnx_model(tmp_path / "q.onnx")
    qdq = quantize(imported.network, nhwc(x[:100]), given=imported.quant)
    lsb = layer_by_layer_lsb(tmp_path / "q.onnx", imported, qdq, x[100:])
    assert qdq.layers[1].name in lsb and max(d.max() for d in lsb.values()) <= 1
