"""Small ONNX graphs built with onnx's helper API, shared by the import and the
quantised-import tests."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

__all__ = ["model_of", "grouped_graph", "shuffle_graph"]


def model_of(nodes, initializers, input_dims, output="y", opset=17, dtype=np.float32,
           output_type=TensorProto.FLOAT):
    """A model of `nodes`; float initializers stored as `dtype`."""
    stored = {k: np.asarray(v, dtype) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
              for k, v in initializers.items()}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info(output, output_type, None)],
        [numpy_helper.from_array(v, k) for k, v in stored.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def grouped_graph(rng):
    """Conv group=2 (4 -> 8 channels) -> Relu -> depthwise Conv (group=8, padded) -> Relu ->
    Flatten -> Gemm: ShuffleNet's and MobileNet's convolutions."""
    return model_of([helper.make_node("Conv", ["x", "k1", "b1"], ["c1"], kernel_shape=[3, 3], group=2),
                   helper.make_node("Relu", ["c1"], ["r1"]),
                   helper.make_node("Conv", ["r1", "k2", "b2"], ["c2"], kernel_shape=[3, 3], group=8,
                                    pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["c2"], ["r2"]),
                   helper.make_node("Flatten", ["r2"], ["f"]),
                   helper.make_node("Gemm", ["f", "w", "b"], ["y"])],
                  {"k1": rng.normal(0, 0.5, (8, 2, 3, 3)), "b1": rng.normal(0, 0.1, 8),
                   "k2": rng.normal(0, 0.5, (8, 1, 3, 3)), "b2": rng.normal(0, 0.1, 8),
                   "w": rng.normal(0, 0.2, (128, 5)), "b": rng.normal(0, 0.1, 5)},
                  ["n", 4, 6, 6])


def shuffle_graph(rng, between="Relu"):
    """Conv (4 -> 8) -> channel shuffle of 2 groups -> [Relu | MaxPool] -> grouped Conv ->
    Relu -> Flatten -> Gemm: ShuffleNet's unit without its branch."""
    middle = ([helper.make_node("Relu", ["u"], ["m"])] if between == "Relu" else
              [helper.make_node("MaxPool", ["u"], ["m"], kernel_shape=[2, 2], strides=[2, 2])])
    side = 6 if between == "Relu" else 3
    return model_of([helper.make_node("Conv", ["x", "k1", "b1"], ["c1"], kernel_shape=[1, 1]),
                   helper.make_node("Reshape", ["c1", "split"], ["s"]),
                   helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1, 3, 4]),
                   helper.make_node("Reshape", ["t", "merge"], ["u"]),
                   *middle,
                   helper.make_node("Conv", ["m", "k2", "b2"], ["c2"], kernel_shape=[1, 1], group=2),
                   helper.make_node("Relu", ["c2"], ["r2"]),
                   helper.make_node("Flatten", ["r2"], ["f"]),
                   helper.make_node("Gemm", ["f", "w", "b"], ["y"])],
                  {"k1": rng.normal(0, 0.5, (8, 4, 1, 1)), "b1": rng.normal(0, 0.1, 8),
                   "split": np.array([-1, 2, 4, 6, 6]), "merge": np.array([-1, 8, 6, 6]),
                   "k2": rng.normal(0, 0.5, (8, 4, 1, 1)), "b2": rng.normal(0, 0.1, 8),
                   "w": rng.normal(0, 0.2, (8 * side * side, 5)), "b": rng.normal(0, 0.1, 5)},
                  ["n", 4, 6, 6])
