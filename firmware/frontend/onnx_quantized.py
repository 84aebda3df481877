"""Quantised ONNX models (QDQ and QOperator), taken with their own scales and zero points.

The graph is rewritten into the float operators :mod:`firmware.frontend.onnx_io` imports, with
the model's quantisation kept beside it:

- a weight or bias behind a DequantizeLinear, or inside a QLinearConv, QLinearMatMul or
  QGemm, becomes the float constant it stands for, ``scale * (q - zero_point)``; the
  weight's scale is kept per output channel, so that re-quantising it gives back the
  model's int8 weights, and its int32 bias (at ``x_scale * w_scale``) exactly;
- QuantizeLinear and DequantizeLinear of activations become identities, and every tensor
  they touch gets the model's (scale, zero point); a QLinear op's output likewise;
- uint8 activations map to int8 exactly by shifting the zero point by -128 (the
  requantiser's clamp and the int8 lanes then hold ``q - 128``).

`quantize` then derives each layer's requantisation multiplier and shift from these
scales; nothing is recalibrated.
"""

from dataclasses import dataclass, field

import numpy as np

from .network import NetworkError
from .quant_params import TensorQuant

__all__ = ["ModelQuant", "dequantize_graph", "is_quantized", "QUANTIZED_OPS"]

QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm",
                 "QLinearAdd", "QLinearConcat", "QLinearAveragePool", "QLinearGlobalAveragePool")


@dataclass
class ModelQuant:
    """The model's quantisation: activations by tensor name, weight scales by weight name."""
    activations: dict = field(default_factory=dict)    # tensor -> TensorQuant (int8)
    weight_scales: dict = field(default_factory=dict)  # float weight constant -> per-channel scales
    asymmetric: dict = field(default_factory=dict)     # constant -> why it cannot be a weight
    format: str = ""                                   # "QDQ" or "QOperator"


def is_quantized(model):
    return any(node.op_type in QUANTIZED_OPS for node in model.graph.node)


def _as_int8(q):
    """Quantised values in the int8 domain `TensorQuant` uses: uint8 shifted by -128."""
    q = np.asarray(q)
    return q.astype(np.float64) - (128 if q.dtype == np.uint8 else 0)


