"""ONNX interchange: float networks in and out, so a network comes as a user has it.

ONNX images are NCHW, :mod:`firmware.frontend.network` images NHWC. Convolution kernels are
transposed on the way; a Flatten of an image keeps ONNX's (channel, y, x) order by
permuting the rows of the Dense layer it feeds, which therefore must follow it.
The graph may branch: a result read by several nodes, Add or Sum of two or more results,
Concat on channels. Relu, Clip and BatchNormalization fold into the layer before them
when no other node reads that layer's result.
"""

from dataclasses import dataclass, replace

import numpy as np

from ..data_files import DataFileError, check_readable
from .network import (NETWORK_INPUT, Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, MaxPool2d,
                      Network, NetworkError)

__all__ = ["from_onnx", "to_onnx", "load_onnx", "load_onnx_model", "ImportedModel",
           "SUPPORTED_OPS", "REFUSED_OPS", "HEAD_OPS", "OPSET", "OPSETS"]

OPSET = 17
OPSETS = range(13, 22)              # the default-domain opsets imported (13..21)
HEAD_OPS = ("Softmax", "LogSoftmax", "ArgMax")      # at the end only, computed on the host
SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Conv", "Relu", "Clip", "BatchNormalization",
                 "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape",
                 "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Sum",
                 "Concat") + HEAD_OPS
# Operators refused with a reason and what would make the model import.
REFUSED_OPS = {
    "LRN": "LRN (local response normalisation) is not supported: it divides each value by "
           "a power of its neighbouring channels' squares, which the crossbar's int8 "
           "periphery does not compute, and running it on the host would stream every "
           "activation it touches off chip; use a variant of the model with "
           "BatchNormalization in its place (as later AlexNet and GoogLeNet variants do)",
}


def _flatten_rows(image_shape):
    """Row order that takes a Dense's rows from ONNX's (c, y, x) flattening to ours (y, x, c)."""
    height, width, channels = image_shape
    return np.arange(channels * height * width).reshape(channels, height, width) \
        .transpose(1, 2, 0).ravel()


def _onnx():
    try:
        import onnx
    except ImportError:
        raise NetworkError("ONNX interchange needs the onnx package: pip install onnx") from None
    return onnx


# --- export -----------------------------------------------------------------------------

