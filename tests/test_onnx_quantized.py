"""Quantised ONNX models as onnxruntime's own quantiser makes them (QDQ per-tensor, QDQ
per-channel, QOperator), taken with their scales and compared with onnxruntime in its
reference mode (firmware.frontend.onnx_reference), whose results do not depend on the CPU."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnxruntime.quantization import QuantFormat, QuantType  # noqa: E402

from firmware.compiler.pipeline import compile_network  # noqa: E402
from firmware.frontend.network import NetworkError  # noqa: E402
from firmware.frontend.onnx_io import load_onnx_model, to_onnx  # noqa: E402
from firmware.frontend.onnx_reference import quantize_with_onnxruntime, run_reference  # noqa: E402
from firmware.compiler.quantize import quantize  # noqa: E402
from firmware.runtime.targets import GoldenTarget
from firmware.frontend.train import init_cnn, init_mlp, train  # noqa: E402
from golden import AccelConfig  # noqa: E402
from onnx_graphs import grouped_graph, shuffle_graph  # noqa: E402
from tessera.cli import main  # noqa: E402
from tessera.experiments.digits import load_digits_split  # noqa: E402

FORMS = {
    "QDQ per-tensor": dict(quant_format=QuantFormat.QDQ, per_channel=False,
                           activation_type=QuantType.QInt8),
    "QDQ per-channel": dict(quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8),
    "QOperator": dict(quant_format=QuantFormat.QOperator, per_channel=False,
                      activation_type=QuantType.QUInt8),
}


def onnx_inputs(kind, x):
    return x.astype(np.float32) if kind == "MLP" else x.reshape(-1, 1, 8, 8).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A digits MLP and a padded CNN, trained briefly, as float ONNX files."""
    folder = tmp_path_factory.mktemp("models")
    x_train, y_train, x_test, _ = load_digits_split(0)
    rng = np.random.default_rng(0)
    built = {
        "MLP": train(init_mlp([64, 32, 10], rng), x_train, y_train, 8, rng),
        # a 3x3 convolution padded by 1 (8x8 stays 8x8), pooling, a valid 2x2 one
        "CNN": train(init_cnn((8, 8, 1), [(3, 8, 1, 1), ("maxpool", 2), (2, 16, 1)], 10, rng),
                     x_train.reshape(-1, 8, 8, 1), y_train, 4, rng),
    }
    paths = {}
    for kind, network in built.items():
        paths[kind] = folder / f"{kind}.onnx"
        onnx.save(to_onnx(network), paths[kind])
    return paths, x_train[:200], x_test


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["MLP", "CNN"])
def test_quantised_models_compile_and_match_onnxruntime(models, tmp_path, capsys, kind, form):
    paths, calibration, x_test = models
    quantised = tmp_path / f"{kind}_{form.replace(' ', '_')}.onnx"
    quantize_with_onnxruntime(paths[kind], quantised, onnx_inputs(kind, calibration), **FORMS[form])
    # The default options compile it, with no calibration data.
    assert main(["compile", str(quantised), "--out", str(tmp_path / "q.tessera")]) == 0
    assert "no recalibration" in capsys.readouterr().out

    model = load_onnx_model(quantised)
    qnet = quantize(model.network, None, given=model.quant)
    x = onnx_inputs(kind, x_test)
    reference = run_reference(quantised, x)
    x_q = qnet.input.quantize(x if kind == "MLP" else x.transpose(0, 2, 3, 1))
    run = GoldenTarget().run(compile_network(qnet, AccelConfig()), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    ours = qnet.output.dequantize(run.outputs)
    lsb = np.abs(ours - reference) / qnet.output.scale
    assert np.mean(ours.argmax(1) == reference.argmax(1)) >= 0.99
    assert np.mean(lsb <= 1 + 1e-6) >= 0.99
    assert lsb.max() <= 2 + 1e-6


@pytest.mark.parametrize("kind", ["MLP", "CNN"])
def test_float_models_agree_with_onnxruntime(models, kind):
    paths, calibration, x_test = models
    model = load_onnx_model(paths[kind])
    network = model.network
    assert model.quant is None
    shape = (-1, *network.input_shape)
    qnet = quantize(network, calibration.reshape(shape))
    x_q = qnet.input.quantize(x_test.reshape(shape))
    run = GoldenTarget().run(compile_network(qnet, AccelConfig()), x_q)
    reference = run_reference(paths[kind], onnx_inputs(kind, x_test))
    assert np.mean(run.outputs.argmax(1) == reference.argmax(1)) >= 0.98


def test_asymmetric_weights_are_refused_naming_the_node(models, tmp_path):
    paths, calibration, _ = models
    quantised = tmp_path / "uint8_weights.onnx"
    quantize_with_onnxruntime(paths["MLP"], quantised, onnx_inputs("MLP", calibration),
                              quant_format=QuantFormat.QDQ, weight_type=QuantType.QUInt8,
                              activation_type=QuantType.QUInt8)
    with pytest.raises(NetworkError, match=r"uint8_weights.onnx: node \d+ .*\(DequantizeLinear\): "
                                           r"weights must be symmetric int8"):
        load_onnx_model(quantised)


@pytest.mark.parametrize("form", FORMS)
def test_a_quantised_residual_add_matches_onnxruntime(tmp_path, form):
    """QLinearAdd (QOperator) or Add between Q/DQ pairs: the crossbar add's two integer
    weights approximate the scales' ratio to ~1e-4, so every output is within one LSB of
    onnxruntime's (14 of 2,000 values off by one in the measurement this test pins)."""
    from firmware.frontend.network import Add, Dense, Network
    rng = np.random.default_rng(3)
    net = Network((Dense("a", rng.normal(0, 0.3, (20, 16)), rng.normal(0, 0.1, 16)),
                   Dense("b", rng.normal(0, 0.3, (16, 16)), rng.normal(0, 0.1, 16)),
                   Add("skip", ("b", "a"), relu=True),
                   Dense("out", rng.normal(0, 0.3, (16, 5)), rng.normal(0, 0.1, 5), relu=False)))
    onnx.save(to_onnx(net), tmp_path / "res.onnx")
    x = rng.uniform(0, 1, (400, 20)).astype(np.float32)
    quantize_with_onnxruntime(tmp_path / "res.onnx", tmp_path / "q.onnx", x[:100], **FORMS[form])
    model = load_onnx_model(tmp_path / "q.onnx")
    qnet = quantize(model.network, None, given=model.quant)
    run = GoldenTarget().run(compile_network(qnet, AccelConfig()), qnet.input.quantize(x))
    lsb = np.rint(np.abs(qnet.output.dequantize(run.outputs) - run_reference(tmp_path / "q.onnx", x))
                  / qnet.output.scale)
    assert lsb.max() <= 1 and np.mean(lsb == 1) <= 0.01


def pooling_graph(rng, bias_add=True):
    """Conv(pad 1) -> Relu -> AveragePool 2 -> Conv -> Relu -> GlobalAveragePool -> Flatten
    -> MatMul [-> Add (bias)] -> Dropout -> Identity: quantised, the QLinear pools, a
    QLinearMatMul [and a QLinearAdd of a constant] in QOperator form."""
    from onnx import TensorProto, helper, numpy_helper
    init = {"k1": rng.normal(0, 0.5, (8, 1, 3, 3)), "b1": rng.normal(0, 0.1, 8),
            "k2": rng.normal(0, 0.3, (16, 8, 2, 2)), "b2": rng.normal(0, 0.1, 16),
            "w": rng.normal(0, 0.5, (16, 10)), "b": rng.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Conv", ["input", "k1", "b1"], ["c1"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "k2", "b2"], ["c2"], kernel_shape=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["m" if bias_add else "a"]),
             *([helper.make_node("Add", ["m", "b"], ["a"])] if bias_add else []),
             helper.make_node("Dropout", ["a"], ["d"]),
             helper.make_node("Identity", ["d"], ["y"])]
    graph = helper.make_graph(
        nodes, "pools", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in init.items()
         if bias_add or k != "b"])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("bias_add", [False, True])
