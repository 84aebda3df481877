"""ONNX interchange: exported networks agree with onnxruntime (in its reference mode),
imports agree with the original, and unsupported graphs are refused naming the node."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from onnx_graphs import grouped_graph, model_of, shuffle_graph

from firmware.frontend.network import (Add, AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, Network,  # noqa: E402
                              NetworkError)
from firmware.frontend.onnx_io import from_onnx, load_onnx, to_onnx  # noqa: E402
from firmware.frontend.onnx_reference import run_reference  # noqa: E402
from firmware.frontend.train import init_cnn, init_mlp  # noqa: E402


def onnxruntime_forward(model, x):
    return run_reference(model, x.astype(np.float32))


def nchw(x):
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def residual_mlp(rng):
    return Network((Dense("a", rng.normal(size=(12, 8)), rng.normal(size=8)),
                    Dense("b", rng.normal(size=(8, 8)), rng.normal(size=8)),
                    Add("skip", ("b", "a"), relu=True),
                    Dense("out", rng.normal(size=(8, 3)), rng.normal(size=3), relu=False)))


def strided_pools(rng):
    conv = Conv2d("c", rng.normal(size=(3, 3, 2, 4)), rng.normal(size=4), pads=(1, 1, 1, 1))
    layers = [conv, MaxPool2d("mp", 3, stride=2, pads=(1, 1, 1, 1)),
              AvgPool2d("ap", 2, stride=1, pads=(0, 0, 1, 1)), Flatten("f")]
    features = int(np.prod(Network(tuple(layers), (9, 9, 2)).shapes[-1]))
    return Network(tuple(layers) + (Dense("d", rng.normal(size=(features, 3)), rng.normal(size=3),
                                          relu=False),), (9, 9, 2))


NETWORKS = {
    "mlp": lambda rng: init_mlp([20, 16, 5], rng),
    "strided and padded pools": strided_pools,
    "cnn": lambda rng: init_cnn((9, 9, 2), [(3, 8, 1), ("maxpool", 2), (2, 6, 1),
                                            ("avgpool", 2)], 4, rng),
    "strided cnn": lambda rng: init_cnn((8, 8, 1), [(3, 5, 2), (2, 4, 1)], 3, rng),
    "residual": residual_mlp,
    "residual cnn": lambda rng: init_cnn((6, 6, 2), [(3, 4, 1), ("residual",)], 3, rng),
}


@pytest.mark.parametrize("kind", NETWORKS)
def test_export_agrees_with_onnxruntime_and_imports_back(kind):
    rng = np.random.default_rng(1)
    network = NETWORKS[kind](rng)
    for layer in network.matrix_layers():      # non-zero biases, so bias paths are checked
        object.__setattr__(layer, "bias", rng.normal(size=layer.bias.shape))
    x = rng.uniform(-1, 1, (5, *network.input_shape))
    model = to_onnx(network)
    expected = network.forward(x)
    assert np.allclose(onnxruntime_forward(model, nchw(x)), expected, atol=1e-4)
    back = from_onnx(model)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in network.layers]
    assert back.input_shape == network.input_shape
    assert np.allclose(back.forward(x), expected, atol=1e-5)       # float32 weights in ONNX


def _model(nodes, initializers, input_dims, output="y"):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_import_of_a_pytorch_style_graph_matches_onnxruntime():
    # Conv -> Relu -> MaxPool -> Flatten (channel-first) -> MatMul + Add -> Relu -> Gemm(transB).
    rng = np.random.default_rng(2)
    init = {"k": rng.normal(size=(4, 2, 3, 3)), "kb": rng.normal(size=4),
            "w": rng.normal(size=(36, 7)), "b": rng.normal(size=7),
            "w2": rng.normal(size=(3, 7)), "b2": rng.normal(size=3)}
    nodes = [helper.make_node("Conv", ["x", "k", "kb"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "w"], ["m"], name="fc"),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["h"]),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="head", transB=1)]
    model = _model(nodes, init, ["n", 2, 8, 8])
    network = from_onnx(model)
    assert [layer.name for layer in network.layers][:2] == ["conv", "maxpool2"]
    assert network.input_shape == (8, 8, 2)
    x = rng.uniform(-1, 1, (6, 8, 8, 2))
    assert np.allclose(network.forward(x), onnxruntime_forward(model, nchw(x)), atol=1e-4)


@pytest.mark.parametrize("node, init, message", [
    (helper.make_node("Sigmoid", ["x"], ["y"], name="gate"), {},
     "node 0 'gate' \\(Sigmoid\\): unsupported operator; supported: Gemm"),
    (helper.make_node("Conv", ["x", "k"], ["y"], kernel_shape=[3, 3], dilations=[2, 2]),
     {"k": np.ones((2, 1, 3, 3))}, "node 0 \\(Conv\\): dilated convolutions"),
    (helper.make_node("Conv", ["x", "k"], ["y"], kernel_shape=[3, 3], group=2),
     {"k": np.ones((2, 1, 3, 3))}, "node 0 \\(Conv\\): group=2 does not divide 2 output and 1 "
                                   "input channels into groups of 1 inputs"),
    (helper.make_node("Conv", ["x", "k"], ["y"], kernel_shape=[3, 3], group=1, strides=[1, 2]),
     {"k": np.ones((2, 1, 3, 3))}, "strides \\[1, 2\\] differ per axis"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="mp", kernel_shape=[2, 3]), {},
     "node 0 'mp' \\(MaxPool\\): only square windows with one stride"),
    (helper.make_node("Gemm", ["x", "x"], ["y"], name="fc"), {},
     "node 0 'fc' \\(Gemm\\): input 1 must be a constant"),
])
def test_unsupported_graphs_name_the_node(node, init, message):
    with pytest.raises(NetworkError, match=message):
        from_onnx(_model([node], init, ["n", 1, 6, 6]))


@pytest.mark.parametrize("padding", [{"pads": [1, 2, 0, 1]}, {"auto_pad": "SAME_UPPER"},
                                     {"auto_pad": "SAME_LOWER"}, {"auto_pad": "VALID"}])
@pytest.mark.parametrize("stride", [1, 2])
def test_padded_convolutions_match_onnxruntime(padding, stride):
    rng = np.random.default_rng(3)
    init = {"k": rng.normal(size=(3, 2, 4, 3)), "kb": rng.normal(size=3),
            "w": rng.normal(size=(3 * 49 if stride == 1 else 3 * 16, 2)), "b": rng.normal(size=2)}
    nodes = [helper.make_node("Conv", ["x", "k", "kb"], ["c"], name="conv", kernel_shape=[4, 3],
                              strides=[stride, stride], **padding),
             helper.make_node("Flatten", ["c"], ["f"], axis=1)]
    x = rng.uniform(-1, 1, (4, 7, 7, 2))
    conv = from_onnx(_model(nodes, init, ["n", 2, 7, 7], output="f"))
    features = int(np.prod(conv.shapes[-1]))
    init["w"] = rng.normal(size=(features, 2))
    model = _model(nodes + [helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc")], init,
                   ["n", 2, 7, 7])
    network = from_onnx(model)
    assert np.allclose(network.forward(x), onnxruntime_forward(model, nchw(x)), atol=1e-4)


def test_shape_errors_and_files_name_the_node_and_path(tmp_path):
    model = _model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")],
                   {"w": np.ones((5, 2))}, ["n", 4])
    with pytest.raises(NetworkError, match="layer 'fc' takes 5 inputs.*ONNX node 'fc'"):
        from_onnx(model)
    with pytest.raises(NetworkError, match="network file .*missing.onnx does not exist"):
        load_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(NetworkError, match="junk.onnx: not a readable ONNX model"):
        load_onnx(tmp_path / "junk.onnx")
    onnx.save(to_onnx(init_mlp([4, 3], np.random.default_rng(0))), tmp_path / "ok.onnx")
    assert load_onnx(tmp_path / "ok.onnx").input_shape == (4,)


def test_digits_export_folds_the_pixel_order_into_the_first_layer(tmp_path):
    from tessera.experiments.digits import export_onnx
    rng = np.random.default_rng(4)
    network = init_mlp([64, 12, 10], rng)
    order = rng.permutation(64)
    x = rng.uniform(0, 1, (6, 64))
    path = export_onnx(network, order, tmp_path / "mlp.onnx")
    raw = onnxruntime_forward(onnx.load(str(path)), x)
    assert np.allclose(raw, network.forward(x[:, order]), atol=1e-4)


SUPPORTED = {
    # Conv -> BatchNormalization (folded) -> Clip(0, 6) -> Flatten -> Gemm -> Softmax (host)
    "batchnorm, relu6, softmax": (
        [helper.make_node("Conv", ["x", "k", "kb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["n"], epsilon=1e-3),
         helper.make_node("Clip", ["n", "zero", "six"], ["r"]),
         helper.make_node("Flatten", ["r"], ["f"]),
         helper.make_node("Gemm", ["f", "w2", "b"], ["l"]),
         helper.make_node("Softmax", ["l"], ["y"], axis=-1)],
        ["n", 1, 6, 6], "Softmax"),
    # the input (N, 36) reshaped to images; Gemm -> BatchNormalization; LogSoftmax
    "input reshape, gemm batchnorm, logsoftmax": (
        [helper.make_node("Reshape", ["x", "shape"], ["i"]),
         helper.make_node("Conv", ["i", "k", "kb"], ["c"], kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Flatten", ["r"], ["f"]),
         helper.make_node("Gemm", ["f", "w2", "b"], ["l"]),
         helper.make_node("BatchNormalization", ["l", "g5", "beta5", "mean5", "var5"], ["n"]),
         helper.make_node("LogSoftmax", ["n"], ["y"])],
        ["n", 36], "LogSoftmax"),
    # layout no-ops around a vector: Unsqueeze to (N, 5, 1, 1), Transpose, Squeeze; ArgMax
    "squeeze, unsqueeze, transpose, argmax": (
        [helper.make_node("Flatten", ["x"], ["f"]),
         helper.make_node("Gemm", ["f", "w3", "b"], ["l"]),
         helper.make_node("Unsqueeze", ["l", "axes"], ["u"]),
         helper.make_node("Transpose", ["u"], ["t"], perm=[0, 2, 3, 1]),
         helper.make_node("Squeeze", ["t", "axes12"], ["s"]),
         helper.make_node("ArgMax", ["s"], ["y"], axis=1, keepdims=1)],
        ["n", 1, 6, 6], "ArgMax"),
    # a residual block whose add is a 2-input Sum, and a Sum of one tensor
    "sum as a residual add": (
        [helper.make_node("Flatten", ["x"], ["f"]),
         helper.make_node("Gemm", ["f", "w3", "b"], ["l"]),
         helper.make_node("Relu", ["l"], ["r"]),
         helper.make_node("Gemm", ["r", "w5", "b"], ["l2"]),
         helper.make_node("Sum", ["l2", "r"], ["s"]),
         helper.make_node("Sum", ["s"], ["s1"]),
         helper.make_node("Softmax", ["s1"], ["y"])],
        ["n", 1, 6, 6], "Softmax"),
}


def _case(case, opset=17, dtype=np.float32):
    rng = np.random.default_rng(8)
    init = {"k": rng.normal(size=(4, 1, 3, 3)), "kb": rng.normal(size=4),
            "g": rng.uniform(0.5, 2, 4), "beta": rng.normal(size=4), "mean": rng.normal(size=4),
            "var": rng.uniform(0.5, 2, 4), "w2": rng.normal(size=(144, 5)) / 4,
            "w3": rng.normal(size=(36, 5)), "b": rng.normal(size=5),
            "g5": rng.uniform(0.5, 2, 5), "beta5": rng.normal(size=5), "mean5": rng.normal(size=5),
            "var5": rng.uniform(0.5, 2, 5), "six": np.array(6.0), "zero": np.array(0.0),
            "w5": rng.normal(size=(5, 5)),
            "shape": np.array([-1, 1, 6, 6]), "axes": np.array([2, 3]), "axes12": np.array([1, 2])}
    nodes, dims, head = SUPPORTED[case]
    used = {name for node in nodes for name in node.input}
    model = model_of(nodes, {k: v for k, v in init.items() if k in used}, dims, opset=opset,
                   dtype=dtype, output_type=TensorProto.INT64 if head == "ArgMax" else TensorProto.FLOAT)
    x = rng.uniform(-1, 1, (7, *dims[1:])).astype(np.float32)
    return model, x, head


def _head(head, logits):
    if head == "ArgMax":
        return logits.argmax(1)[:, None]
    shifted = logits - logits.max(1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return np.exp(log_probabilities) if head == "Softmax" else log_probabilities


def _nhwc(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


@pytest.mark.parametrize("opset", [13, 21])
@pytest.mark.parametrize("case", SUPPORTED)
def test_supported_ops_match_onnxruntime(case, opset):
    model, x, head = _case(case, opset)
    imported = _imported(model)
    assert imported.head == head
    expected = onnxruntime_forward(model, x)
    ours = _head(head, imported.network.forward(_nhwc(x)))
    assert np.array_equal(ours, expected) if head == "ArgMax" else np.allclose(ours, expected, atol=1e-4)


@pytest.mark.parametrize("dtype, tolerance", [(np.float16, 3e-2), (np.float64, 1e-6)])
@pytest.mark.parametrize("case", SUPPORTED)
def test_float16_and_float64_initialisers_are_converted(case, dtype, tolerance):
    model, x, _ = _case(case)
    cast, _, _ = _case(case, dtype=dtype)
    exact = _imported(model).network.forward(_nhwc(x))
    assert np.allclose(_imported(cast).network.forward(_nhwc(x)), exact,
                       atol=tolerance * np.abs(exact).max())


def _imported(model):
    import tempfile
    from pathlib import Path

    from firmware.frontend.onnx_io import load_onnx_model
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(model, path)
        return load_onnx_model(path)


@pytest.mark.parametrize("nodes, init, message", [
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["g"]),
      helper.make_node("Clip", ["g", "lo", "hi"], ["y"])],
     {"w": np.ones((36, 3)), "b": np.zeros(3), "lo": np.array(-1.0), "hi": np.array(1.0)},
     r"node 2 \(Clip\): only Clip\(0, max\) with max > 0 .* not min=-1.0 max=1.0"),
    ([helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
      helper.make_node("Add", ["p", "c"], ["y"])], {"c": np.ones(1)},
     r"node 1 \(Add\): adds a constant to something other than a Gemm, MatMul or Conv result"),
    ([helper.make_node("Conv", ["x", "k"], ["a"], kernel_shape=[1, 1]),
      helper.make_node("Add", ["a", "c"], ["b"]), helper.make_node("Add", ["a", "b"], ["y"])],
     {"k": np.ones((2, 1, 1, 1)), "c": np.ones(2)},
     r"node 1 \(Add\): folds into 'conv0', whose result 'a' other nodes also read"),
    ([helper.make_node("Conv", ["x", "k"], ["a"], kernel_shape=[1, 1]),
      helper.make_node("Concat", ["a", "a"], ["y"], axis=2)], {"k": np.ones((2, 1, 1, 1))},
     r"node 1 \(Concat\): concatenates along axis 2; only the channels \(axis 1\)"),
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["g"]),
      helper.make_node("Softmax", ["g"], ["s"]), helper.make_node("Gemm", ["s", "w2", "b"], ["y"])],
     {"w": np.ones((36, 3)), "b": np.zeros(3), "w2": np.ones((3, 3))},
     r"node 3 \(Gemm\): follows the Softmax, which must end the graph"),
    ([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], {},
     r"node 0 \(Transpose\): Transpose perm=\[0, 2, 3, 1\] of a \(6, 6, 1\) tensor changes its layout"),
    ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
     {}, r"node 0 \(MaxPool\): pooling with ceil_mode=1 is not supported"),
    ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])],
     {}, r"node 0 \(MaxPool\): pooling with dilations=\[2, 2\] is not supported"),
])
def test_refused_constructs_name_node_and_attribute(nodes, init, message):
    with pytest.raises(NetworkError, match=message):
        from_onnx(model_of(nodes, init, ["n", 1, 6, 6]))


@pytest.mark.parametrize("nodes, init, dims, message", [
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transA=1)],
     {"w": np.ones((36, 3))}, ["n", 1, 6, 6], r"node 1 \(Gemm\): transA=1 is not supported"),
    ([helper.make_node("Reshape", ["x", "s"], ["y"])], {"s": np.array([-1, 6, 6])}, ["n", 1, 6, 6],
     r"node 0 \(Reshape\): only a reshape to \(batch, 36\) is supported, not \[-1, 6, 6\]"),
    ([helper.make_node("Softmax", ["x"], ["y"], axis=2)], {}, ["n", 1, 6, 6],
     r"node 0 \(Softmax\): only over the classes of a \(batch, classes\) output"),
    ([helper.make_node("Constant", [], ["c"], name="k"), helper.make_node("Relu", ["x"], ["y"])],
     {}, ["n", 1, 6, 6], r"node 0 'k' \(Constant\): has 0 attributes and 1 outputs; a "
                         r"Constant has one value and one output"),
    ([helper.make_node("Constant", [], ["c"], value_string="hi"),
      helper.make_node("Relu", ["x"], ["y"])],
     {}, ["n", 1, 6, 6], r"node 0 '' \(Constant\): value attribute 'value_string' is not numeric"),
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["g"]),
      helper.make_node("BatchNormalization", ["g", "s", "s", "s", "s"], ["y"], training_mode=1)],
     {"w": np.ones((36, 3)), "s": np.ones(3)}, ["n", 1, 6, 6],
     r"node 2 \(BatchNormalization\): training_mode=1 cannot be folded"),
])
def test_more_refusals_name_node_and_attribute(nodes, init, dims, message):
    with pytest.raises(NetworkError, match=message):
        from_onnx(model_of(nodes, init, dims))


def test_quantised_graphs_refuse_per_channel_activations_and_float_qgemm_outputs():
    q = {"s": np.array([0.1, 0.2], np.float32), "z": np.zeros(2, np.int8)}
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="quant")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, None)],
        [numpy_helper.from_array(v, k) for k, v in q.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(NetworkError, match=r"node 0 'quant' \(QuantizeLinear\): per-channel "
                                           r"activation scales are not supported"):
        from_onnx(model)
    init = {"xs": np.array(0.1, np.float32), "xz": np.array(0, np.int8),
            "w": np.ones((2, 3), np.int8), "ws": np.array(0.5, np.float32),
            "wz": np.array(0, np.int8)}
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["q"]),
         helper.make_node("QGemm", ["q", "xs", "xz", "w", "ws", "wz"], ["y"], name="fc",
                          domain="com.microsoft")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(NetworkError, match=r"node 1 'fc' \(QGemm\): a QGemm with a float output"):
        from_onnx(model)


def test_opsets_outside_13_to_21_are_refused():
    model = model_of([helper.make_node("Identity", ["x"], ["y"])], {}, ["n", 4], opset=11)
    with pytest.raises(NetworkError, match="opset 11: the importer takes opsets 13 to 21"):
        from_onnx(model)


def test_a_batch_one_export_reshapes_to_one_by_features():
    """torch.onnx.export at batch 1 writes Reshape(x, [1, F]): taken as (batch, F)."""
    rng = np.random.default_rng(9)
    model = model_of([helper.make_node("Reshape", ["x", "shape"], ["f"]),
                    helper.make_node("Gemm", ["f", "w", "b"], ["y"])],
                   {"shape": np.array([1, 36]), "w": rng.normal(size=(36, 5)),
                    "b": rng.normal(size=5)}, [1, 1, 6, 6])
    x = rng.uniform(-1, 1, (1, 1, 6, 6)).astype(np.float32)
    network = _imported(model).network
    assert np.allclose(network.forward(_nhwc(x)), onnxruntime_forward(model, x), atol=1e-4)


@pytest.mark.parametrize("node, message", [
    (helper.make_node("LRN", ["x"], ["y"], size=3), "LRN \\(local response normalisation\\) is "
     "not supported: .* use a variant of the model with BatchNormalization"),
])
def test_operators_refused_say_why_and_what_would_work(node, message):
    with pytest.raises(NetworkError, match=message):
        from_onnx(model_of([node], {}, ["n", 1, 6, 6]))


def test_a_dead_branch_names_the_layer_no_one_reads():
    nodes = [helper.make_node("Conv", ["x", "k"], ["a"], kernel_shape=[1, 1]),
             helper.make_node("Conv", ["a", "k2"], ["b"], kernel_shape=[1, 1]),
             helper.make_node("Conv", ["a", "k2"], ["y"], kernel_shape=[1, 1])]
    with pytest.raises(NetworkError, match="layer 'conv1': no layer reads its output"):
        from_onnx(model_of(nodes, {"k": np.ones((2, 1, 1, 1)), "k2": np.ones((2, 2, 1, 1))},
                         ["n", 1, 6, 6]))


def test_grouped_and_depthwise_convolutions_match_onnxruntime_and_run_on_golden():
    from firmware.compiler.pipeline import compile_network
    from firmware.compiler.quantize import quantize
    from firmware.runtime.targets import GoldenTarget
    from golden import AccelConfig

    rng = np.random.default_rng(12)
    model = grouped_graph(rng)
    x = rng.uniform(0, 1, (20, 4, 6, 6)).astype(np.float32)
    network = _imported(model).network
    assert np.allclose(network.forward(_nhwc(x)), onnxruntime_forward(model, x), atol=1e-4)
    qnet = quantize(network, _nhwc(x))
    x_q = qnet.input.quantize(_nhwc(x))
    exe = compile_network(qnet, AccelConfig(rows=4, cols=4, tiles=8))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))
    # The zero blocks between groups are skipped. Depthwise, 8 channels on 4x4 blocks:
    # 9 taps x 2 channel blocks of rows by 2 output blocks, and only channel block b
    # feeds output block b, so 9 x 2 of the 36 blocks are stored.
    # Each stored depthwise block is a diagonal: 4 of its 16 cells hold a weight (1/cols).
    assert any(line.startswith("  conv2: 18x2 blocks, 18 stored (50%), crossbar cell "
                               "utilisation 25%") for line in exe.summary), exe.summary


@pytest.mark.parametrize("between", ["Relu", "MaxPool"])
def test_a_channel_shuffle_folds_into_the_next_conv(between):
    from firmware.compiler.pipeline import compile_network
    from firmware.compiler.quantize import quantize
    from firmware.runtime.targets import GoldenTarget
    from golden import AccelConfig

    rng = np.random.default_rng(13)
    model = shuffle_graph(rng, between)
    x = rng.uniform(0, 1, (20, 4, 6, 6)).astype(np.float32)
    network = _imported(model).network
    # conv, [pool,] conv, flatten, gemm: no layer for the shuffle
    assert len(network.layers) == (5 if between == "MaxPool" else 4)
    assert np.allclose(network.forward(_nhwc(x)), onnxruntime_forward(model, x), atol=1e-4)
    qnet = quantize(network, _nhwc(x))
    x_q = qnet.input.quantize(_nhwc(x))
    assert np.array_equal(GoldenTarget().run(compile_network(qnet, AccelConfig()), x_q).outputs,
                          qnet.forward(x_q))


def test_a_shuffle_not_followed_by_a_conv_is_refused():
    rng = np.random.default_rng(13)
    model = shuffle_graph(rng)
    del model.graph.node[5:]                                    # the shuffle, its ReLU, the end
    model.graph.output[0].name = "m"
    with pytest.raises(NetworkError, match="a channel shuffle ends the graph"):
        from_onnx(model)