def to_onnx(network, name="tessera"):
    """`network` as an ONNX model (opset 17) taking NCHW images or (batch, features)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []

    def constant(label, array):
        initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), label))
        return label

    def dims(shape):
        return ["batch", shape[2], shape[0], shape[1]] if len(shape) == 3 else ["batch", shape[0]]

    names = ["input"]                    # tensor index -> its ONNX name
    for layer, tensors in zip(network.layers, network.reads):
        out, inputs = layer.name, [names[t] for t in tensors]
        current = inputs[0]
        if isinstance(layer, Dense):
            weights, source = layer.weights, tensors[0]
            flattened = network.shapes[network.reads[source - 1][0]] if source and \
                isinstance(network.layers[source - 1], Flatten) else ()
            if len(flattened) == 3:
                # Our rows are (y, x, c); ONNX's flatten gives (c, y, x).
                weights = weights[np.argsort(_flatten_rows(flattened))]
            nodes.append(helper.make_node("Gemm", [current, constant(f"{out}.weight", weights),
                                                   constant(f"{out}.bias", layer.bias)],
                                          [out], name=out))
        elif isinstance(layer, Conv2d):
            kernel = layer.weights.transpose(3, 2, 0, 1)
            top, left, bottom, right = layer.pads
            nodes.append(helper.make_node(
                "Conv", [current, constant(f"{out}.weight", kernel),
                         constant(f"{out}.bias", layer.bias)], [out], name=out,
                kernel_shape=list(layer.kernel), strides=[layer.stride] * 2,
                pads=[top, left, bottom, right]))
        elif isinstance(layer, MaxPool2d):
            op = "AveragePool" if isinstance(layer, AvgPool2d) else "MaxPool"
            top, left, bottom, right = layer.pads
            extra = {"count_include_pad": int(layer.count_include_pad)} \
                if op == "AveragePool" else {}
            nodes.append(helper.make_node(op, [current], [out], name=out,
                                          kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2,
                                          pads=[top, left, bottom, right], **extra))
        elif isinstance(layer, Flatten):
            out = f"{layer.name}:flat"
            nodes.append(helper.make_node("Flatten", [current], [out], name=layer.name, axis=1))
        elif isinstance(layer, Add):
            nodes.append(helper.make_node("Sum" if len(inputs) > 2 else "Add", inputs, [out],
                                          name=out))
        elif isinstance(layer, Concat):
            nodes.append(helper.make_node("Concat", inputs, [out], name=out, axis=1))
        if getattr(layer, "relu", False):
            nodes.append(helper.make_node("Relu", [out], [f"{out}:relu"], name=f"{out}.relu"))
            out = f"{out}:relu"
        if getattr(layer, "clip", None) is not None:
            nodes.append(helper.make_node("Clip", [out, constant(f"{out}.low", 0.0),
                                                   constant(f"{out}.high", layer.clip)],
                                          [f"{out}:clip"], name=f"{out}.clip"))
            out = f"{out}:clip"
        names.append(out)
    current = names[-1]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims(network.input_shape))],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, dims(network.shapes[-1]))],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tessera")
    onnx.checker.check_model(model)
    return model


# --- import -----------------------------------------------------------------------------

def load_onnx(path):
    """A Network from an .onnx file; errors name the file and the node."""
    return load_onnx_model(path).network


@dataclass(frozen=True)
class ImportedModel:
    network: Network
    quant: object = None         # GivenQuant of a QDQ or QOperator model, else None
    head: str = None             # a final Softmax, LogSoftmax or ArgMax, run on the host
    tensors: tuple = ()          # a quantised model's tensor holding each network tensor's
                                 # int8 values (input, then each layer's output), or None


def load_onnx_model(path):
    """An `ImportedModel` from an .onnx file: a quantised (QDQ or QOperator) model brings
    its own scales and zero points. Errors name the file and the node."""
    onnx = _onnx()
    try:
        path = check_readable(path, "network")
    except DataFileError as error:
        raise NetworkError(str(error)) from None
    try:
        model = onnx.load(str(path))
    except Exception as error:               # protobuf's errors are its own types
        raise NetworkError(f"{path}: not a readable ONNX model ({error})") from None
    try:
        importer = _Importer(model)
        network = importer.run()
        quant = importer.given_quant()
        return ImportedModel(network, quant, importer.head, tuple(importer.quantised_tensors))
    except NetworkError as error:
        raise NetworkError(f"{path}: {error}") from None


def _constant_value(node, index):
    """The array a Constant node makes, from whichever of its value attributes it has."""
    from onnx import helper, numpy_helper

    where = f"node {index} {node.name!r} (Constant)"
    if len(node.attribute) != 1 or not len(node.output):
        raise NetworkError(f"{where}: has {len(node.attribute)} attributes and "
                           f"{len(node.output)} outputs; a Constant has one value and one output")
    value = helper.get_attribute_value(node.attribute[0])
    try:
        if node.attribute[0].name == "value":
            return numpy_helper.to_array(value)
        if node.attribute[0].name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(value)
    except (ValueError, TypeError) as error:
        raise NetworkError(f"{where}: its value cannot be read ({error})") from None
    raise NetworkError(f"{where}: value attribute {node.attribute[0].name!r} is not numeric")


class _Importer:
    def __init__(self, model):
        from onnx import numpy_helper

        from .onnx_quantized import dequantize_graph, is_quantized
        graph = model.graph
        raw = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for index, node in enumerate(graph.node):     # Constant nodes are initializers too
            if node.op_type == "Constant":
                raw[node.output[0]] = _constant_value(node, index)
        self.nodes, self.model_quant = list(graph.node), None
        if is_quantized(model):
            self.nodes, self.model_quant = dequantize_graph(model, raw)
        # float16, float64 and integer constants alike become float64
        self.constants = {name: np.asarray(value).astype(np.float64) for name, value in raw.items()}
        self.layer_weights = {}                  # layer name -> its weight constant's name
        self.folded_gain = {}                    # layer name -> |per-channel gain| folded into it
        self.affine_after = {}                   # tensor -> (gain, shift) of a BN folded after it
        self.head = None                         # a final Softmax, LogSoftmax or ArgMax
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        if opset not in OPSETS:
            raise NetworkError(f"opset {opset}: the importer takes opsets {OPSETS[0]} to "
                               f"{OPSETS[-1]} (onnx.version_converter converts a model)")
        inputs = [v for v in graph.input if v.name not in self.constants]
        if len(inputs) != 1:
            raise NetworkError(f"the graph must have one input, not {[v.name for v in inputs]}")
        self.input_shape = self._input_shape(inputs[0])
        self.layers = []
        self.producer = {inputs[0].name: None}  # tensor -> index of the layer that made it
        self.readers = {}                        # tensor -> nodes that read it
        for node in self.nodes:
            for tensor in node.input:
                if tensor and tensor not in self.constants:
                    self.readers[tensor] = self.readers.get(tensor, 0) + 1
        self.shape = self.input_shape
        self.flattened_from = None               # image shape a Flatten just took
        self.shuffle = None                      # a channel shuffle under way: (stage, groups)
        self.channel_order = None                # channels a finished shuffle permuted:
                                                 # shuffled channel c is channel order[c]
        self.state = {}                          # tensor -> the four above, as it was made
        self.quantised_tensors = ()              # see ImportedModel.tensors
        self._made(inputs[0].name)
        self.names = {NETWORK_INPUT}
        self.graph = graph

    @staticmethod
    def _input_shape(value):
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in value.type.tensor_type.shape.dim]
        if len(dims) == 4 and all(dims[1:]):
            return (dims[2], dims[3], dims[1])
        if len(dims) == 2 and dims[1]:
            return (dims[1],)
        raise NetworkError(f"input {value.name!r}: shape must be (batch, channels, height, "
                           f"width) or (batch, features) with known sizes, not {dims}")

    def _name(self, node, index):
        name = node.name or f"{node.op_type.lower()}{index}"
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    def _where(self, node, index):
        return f"node {index} {node.name!r} ({node.op_type})" if node.name else \
            f"node {index} ({node.op_type})"

    def _attrs(self, node):
        from onnx import helper
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def _weight(self, node, index, position):
        if len(node.input) <= position or node.input[position] not in self.constants:
            raise NetworkError(f"{self._where(node, index)}: input {position} must be a "
                               f"constant (initializer)")
        return self.constants[node.input[position]]

    def _reads(self, tensors):
        """A new layer's `reads` for the ONNX tensors it takes: empty when that is the
        previous layer's output alone."""
        positions = [self.producer[t] for t in tensors]
        if len(positions) == 1 and positions[0] == (len(self.layers) - 1 if self.layers else None):
            return ()
        return tuple(NETWORK_INPUT if p is None else self.layers[p].name for p in positions)

    def _append(self, layer, node, inputs=None):
        inputs = inputs or [self.current]
        layer = replace(layer, reads=self._reads(inputs))
        try:
            self.shape = layer.output_shape(*[self.state[t][0] for t in inputs])
        except NetworkError as error:
            raise NetworkError(f"{error} (ONNX node {node.name or node.op_type!r})") from None
        if node.op_type in ("Gemm", "MatMul", "Conv"):
            self.layer_weights[layer.name] = node.input[1]
        self.layers.append(layer)
        self.producer[node.output[0]] = len(self.layers) - 1
        self._made(node.output[0])

    def _made(self, tensor):
        """`tensor` is the current result; remember its layout state for later readers."""
        self.current = tensor
        self.state[tensor] = (self.shape, self.flattened_from, self.channel_order, self.shuffle)

    def _select(self, tensor, where):
        """Make `tensor` (an earlier result) the one the next node works on."""
        if tensor not in self.state:
            raise NetworkError(f"{where}: reads {tensor!r}, which neither the graph's input "
                               f"nor an earlier node makes")
        self.current = tensor
        self.shape, self.flattened_from, self.channel_order, self.shuffle = self.state[tensor]

    def _rename_output(self, node):
        """A node that changes nothing in our IR: its output is the current tensor (and is
        shared as widely as that one)."""
        self.producer[node.output[0]] = self.producer[self.current]
        self.readers[node.output[0]] = self.readers.get(node.output[0], 0) + \
            self.readers.get(self.current, 1) - 1
        self._made(node.output[0])

    def _dense(self, node, index, weights, bias):
        if self.flattened_from is not None and self.flattened_from[:2] != (1, 1):
            weights = weights[_flatten_rows(self.flattened_from)]
        self.flattened_from = None
        return Dense(self._name(node, index), weights, bias, relu=False)

    def run(self):
        for index, node in enumerate(self.nodes):
            if node.op_type == "Constant":
                continue
            op, attrs, where = node.op_type, self._attrs(node), self._where(node, index)
            if op in REFUSED_OPS:
                raise NetworkError(f"{where}: {REFUSED_OPS[op]}")
            if op not in SUPPORTED_OPS:
                raise NetworkError(f"{where}: unsupported operator; supported: "
                                   f"{', '.join(SUPPORTED_OPS)}")
            if self.head is not None and op not in ("Identity",):
                raise NetworkError(f"{where}: follows the {self.head}, which must end the graph "
                                   f"(it runs on the host)")
            activations = ([node.input[0]] if op in ("Gemm", "MatMul", "Conv")  # then weights
                           else [t for t in node.input if t and t not in self.constants])
            if op in ("Add", "Sum", "Concat") and len(activations) >= 2:
                self._merge(node, index, activations, attrs)
                continue
            if len(activations) != 1:
                raise NetworkError(f"{where}: reads {len(activations)} tensors {activations}; "
                                   f"a {op} takes one")
            self._select(activations[0], where)
            self._check_shuffle(op, where)
            if self.flattened_from is not None and op not in ("Gemm", "MatMul", "Relu",
                                                              "Identity", "Dropout", "Squeeze",
                                                              "Unsqueeze", "Transpose"):
                raise NetworkError(f"{where}: a flattened image must feed a Gemm or MatMul "
                                   f"(its rows take ONNX's channel-first order)")
            getattr(self, f"_op_{op.lower()}")(node, index, attrs, where)
        outputs = [v.name for v in self.graph.output]
        if len(outputs) != 1 or outputs[0] not in self.state:
            raise NetworkError(f"the graph must have one output that a node makes, not {outputs}")
        self._select(outputs[0], "the graph's output")
        if self.shuffle or self.channel_order is not None:
            raise NetworkError("a channel shuffle ends the graph; it folds into a Conv after it")
        if self.producer[outputs[0]] != len(self.layers) - 1:
            raise NetworkError(f"the graph's output {outputs[0]!r} is not the last layer's result")
        return Network(tuple(self.layers), self.input_shape)

    def given_quant(self):
        """The model's own quantisation by layer (a GivenQuant), or None for a float model."""
        from .quant_params import GivenQuant, TensorQuant
        if self.model_quant is None:
            return None
        ranges = [None] * (len(self.layers) + 1)
        self.quantised_tensors = [None] * (len(self.layers) + 1)
        made = {}                                # layer position -> its tensors, in order
        for tensor, position in self.producer.items():
            made.setdefault(position, []).append(tensor)
        for position, tensors in made.items():
            given = [t for t in tensors if t in self.model_quant.activations]
            if not given:
                continue
            # The layer's last quantised tensor; a BatchNormalization folded after it
            # (run in float by a QOperator model) maps its range through its affine.
            quant = self.model_quant.activations[given[-1]]
            for tensor in tensors[tensors.index(given[-1]):]:
                if tensor in self.affine_after:
                    gain, shift = self.affine_after[tensor]
                    ends = np.outer(quant.scale * (np.array([-128, 127]) - quant.zero_point),
                                    gain) + shift
                    quant = TensorQuant.covering(ends.min(), ends.max())
            ranges[0 if position is None else position + 1] = quant
            self.quantised_tensors[0 if position is None else position + 1] = \
                given[-1] if quant is self.model_quant.activations[given[-1]] else None
        scales = {}
        for layer in self.layers:
            weight = self.layer_weights.get(layer.name)
            if weight in self.model_quant.asymmetric:
                raise NetworkError(self.model_quant.asymmetric[weight])
            if weight in self.model_quant.weight_scales:
                scale = np.asarray(self.model_quant.weight_scales[weight], np.float64)
                if scale.size not in (1, layer.outputs):
                    raise NetworkError(f"layer {layer.name!r}: {scale.size} weight scales for "
                                       f"{layer.outputs} output channels (per-channel scales "
                                       f"must run along the outputs)")
                # A BatchNormalization folded after the model quantised the weights
                # multiplies them by its gain: so do their scales, or the folded weights
                # would clip (the int8 weights stay the model's, up to sign).
                scales[layer.name] = (np.broadcast_to(scale.reshape(-1), (layer.outputs,))
                                      * self.folded_gain.get(layer.name, 1.0))
        return GivenQuant(tuple(ranges), scales, f"the {self.model_quant.format} model")

    def _op_gemm(self, node, index, attrs, where):
        if attrs.get("transA", 0):
            raise NetworkError(f"{where}: transA=1 is not supported")
        weights = self._weight(node, index, 1) * attrs.get("alpha", 1.0)
        if attrs.get("transB", 0):
            weights = weights.T
        bias = np.zeros(weights.shape[1])
        if len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(self._weight(node, index, 2) * attrs.get("beta", 1.0),
                                   bias.shape).copy()
        self._append(self._dense(node, index, weights, bias), node)

    def _op_matmul(self, node, index, attrs, where):
        weights = self._weight(node, index, 1)
        self._append(self._dense(node, index, weights, np.zeros(weights.shape[1])), node)

    def _fold(self, node, where, kinds, what, change):
        """Fold `node` into the layer that made the last result, as `change(layer)`; that
        layer must be one of `kinds` without its ReLU yet, else the error says `what`; and
        no other node may read the result before the fold."""
        position = self.producer[self.current]
        layer = self.layers[position] if position is not None else None
        if not isinstance(layer, kinds) or layer.relu:
            raise NetworkError(f"{where}: {what}")
        if self.readers.get(self.current, 1) > 1:
            raise NetworkError(f"{where}: folds into {layer.name!r}, whose result "
                               f"{self.current!r} other nodes also read (a branch before a "
                               f"{node.op_type}); the importer folds a {node.op_type} only "
                               f"into a result it alone reads")
        self.layers[position] = change(layer)
        self._rename_output(node)

    def _op_add(self, node, index, attrs, where):
        """A constant added to a Dense or Conv2d's result: its bias (MatMul + Add)."""
        constant = self.constants[next(t for t in node.input if t in self.constants)]

        def add_bias(layer):
            try:
                bias = layer.bias + np.broadcast_to(constant.reshape(-1), layer.bias.shape)
            except ValueError:
                raise NetworkError(f"{where}: constant of shape {constant.shape} is not a bias "
                                   f"of {layer.outputs} outputs") from None
            return replace(layer, bias=bias)

        self._fold(node, where, (Dense, Conv2d),
                   "adds a constant to something other than a Gemm, MatMul or Conv result",
                   add_bias)

    def _merge(self, node, index, activations, attrs):
        """Add or Sum of two or more results (a residual or projection shortcut), or a
        Concat of results along their channels."""
        where = self._where(node, index)
        for tensor in activations:
            self._select(tensor, where)
            if self.shuffle or self.channel_order is not None or self.flattened_from:
                raise NetworkError(f"{where}: reads {tensor!r} in the middle of a channel "
                                   f"shuffle or right after a Flatten")
        if node.op_type == "Concat":
            axis, rank = attrs.get("axis"), len(self.shape) + 1
            if axis is None or axis % rank != 1:
                raise NetworkError(f"{where}: concatenates along axis {axis}; only the channels "
                                   f"(axis 1) are supported")
        kind = Concat if node.op_type == "Concat" else Add
        self._append(kind(self._name(node, index), self._reads(activations)), node, activations)

    def _ungrouped(self, kernel, groups, where):
        """A grouped (or depthwise) kernel as the full one it equals: zero between groups.
        The mapper skips the crossbar blocks that are all zero, as it does pruned ones."""
        outputs, per_group = kernel.shape[:2]
        channels = self.shape[2] if len(self.shape) == 3 else None
        if channels is None or outputs % groups or channels != per_group * groups:
            raise NetworkError(f"{where}: group={groups} does not divide {outputs} output and "
                               f"{channels} input channels into groups of {per_group} inputs")
        full = np.zeros((outputs, channels, *kernel.shape[2:]), kernel.dtype)
        step = outputs // groups
        for group in range(groups):
            full[group * step:(group + 1) * step, group * per_group:(group + 1) * per_group] = \
                kernel[group * step:(group + 1) * step]
        return full

    def _op_conv(self, node, index, attrs, where):
        kernel = self._weight(node, index, 1)
        groups = attrs.get("group", 1)
        if groups != 1:
            kernel = self._ungrouped(kernel, groups, where)
        if self.channel_order is not None:              # a shuffle before: reorder inputs
            unshuffled = np.zeros_like(kernel)
            unshuffled[:, self.channel_order] = kernel
            kernel, self.channel_order = unshuffled, None
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise NetworkError(f"{where}: dilated convolutions are not supported")
        strides = attrs.get("strides", [1, 1])
        if len(set(strides)) != 1:
            raise NetworkError(f"{where}: strides {strides} differ per axis")
        pads = self._pads(attrs, where, kernel.shape[2:], int(strides[0]))
        bias = self._weight(node, index, 2) if len(node.input) > 2 and node.input[2] \
            else np.zeros(kernel.shape[0])
        self._append(Conv2d(self._name(node, index), kernel.transpose(2, 3, 1, 0), bias,
                            relu=False, stride=int(strides[0]), pads=pads), node)

    def _pads(self, attrs, where, kernel, stride):
        """(top, left, bottom, right) from ONNX `pads` (y0, x0, y1, x1) or `auto_pad`."""
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", "VALID"):
            y0, x0, y1, x1 = attrs.get("pads", [0, 0, 0, 0]) if auto == "NOTSET" else [0] * 4
            return (int(y0), int(x0), int(y1), int(x1))
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise NetworkError(f"{where}: auto_pad {auto!r} is not supported")
        total = []
        for size, k in zip(self.shape[:2], kernel):
            out = -(-size // stride)
            total.append(max((out - 1) * stride + k - size, 0))
        small = [t // 2 for t in total]
        large = [t - t // 2 for t in total]
        # SAME_UPPER puts the odd extra row or column at the end, SAME_LOWER at the start.
        begin, end = (small, large) if auto == "SAME_UPPER" else (large, small)
        return (begin[0], begin[1], end[0], end[1])

    def _op_clip(self, node, index, attrs, where):
        """Clip(0, high) (ReLU6 is Clip(0, 6)): a ReLU and an upper clamp of the layer before."""
        low = attrs.get("min", self._bound(node, index, 1, -np.inf))
        high = attrs.get("max", self._bound(node, index, 2, np.inf))
        if low != 0 or not high > 0:
            raise NetworkError(f"{where}: only Clip(0, max) with max > 0 (e.g. ReLU6) is "
                               f"supported, not min={low} max={high}")
        self._activation(node, index, None if np.isinf(high) else float(high))

    def _activation(self, node, index, clip):
        """ReLU, and the upper clamp `clip` when set: into the layer before, if that is a
        Gemm, MatMul, Conv or Add (or Sum) whose result no other node reads; else a layer of
        its own, an identity on the crossbar whose requantiser clamps."""
        position = self.producer[self.current]
        layer = self.layers[position] if position is not None else None
        if isinstance(layer, (Dense, Conv2d, Add)) and self.readers.get(self.current, 1) == 1:
            if layer.relu and layer.clip is not None:
                clip = layer.clip if clip is None else min(clip, layer.clip)
            self.layers[position] = replace(layer, relu=True, clip=clip)
            self._rename_output(node)
            return
        name, channels = self._name(node, index), self.shape[-1]
        identity = np.eye(channels)
        self._append(Conv2d(name, identity[None, None], np.zeros(channels), clip=clip)
                     if len(self.shape) == 3 else
                     Dense(name, identity, np.zeros(channels), clip=clip), node)

    def _bound(self, node, index, position, default):
        if len(node.input) <= position or not node.input[position]:
            return default
        return float(np.asarray(self._weight(node, index, position)).reshape(-1)[0])

    def _op_batchnormalization(self, node, index, attrs, where):
        """Folded into the Conv, Gemm or MatMul before it: W' = W g, b' = (b - mean) g + B,
        g = scale / sqrt(var + epsilon), per channel. After anything else (a pool, a
        Concat, an activation), or where other nodes read that layer's result, it is a
        layer of its own: a per-channel affine, the gain on a diagonal of the crossbar
        and in the requantiser's per-channel scale, the shift in its bias."""
        if attrs.get("training_mode", 0):
            raise NetworkError(f"{where}: training_mode=1 cannot be folded")
        scale, offset, mean, var = (self._weight(node, index, i) for i in range(1, 5))
        gain = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
        channels = self.shape[-1]
        if gain.shape != (channels,):
            raise NetworkError(f"{where}: {gain.shape[0]} channels for a tensor of {channels}")
        position = self.producer[self.current]
        before = self.layers[position] if position is not None else None
        if not isinstance(before, (Dense, Conv2d)) or before.relu \
                or self.readers.get(self.current, 1) > 1:
            diagonal, shift = np.diag(gain), offset - mean * gain
            name = self._name(node, index)
            self._append(Conv2d(name, diagonal[None, None], shift, relu=False)
                         if len(self.shape) == 3 else Dense(name, diagonal, shift, relu=False),
                         node)
            return

        def fold(layer):
            self.folded_gain[layer.name] = self.folded_gain.get(layer.name, 1.0) * np.maximum(
                np.abs(gain), np.finfo(np.float64).tiny)        # a gain of 0: weights of 0
            self.affine_after[self.current] = (gain, offset - mean * gain)
            return layer.with_matrix(layer.matrix * gain, (layer.bias - mean) * gain + offset)

        self._fold(node, where, (Dense, Conv2d), "", fold)

    def _op_softmax(self, node, index, attrs, where):
        if len(self.shape) != 1 or attrs.get("axis", -1) not in (-1, 1):
            raise NetworkError(f"{where}: only over the classes of a (batch, classes) output, "
                               f"axis {attrs.get('axis', -1)}")
        self.head = node.op_type
        self._rename_output(node)

    _op_logsoftmax = _op_softmax

    def _op_argmax(self, node, index, attrs, where):
        if attrs.get("select_last_index", 0):
            raise NetworkError(f"{where}: select_last_index=1 is not supported")
        self._op_softmax(node, index, attrs, where)

    def _layout_noop(self, node, where, what):
        """Squeeze, Unsqueeze or Transpose that moves only size-1 axes: a rename."""
        features = [d for d in self.shape if d != 1]
        if len(features) > 1:
            raise NetworkError(f"{where}: {what} of a {self.shape} tensor changes its layout; "
                               f"only moves of size-1 axes are supported")
        self._rename_output(node)

    # Channel shuffle (ShuffleNet): Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4),
    # Reshape (N, C, H, W). It permutes channels, so the next Conv takes its kernel's input
    # channels in that order and the shuffle costs nothing; per-channel operators between
    # (ReLU, pools) commute with it.
    SHUFFLE_PASSES = ("Relu", "MaxPool", "AveragePool", "Identity", "Dropout", "Conv")

    def _check_shuffle(self, op, where):
        stage = self.shuffle[0] if self.shuffle and op not in ("Identity", "Dropout") else None
        if stage == "split" and op != "Transpose" or stage == "transposed" and op != "Reshape":
            raise NetworkError(f"{where}: {op} in the middle of a channel shuffle (Reshape to "
                               f"(N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape back)")
        if self.channel_order is not None and op not in self.SHUFFLE_PASSES:
            raise NetworkError(f"{where}: {op} after a channel shuffle; a shuffle folds into "
                               f"the next Conv, with only ReLU or pooling between")

    def _shuffle_reshape(self, target, where):
        """Reshape steps of a channel shuffle; True when `target` was one."""
        height, width, channels = self.shape
        if self.shuffle is None and len(target) == 5 and target[3:] == [height, width] \
                and target[1] * target[2] == channels:
            self.shuffle = ("split", target[1])
            return True
        if self.shuffle and self.shuffle[0] == "transposed":
            if len(target) != 4 or target[1:] != [channels, height, width]:
                raise NetworkError(f"{where}: a channel shuffle must reshape back to "
                                   f"(N, {channels}, {height}, {width}), not {target}")
            groups = self.shuffle[1]
            per_group = channels // groups
            shuffled = np.arange(channels).reshape(groups, per_group).T.reshape(-1)
            self.channel_order = shuffled if self.channel_order is None \
                else self.channel_order[shuffled]
            self.shuffle = None
            return True
        return False

    def _op_transpose(self, node, index, attrs, where):
        perm = list(attrs.get("perm", []))
        if self.shuffle and self.shuffle[0] == "split":
            if perm != [0, 2, 1, 3, 4]:
                raise NetworkError(f"{where}: a channel shuffle transposes (0, 2, 1, 3, 4), "
                                   f"not {perm}")
            self.shuffle = ("transposed", self.shuffle[1])
            self._rename_output(node)
            return
        if perm and perm[0] != 0:
            raise NetworkError(f"{where}: perm {perm} moves the batch axis")
        if perm != sorted(perm):
            self._layout_noop(node, where, f"Transpose perm={perm}")
        else:
            self._rename_output(node)

    def _op_squeeze(self, node, index, attrs, where):
        self._layout_noop(node, where, node.op_type)

    _op_unsqueeze = _op_squeeze

    def _op_relu(self, node, index, attrs, where):
        self._activation(node, index, None)

    def _pool(self, node, index, attrs, where, kind):
        kernel, strides = attrs.get("kernel_shape", []), attrs.get("strides", [1, 1])
        if len(set(kernel)) != 1 or len(set(strides)) != 1:
            raise NetworkError(f"{where}: only square windows with one stride are supported, "
                               f"not kernel_shape {kernel} strides {strides}")
        if attrs.get("ceil_mode", 0):
            raise NetworkError(f"{where}: pooling with ceil_mode=1 is not supported")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise NetworkError(f"{where}: pooling with dilations={attrs['dilations']} is not "
                               f"supported")
        pads = self._pads(attrs, where, kernel, int(strides[0]))
        if max(pads) >= kernel[0]:
            raise NetworkError(f"{where}: pads {list(pads)} must be smaller than the window")
        extra = {"count_include_pad": bool(attrs.get("count_include_pad", 0))} \
            if kind is AvgPool2d else {}
        self._append(kind(self._name(node, index), int(kernel[0]), int(strides[0]), pads,
                          **extra), node)

    def _op_maxpool(self, node, index, attrs, where):
        self._pool(node, index, attrs, where, MaxPool2d)

    def _op_averagepool(self, node, index, attrs, where):
        self._pool(node, index, attrs, where, AvgPool2d)

    def _op_globalaveragepool(self, node, index, attrs, where):
        if len(self.shape) != 3 or self.shape[0] != self.shape[1]:
            raise NetworkError(f"{where}: global pooling of a non-square {self.shape} image")
        if self.shape[0] == 1:                   # of one pixel: that pixel
            self._rename_output(node)
            return
        self._append(AvgPool2d(self._name(node, index), self.shape[0]), node)

    def _op_flatten(self, node, index, attrs, where):
        if attrs.get("axis", 1) != 1:
            raise NetworkError(f"{where}: only axis=1 is supported")
        self.flattened_from = self.shape if len(self.shape) == 3 else None
        self._append(Flatten(self._name(node, index)), node)

    def _op_reshape(self, node, index, attrs, where):
        target = [int(d) for d in self._weight(node, index, 1)]
        if len(self.shape) == 3 and self._shuffle_reshape(target, where):
            self._rename_output(node)
            return
        features = int(np.prod(self.shape))
        if not self.layers and len(target) == 4 and len(self.shape) == 1 \
                and target[0] in (-1, 0, 1) and int(np.prod(target[1:])) == features:
            # The input reshaped to NCHW images: the network takes images (users' arrays
            # stay (samples, features), read in NCHW order).
            channels, height, width = target[1:]
            self.input_shape = self.shape = (height, width, channels)
            self._rename_output(node)
            return
        # (batch, features); a batch-1 export writes the batch as 1
        if len(target) != 2 or target[1] not in (-1, features) or target[0] not in (-1, 0, 1):
            raise NetworkError(f"{where}: only a reshape to (batch, {features}) is supported, "
                               f"not {target}")
        self._op_flatten(node, index, {}, where)

    def _op_identity(self, node, index, attrs, where):
        self._rename_output(node)

    _op_dropout = _op_identity
    _op_sum = _op_identity                      # a Sum of one tensor


def from_onnx(model):
    """A float Network from an ONNX ModelProto; errors name the node at fault."""
    _onnx()
    return _Importer(model).run()