@pytest.mark.parametrize("form", FORMS)
def test_pools_matmul_and_layout_ops_quantised_match_onnxruntime(tmp_path, form, bias_add):
    """Top-1 classes agree throughout. The int8 outputs differ from onnxruntime's in two
    ways, both measured and explained, neither a fault:
    - QDQ: the 2x2 average pool's input and output share a scale, so a quarter of its
      averages are exact ties, which onnxruntime rounds to even and the hardware (TFLite's
      single rounding) up: 10 % of the pool's values, spread by the next convolution to
      ~40 % of the outputs by one LSB and ~3 % by two or three;
    - a MatMul whose bias is a separate Add: onnxruntime rounds the MatMul's output to its
      own scale before adding, Tessera folds the bias and rounds once (27 % of QOperator
      outputs by one LSB; none without the Add)."""
    rng = np.random.default_rng(21)
    onnx.save(pooling_graph(rng, bias_add), tmp_path / "pools.onnx")
    x = rng.uniform(0, 1, (300, 1, 8, 8)).astype(np.float32)
    quantize_with_onnxruntime(tmp_path / "pools.onnx", tmp_path / "q.onnx", x[:100], **FORMS[form])
    ops = {node.op_type for node in onnx.load(tmp_path / "q.onnx").graph.node}
    if form == "QOperator":
        assert {"QLinearMatMul", "QLinearAveragePool", "QLinearGlobalAveragePool"} <= ops
        assert ("QLinearAdd" in ops) == bias_add
    model = load_onnx_model(tmp_path / "q.onnx")
    qnet = quantize(model.network, None, given=model.quant)
    x_q = qnet.input.quantize(x.transpose(0, 2, 3, 1))
    run = GoldenTarget().run(compile_network(qnet, AccelConfig()), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    reference = run_reference(tmp_path / "q.onnx", x)
    lsb = np.rint(np.abs(qnet.output.dequantize(run.outputs) - reference) / qnet.output.scale)
    assert np.mean(run.outputs.argmax(1) == reference.argmax(1)) >= 0.99
    if form == "QOperator" and not bias_add:
        assert np.mean(lsb == 0) >= 0.99 and lsb.max() <= 1     # measured: all 3,000 equal
    elif form == "QOperator":
        assert lsb.max() <= 1                                    # measured: 810 of 3,000 by 1
    else:
        assert np.mean(lsb <= 1) >= 0.9 and lsb.max() <= 4       # measured: 95-97 %, 2-4


def quantised_run(tmp_path, model, x, form):
    """`model` quantised by onnxruntime in `form` (calibrated on x[:100]), imported with
    its own scales, compiled and run on golden (checked equal to the int8 reference):
    (qnet, the run, onnxruntime's reference outputs on x)."""
    onnx.save(model, tmp_path / "model.onnx")
    quantize_with_onnxruntime(tmp_path / "model.onnx", tmp_path / "q.onnx", x[:100], **FORMS[form])
    imported = load_onnx_model(tmp_path / "q.onnx")
    qnet = quantize(imported.network, None, given=imported.quant)
    x_q = qnet.input.quantize(x.transpose(0, 2, 3, 1))
    run = GoldenTarget().run(compile_network(qnet, AccelConfig()), x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    return qnet, run, run_reference(tmp_path / "q.onnx", x)


def batchnorm_graph(rng):
    """Conv -> BatchNormalization (gains 0.2-4, either sign) -> Relu -> GlobalAveragePool ->
    Flatten -> Gemm: quantised without onnxruntime's pre-processing, the BatchNormalization
    stays a node of its own."""
    from onnx import TensorProto, helper, numpy_helper
    init = {"k": rng.normal(0, 0.5, (8, 1, 3, 3)), "kb": rng.normal(0, 0.1, 8),
            "s": rng.uniform(0.2, 4, 8) * rng.choice([-1, 1], 8), "o": rng.normal(0, 0.3, 8),
            "m": rng.normal(0, 0.2, 8), "v": rng.uniform(0.3, 2, 8),
            "w": rng.normal(0, 0.5, (8, 10)), "b": rng.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Conv", ["input", "k", "kb"], ["c"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "o", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"])]
    graph = helper.make_graph(
        nodes, "bn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("form", FORMS)
def test_a_batchnorm_kept_by_the_quantiser_folds_with_its_scales(tmp_path, form):
    """Folding the BatchNormalization multiplies the conv's weights by its gain; their
    scales follow (else 1.3 % of the weights clipped and top-1 fell to 0 of 300, measured),
    and the folded layer's output range is the model's post-BN one (QDQ), or, where the
    QOperator model runs the BN in float between its QLinearConv and the next quantised
    tensor, the conv's range mapped through the BN's affine. QDQ then agrees within the
    usual LSB; QOperator cannot (onnxruntime rounds on the conv's grid before the BN,
    Tessera once after it on a coarser one): measured 62 % within 1 LSB, at most 6."""
    rng = np.random.default_rng(4)
    model = batchnorm_graph(rng)
    x = rng.uniform(0, 1, (300, 1, 8, 8)).astype(np.float32)
    qnet, run, reference = quantised_run(tmp_path, model, x, form)
    assert "BatchNormalization" in {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}
    lsb = np.rint(np.abs(qnet.output.dequantize(run.outputs) - reference) / qnet.output.scale)
    assert np.mean(run.outputs.argmax(1) == reference.argmax(1)) >= 0.99
    if form == "QOperator":
        assert lsb.max() <= 8
    else:
        assert np.mean(lsb <= 1) >= 0.99 and lsb.max() <= 2      # measured: 99.8 %, 2


def conv_pool_ending_graph(rng):
    """SqueezeNet's and DenseNet's classifier: a 1x1 convolution to the classes, ReLU,
    GlobalAveragePool, Flatten, with no Gemm."""
    from onnx import TensorProto, helper, numpy_helper
    init = {"k": rng.normal(size=(8, 1, 3, 3)), "kb": rng.normal(size=8),
            "k2": rng.normal(size=(5, 8, 1, 1)) * 0.3, "kb2": rng.normal(size=5)}
    nodes = [helper.make_node("Conv", ["input", "k", "kb"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "k2", "kb2"], ["c2"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    graph = helper.make_graph(
        nodes, "ending", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# graph, its seed, its input's channels: each measured equal to onnxruntime on all 1,500
# outputs in every form
EXACT_CASES = {"grouped and depthwise convolutions": (grouped_graph, 12, 4),
               "a conv and global pool ending": (conv_pool_ending_graph, 1, 1)}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", EXACT_CASES)
def test_quantised_graphs_equal_onnxruntime_exactly(tmp_path, form, case):
    build, seed, channels = EXACT_CASES[case]
    rng = np.random.default_rng(seed)
    model = build(rng)
    x = rng.uniform(0, 1, (300, channels, 6, 6)).astype(np.float32)
    qnet, run, reference = quantised_run(tmp_path, model, x, form)
    assert np.array_equal(np.rint(reference / qnet.output.scale) + qnet.output.zero_point,
                          run.outputs)


@pytest.mark.parametrize("form", FORMS)
def test_a_channel_shuffle_quantised_matches_onnxruntime(tmp_path, form):
    """QOperator: all 1,500 outputs equal (measured). QDQ rounds the first Conv's output
    on its own grid before the ReLU, then again on the ReLU's; Tessera folds the ReLU into
    the Conv and rounds once: measured 97.7-97.9 % within 1 LSB, at most 2."""
    rng = np.random.default_rng(13)
    model = shuffle_graph(rng)
    x = rng.uniform(0, 1, (300, 4, 6, 6)).astype(np.float32)
    qnet, run, reference = quantised_run(tmp_path, model, x, form)
    lsb = np.rint(np.abs(qnet.output.dequantize(run.outputs) - reference) / qnet.output.scale)
    assert np.mean(run.outputs.argmax(1) == reference.argmax(1)) >= 0.99
    if form == "QOperator":
        assert lsb.max() == 0
    else:
        assert np.mean(lsb <= 1) >= 0.97 and lsb.max() <= 2
