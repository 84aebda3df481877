"""onnxruntime's reference mode (firmware.frontend.onnx_reference) gives exact integer results on
every CPU: checked here on products that saturate 16 bits, against NumPy's int64 product,
and (where qemu-user is installed) on an emulated Haswell, a CPU without VNNI."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from firmware.frontend.onnx_reference import (reference_model, reference_session,  # noqa: E402
                                     run_reference)

K, N = 64, 8
OUT_SCALE = 16384.0          # maps the int32 sums, up to 255 * 128 * 64, onto int8


def saturating_operands():
    """uint8 activations near 255 and int8 weights near +-128, K = 64: every adjacent pair of
    products is about +-64,000, twice what a 16-bit intermediate holds."""
    rng = np.random.default_rng(0)
    weights = rng.choice(np.array([-128, -120, 120, 127], np.int8), size=(K, N))
    weights[:, 0] = 127
    weights[:, 1] = -128
    x = rng.integers(200, 256, (16, K)).astype(np.uint8)
    x[0] = 255
    return x, weights


def exact_int8(x, weights):
    """The int8 result worked out in int64, rounded ties to even, clamped."""
    acc = x.astype(np.int64) @ weights.astype(np.int64)
    return np.clip(np.round(acc / OUT_SCALE), -128, 127)


def constant(name, value, dtype):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def integer_model(kind, weights, activation=TensorProto.UINT8):
    """One quantised matrix product of the forms onnxruntime's quantiser writes."""
    act_dtype = np.uint8 if activation == TensorProto.UINT8 else np.int8
    scales = [constant("x_scale", 1.0, np.float32), constant("x_zero", 0, act_dtype),
              numpy_helper.from_array(weights, "w"), constant("w_scale", 1.0, np.float32),
              constant("w_zero", 0, np.int8), constant("y_scale", OUT_SCALE, np.float32),
              constant("y_zero", 0, np.int8)]
    out_type = TensorProto.INT8
    if kind == "QLinearMatMul":
        nodes = [helper.make_node("QLinearMatMul", ["x", "x_scale", "x_zero", "w", "w_scale",
                                                    "w_zero", "y_scale", "y_zero"], ["y"])]
    elif kind == "QDQ":
        nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["xf"]),
                 helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wf"]),
                 helper.make_node("MatMul", ["xf", "wf"], ["yf"]),
                 helper.make_node("QuantizeLinear", ["yf", "y_scale", "y_zero"], ["y"])]
    else:                                           # MatMulInteger: the int32 sums themselves
        nodes = [helper.make_node("MatMulInteger", ["x", "w", "x_zero"], ["y"])]
        scales, out_type = [numpy_helper.from_array(weights, "w"),
                            constant("x_zero", 0, act_dtype)], TensorProto.INT32
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", activation,
                                                                          ["n", K])],
                              [helper.make_tensor_value_info("y", out_type, ["n", N])], scales)
    if kind != "MatMulInteger" and activation == TensorProto.UINT8:
        # uint8 in, uint8 out around 128, as onnxruntime's quantiser writes it (and the
        # only uint8 x int8 QLinearMatMul kernel onnxruntime has)
        graph.initializer[-1].CopyFrom(constant("y_zero", 128, np.uint8))
        graph.output[0].type.tensor_type.elem_type = TensorProto.UINT8
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def expected(kind, x, weights):
    if kind == "MatMulInteger":
        return x.astype(np.int64) @ weights.astype(np.int64)
    return exact_int8(x, weights) + 128


def test_the_reference_session_runs_with_graph_optimisations_off():
    _, weights = saturating_operands()
    session = reference_session(integer_model("QDQ", weights))
    assert (session.get_session_options().graph_optimization_level
            == ort.GraphOptimizationLevel.ORT_DISABLE_ALL)


@pytest.mark.parametrize("kind", ["QDQ", "QLinearMatMul", "MatMulInteger"])
def test_the_reference_gives_exact_products_that_saturate_16_bits(kind):
    x, weights = saturating_operands()
    # the operands do overflow a 16-bit pair sum: 2 * 255 * 128 > 32,767
    pairs = x[:, 0:2].astype(np.int64) * weights[0:2, 1].astype(np.int64)
    assert np.abs(pairs.sum(1)).max() > 2 ** 15
    out = run_reference(integer_model(kind, weights), x)
    assert np.array_equal(out.astype(np.int64), expected(kind, x, weights))


def test_only_integer_kernels_on_uint8_activations_are_rewritten():
    _, weights = saturating_operands()
    original = integer_model("QLinearMatMul", weights)
    before = original.SerializeToString()
    rewritten = reference_model(original)
    assert original.SerializeToString() == before                 # the input is not changed
    node = rewritten.graph.node[0]
    tensors = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    w_u8, zero_u8 = tensors[node.input[3]], tensors[node.input[5]]
    assert w_u8.dtype == np.uint8 and zero_u8 == 128
    assert np.array_equal(w_u8.astype(np.int64) - 128, weights)   # the same values
    for untouched in (integer_model("QLinearMatMul", weights, TensorProto.INT8),
                      integer_model("QDQ", weights)):
        assert reference_model(untouched).graph.node[0].input == untouched.graph.node[0].input


def test_int8_activations_are_exact_too():
    rng = np.random.default_rng(1)
    _, weights = saturating_operands()
    x = rng.integers(-128, -100, (16, K)).astype(np.int8)
    out = run_reference(integer_model("QLinearMatMul", weights, TensorProto.INT8), x)
    assert np.array_equal(out, exact_int8(x, weights))


EMULATED = """
import sys, numpy as np
from firmware.frontend.onnx_reference import run_optimised, run_reference
folder = sys.argv[1]
x = np.load(folder + "/x.npy")
for kind in ("QDQ", "QLinearMatMul", "MatMulInteger"):
    path = f"{folder}/{kind}.onnx"
    np.save(f"{folder}/{kind}_reference.npy", run_reference(path, x))
    np.save(f"{folder}/{kind}_optimised.npy", run_optimised(path, x))
"""


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or os.uname().machine != "x86_64",
                    reason="needs qemu-user (Debian package qemu-user) on x86-64")
def test_the_reference_is_exact_on_a_cpu_without_vnni(tmp_path):
    """onnxruntime under qemu-user emulating a Haswell (AVX2, no VNNI): its optimised
    kernels saturate there, which shows the emulation reaches the CPU-dependent path, and
    the reference mode stays exact."""
    x, weights = saturating_operands()
    np.save(tmp_path / "x.npy", x)
    for kind in ("QDQ", "QLinearMatMul", "MatMulInteger"):
        onnx.save(integer_model(kind, weights), tmp_path / f"{kind}.onnx")
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-c", EMULATED,
                    str(tmp_path)], cwd=root, check=True, timeout=600, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(root)})
    for kind in ("QDQ", "QLinearMatMul", "MatMulInteger"):
        exact = expected(kind, x, weights)
        reference = np.load(tmp_path / f"{kind}_reference.npy").astype(np.int64)
        optimised = np.load(tmp_path / f"{kind}_optimised.npy").astype(np.int64)
        assert np.array_equal(reference, exact), kind
        assert not np.array_equal(optimised, exact), kind         # the saturating kernels ran