class _Rewriter:
    def __init__(self, model, constants):
        self.constants = constants          # name -> array, as read (dtypes kept)
        self.quant = ModelQuant()
        self.nodes = []
        self.model = model

    def _where(self, node, index):
        return f"node {index} {node.name!r} ({node.op_type})" if node.name else \
            f"node {index} ({node.op_type})"

    def _const(self, node, index, position, what):
        if len(node.input) <= position or node.input[position] not in self.constants:
            raise NetworkError(f"{self._where(node, index)}: {what} (input {position}) must "
                               f"be a constant (initializer)")
        return self.constants[node.input[position]]

    def _tensor_quant(self, node, index, scale_at, zero_at):
        """The int8 TensorQuant of (scale, zero point) inputs; uint8 shifted by -128."""
        scale = np.asarray(self._const(node, index, scale_at, "a scale"), np.float64)
        if scale.size != 1:
            raise NetworkError(f"{self._where(node, index)}: per-channel activation scales "
                               f"are not supported (scale of shape {scale.shape})")
        zero = (self._const(node, index, zero_at, "a zero point")
                if len(node.input) > zero_at and node.input[zero_at] else np.uint8(0))
        zero = np.asarray(zero)
        if zero.dtype not in (np.int8, np.uint8):
            raise NetworkError(f"{self._where(node, index)}: activations must be int8 or "
                               f"uint8, not {zero.dtype}")
        return TensorQuant(float(scale.reshape(-1)[0]), int(_as_int8(zero).reshape(-1)[0]))

    def _weights(self, node, index, at, axis):
        """(float weights, per-output-channel scales) of an int8 weight with its scale and
        zero point at inputs ``at, at+1, at+2``; `axis` is the output-channel axis."""
        q = np.asarray(self._const(node, index, at, "the weights"))
        scale = np.asarray(self._const(node, index, at + 1, "the weight scale"), np.float64)
        zero = np.asarray(self._const(node, index, at + 2, "the weight zero point")) \
            if len(node.input) > at + 2 and node.input[at + 2] else np.zeros(1, np.int8)
        if q.dtype != np.int8:
            raise NetworkError(f"{self._where(node, index)}: weights must be int8, not {q.dtype}")
        if np.any(zero != 0):
            raise NetworkError(f"{self._where(node, index)}: asymmetric weights (zero point "
                               f"{zero.reshape(-1)[:4].tolist()}...) are not supported; "
                               f"quantise weights symmetrically")
        channels = q.shape[axis]
        scales = np.broadcast_to(scale.reshape(-1), (channels,)) if scale.size in (1, channels) \
            else None
        if scales is None:
            raise NetworkError(f"{self._where(node, index)}: a weight scale of shape "
                               f"{scale.shape} for {channels} output channels")
        shape = [1] * q.ndim
        shape[axis] = channels
        return q.astype(np.float64) * scales.reshape(shape), np.array(scales)

    def _emit(self, op, inputs, outputs, name, attributes=()):
        from onnx import helper
        node = helper.make_node(op, list(inputs), list(outputs), name=name)
        node.attribute.extend(attributes)
        self.nodes.append(node)

    def _constant(self, name, array):
        self.constants[name] = np.asarray(array, np.float64)
        return name

    def _set(self, tensor, quant, node, index):
        known = self.quant.activations.get(tensor)
        if known is not None and known != quant:
            raise NetworkError(f"{self._where(node, index)}: tensor {tensor!r} is quantised "
                               f"twice, as {known} and as {quant}")
        self.quant.activations[tensor] = quant

    def run(self):
        graph = self.model.graph
        formats = set()
        for index, node in enumerate(graph.node):
            op, name = node.op_type, node.name or f"{node.op_type.lower()}{index}"
            if op == "Constant":
                continue
            if op == "DequantizeLinear" and node.input[0] in self.constants:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                self._dequantize_constant(node, index, axis)
                continue
            if op in ("QuantizeLinear", "DequantizeLinear"):
                quant = self._tensor_quant(node, index, 1, 2)
                self._set(node.input[0], quant, node, index)
                self._set(node.output[0], quant, node, index)
                self._emit("Identity", node.input[:1], node.output, name)
                continue
            if op == "QLinearConv":
                formats.add("QOperator")
                self._set(node.input[0], self._tensor_quant(node, index, 1, 2), node, index)
                weights, scales = self._weights(node, index, 3, 0)
                inputs = [node.input[0], self._constant(f"{name}.weight", weights)]
                if len(node.input) > 8 and node.input[8]:
                    bias = self._const(node, index, 8, "the bias").astype(np.float64)
                    x_scale = self.quant.activations[node.input[0]].scale
                    inputs.append(self._constant(f"{name}.bias", bias * x_scale * scales))
                self.quant.weight_scales[f"{name}.weight"] = scales
                self._set(node.output[0], self._tensor_quant(node, index, 6, 7), node, index)
                self._emit("Conv", inputs, node.output, name, node.attribute)
                continue
            if op in ("QLinearMatMul", "QGemm"):
                formats.add("QOperator")
                self._linear(node, index, name, op)
                continue
            if op == "QLinearAdd":
                formats.add("QOperator")
                operands = []
                for at in (0, 3):
                    quant = self._tensor_quant(node, index, at + 1, at + 2)
                    if node.input[at] in self.constants:        # a bias: its real values
                        operands.append(self._constant(
                            f"{name}.constant{at}",
                            quant.scale * (_as_int8(self.constants[node.input[at]])
                                           - quant.zero_point)))
                    else:
                        self._set(node.input[at], quant, node, index)
                        operands.append(node.input[at])
                self._set(node.output[0], self._tensor_quant(node, index, 6, 7), node, index)
                self._emit("Add", operands, node.output, name)
                continue
            if op == "QLinearConcat":      # y_scale, y_zero_point, then (x, scale, zero) each
                formats.add("QOperator")
                inputs = node.input[2::3]
                for at, tensor in zip(range(2, len(node.input), 3), inputs):
                    self._set(tensor, self._tensor_quant(node, index, at + 1, at + 2), node, index)
                self._set(node.output[0], self._tensor_quant(node, index, 0, 1), node, index)
                self._emit("Concat", inputs, node.output, name, node.attribute)
                continue
            if op in ("QLinearAveragePool", "QLinearGlobalAveragePool"):
                formats.add("QOperator")
                self._set(node.input[0], self._tensor_quant(node, index, 1, 2), node, index)
                self._set(node.output[0], self._tensor_quant(node, index, 3, 4), node, index)
                float_op = op.replace("QLinear", "")
                self._emit(float_op, node.input[:1], node.output, name,
                           [a for a in node.attribute if a.name != "channels_last"])
                continue
            self.nodes.append(node)
        if not formats:
            formats.add("QDQ")
        self.quant.format = "/".join(sorted(formats))
        return self.nodes, self.quant

    def _dequantize_constant(self, node, index, axis):
        q = np.asarray(self.constants[node.input[0]])
        scale = np.asarray(self._const(node, index, 1, "a scale"), np.float64)
        zero = np.asarray(self.constants.get(node.input[2], 0) if len(node.input) > 2
                          and node.input[2] else 0)
        if q.dtype == np.int32:                    # a bias at x_scale * w_scale
            shape = [1] * q.ndim
            if scale.size > 1:
                shape[axis % q.ndim] = scale.size
            self.constants[node.output[0]] = (q - zero.reshape(shape if zero.size > 1 else ())) \
                * scale.reshape(shape if scale.size > 1 else ())
            return
        if q.dtype not in (np.int8, np.uint8):
            raise NetworkError(f"{self._where(node, index)}: a constant of {q.dtype} behind "
                               f"DequantizeLinear is not supported")
        axis %= q.ndim
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[axis] = scale.size
        self.constants[node.output[0]] = (q.astype(np.float64) - zero.reshape(
            shape if zero.size > 1 else ())) * scale.reshape(shape if scale.size > 1 else ())
        if q.dtype == np.uint8 or np.any(zero != 0):
            # fine as a value (a bias an Add adds), refused where it is a layer's weights
            self.quant.asymmetric[node.output[0]] = (
                f"{self._where(node, index)}: weights must be symmetric int8 (zero point 0), "
                f"not {q.dtype} with zero point {zero.reshape(-1)[:4].tolist()}")
            return
        # Per output channel (Conv: axis 0, Gemm/MatMul: N), or one for the tensor; the
        # importer checks the count against the layer's outputs.
        self.quant.weight_scales[node.output[0]] = scale.reshape(-1)

    def _linear(self, node, index, name, op):
        from onnx import helper
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self._set(node.input[0], self._tensor_quant(node, index, 1, 2), node, index)
        trans_b = attrs.get("transB", 0) if op == "QGemm" else 0
        weights, scales = self._weights(node, index, 3, 0 if trans_b else 1)
        if trans_b:
            weights = weights.T
        inputs = [node.input[0], self._constant(f"{name}.weight", weights)]
        x_scale = self.quant.activations[node.input[0]].scale
        out_at = 6 if op == "QLinearMatMul" else 7
        if op == "QGemm":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
                raise NetworkError(f"{self._where(node, index)}: transA or alpha are not supported")
            if len(node.input) > 6 and node.input[6]:
                bias = self._const(node, index, 6, "the bias").astype(np.float64)
                inputs.append(self._constant(f"{name}.bias", bias * x_scale * scales))
            if len(node.input) <= 7 or not node.input[7]:
                raise NetworkError(f"{self._where(node, index)}: a QGemm with a float output "
                                   f"(no y_scale) is not supported")
        self.quant.weight_scales[f"{name}.weight"] = scales
        self._set(node.output[0], self._tensor_quant(node, index, out_at, out_at + 1), node, index)
        self._emit("Gemm" if op == "QGemm" else "MatMul", inputs, node.output, name)


def dequantize_graph(model, constants):
    """(float nodes, ModelQuant) of a QDQ or QOperator `model`; `constants` (initializers
    with their dtypes) gains the float weights."""
    return _Rewriter(model, constants).run()
