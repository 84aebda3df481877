"""A small, typed network description built from NumPy arrays (float, before compression).

A network is a graph of tensors: its layers in an order where each reads only earlier
results (a topological order). A layer's `reads` names the layers whose outputs it takes
(`NETWORK_INPUT` for the network's input); empty, it takes the previous layer's output, so
a chain needs no names. Tensors are numbered 0 for the input and ``i + 1`` for layer
``i``'s output; the last layer's output is the network's.

Activations are NHWC: a batch of images is ``(batch, height, width, channels)``, a batch of
vectors ``(batch, features)``. Dense and Conv2d are *matrix layers*: both are an int8
matrix on the crossbars, ``(inputs, outputs)`` for Dense and ``(kh * kw * cin, cout)``
(rows in (ky, kx, channel) order) for Conv2d, whose input vectors are im2col patches.
"""

from dataclasses import dataclass, replace

import numpy as np

from ..windows import im2col, pad_images, window_count

__all__ = ["NetworkError", "Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "Add",
           "Concat", "Network", "NETWORK_INPUT", "activate", "graph_reads", "run_layers", "stream_tensors"]

NETWORK_INPUT = "<input>"       # the name `reads` gives the network's input


class NetworkError(ValueError):
    """A layer or its arrays are not what the compiler can take; says which layer."""


def _float_array(layer, field, value, ndim):
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise NetworkError(f"layer {layer!r}: {field} must be a real numeric array, not {array.dtype}")
    if array.ndim != ndim:
        raise NetworkError(f"layer {layer!r}: {field} must have {ndim} dimension(s), "
                           f"not shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise NetworkError(f"layer {layer!r}: {field} holds NaN or infinite values")
    return array.astype(np.float64)


def activate(y, relu, clip):
    """ReLU when `relu`, then the upper clamp `clip` (Clip(0, clip), e.g. ReLU6) when set."""
    if relu:
        y = np.maximum(y, 0)
    return y if clip is None else np.minimum(y, clip)


def _check_reads(layer, inputs=1):
    """`layer.reads` as a tuple of names: empty (the previous layer's output) or `inputs`
    of them; `inputs` None means two or more."""
    reads = (layer.reads,) if isinstance(layer.reads, str) else tuple(layer.reads)
    if not all(isinstance(name, str) for name in reads):
        raise NetworkError(f"layer {layer.name!r}: reads must name layers, not {layer.reads!r}")
    if inputs is None and len(reads) < 2:
        raise NetworkError(f"layer {layer.name!r}: a {type(layer).__name__} reads two or more "
                           f"layers' outputs, not {list(reads)}")
    if inputs is not None and len(reads) not in (0, inputs):
        raise NetworkError(f"layer {layer.name!r}: reads one layer's output, not {list(reads)}")
    object.__setattr__(layer, "reads", reads)


def _check_int(layer, field, value, minimum, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NetworkError(f"layer {layer!r}: {field} must be {what}, not {value!r}")


class _MatrixLayer:
    """What Dense and Conv2d share: a weight matrix, a bias, an optional ReLU. Subclasses
    define `matrix` and `patches` (the input vectors the matrix multiplies)."""

    def _check_arrays(self, weight_ndim, outputs_are):
        """Check and store `weights` (outputs on the last axis) and `bias` as floats."""
        weights = _float_array(self.name, "weights", self.weights, weight_ndim)
        bias = _float_array(self.name, "bias", self.bias, 1)
        if bias.shape != (weights.shape[-1],):
            raise NetworkError(f"layer {self.name!r}: bias has shape {bias.shape}, the "
                               f"weights have {weights.shape[-1]} {outputs_are}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)

    @property
    def outputs(self):
        return self.bias.shape[0]

    def with_matrix(self, matrix, bias=None):
        """This layer with its matrix (and bias) replaced."""
        return replace(self, weights=np.asarray(matrix).reshape(self.weights.shape),
                       bias=self.bias if bias is None else bias)

    def forward(self, x):
        return activate(self.patches(x) @ self.matrix + self.bias, self.relu, self.clip)


@dataclass(frozen=True, eq=False)
class Dense(_MatrixLayer):
    """``y = x @ weights + bias``, then ReLU when `relu` and the upper clamp `clip` when
    set. `weights` is (inputs, outputs)."""
    name: str
    weights: np.ndarray
    bias: np.ndarray
    relu: bool = True
    clip: float = None
    reads: tuple = ()

    def __post_init__(self):
        self._check_arrays(2, "outputs")
        _check_reads(self)

    @property
    def inputs(self):
        return self.weights.shape[0]

    @property
    def matrix(self):
        return self.weights

    def output_shape(self, input_shape):
        if input_shape != (self.inputs,):
            raise NetworkError(f"layer {self.name!r} takes {self.inputs} inputs, not an "
                               f"activation of shape {input_shape}")
        return (self.outputs,)

    def patches(self, x):
        return x


@dataclass(frozen=True, eq=False)
class Conv2d(_MatrixLayer):
    """A 2-D convolution: `weights` is (kh, kw, in channels, out channels); `pads` adds
    (top, left, bottom, right) rows and columns of zeros around the input first."""
    name: str
    weights: np.ndarray
    bias: np.ndarray
    relu: bool = True
    stride: int = 1
    pads: tuple = (0, 0, 0, 0)
    clip: float = None
    reads: tuple = ()

    def __post_init__(self):
        self._check_arrays(4, "output channels")
        _check_reads(self)
        _check_int(self.name, "stride", self.stride, 1, "a positive integer")
        pads = tuple(self.pads)
        if len(pads) != 4:
            raise NetworkError(f"layer {self.name!r}: pads must be (top, left, bottom, right), "
                               f"not {self.pads!r}")
        for value in pads:
            _check_int(self.name, "pads", value, 0, "non-negative integers")
        object.__setattr__(self, "pads", pads)

    @property
    def kernel(self):
        return self.weights.shape[:2]

    @property
    def in_channels(self):
        return self.weights.shape[2]

    @property
    def matrix(self):
        return self.weights.reshape(-1, self.outputs)

    def output_shape(self, input_shape):
        kh, kw = self.kernel
        if len(input_shape) != 3 or input_shape[2] != self.in_channels:
            raise NetworkError(f"layer {self.name!r} takes (height, width, {self.in_channels}) "
                               f"images, not an activation of shape {input_shape}")
        top, left, bottom, right = self.pads
        height, width = input_shape[0] + top + bottom, input_shape[1] + left + right
        if height < kh or width < kw:
            raise NetworkError(f"layer {self.name!r}: its {kh}x{kw} kernel is larger than its "
                               f"{height}x{width} {'padded ' if any(self.pads) else ''}input")
        return (window_count(height, kh, self.stride), window_count(width, kw, self.stride),
                self.outputs)

    def patches(self, x):
        return im2col(pad_images(x, self.pads), *self.kernel, self.stride)


def _check_pads(name, pads):
    pads = tuple(pads)
    if len(pads) != 4:
        raise NetworkError(f"layer {name!r}: pads must be (top, left, bottom, right), not {pads!r}")
    for value in pads:
        _check_int(name, "pads", value, 0, "non-negative integers")
    return pads


@dataclass(frozen=True, eq=False)
class MaxPool2d:
    """Maximum over `size` x `size` windows every `stride` pixels (default: `size`), after
    `pads` (top, left, bottom, right) that never win; a remainder row or column is dropped."""
    name: str
    size: int = 2
    stride: int = None
    pads: tuple = (0, 0, 0, 0)
    reads: tuple = ()

    def __post_init__(self):
        _check_reads(self)
        _check_int(self.name, "size", self.size, 2, "an integer of at least 2")
        object.__setattr__(self, "stride", self.size if self.stride is None else self.stride)
        _check_int(self.name, "stride", self.stride, 1, "a positive integer")
        object.__setattr__(self, "pads", _check_pads(self.name, self.pads))
        if max(self.pads) >= self.size:
            raise NetworkError(f"layer {self.name!r}: pads {self.pads} must be smaller than "
                               f"the {self.size}x{self.size} window")

    @property
    def tiled(self):
        """Windows that tile the image: stride equal to the size, no padding."""
        return self.stride == self.size and not any(self.pads)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise NetworkError(f"layer {self.name!r} pools (height, width, channels) images, "
                               f"not an activation of shape {input_shape}")
        top, left, bottom, right = self.pads
        height, width = input_shape[0] + top + bottom, input_shape[1] + left + right
        if height < self.size or width < self.size:
            raise NetworkError(f"layer {self.name!r}: its {self.size}x{self.size} window is "
                               f"larger than its {height}x{width} input")
        return (window_count(height, self.size, self.stride),
                window_count(width, self.size, self.stride),
                input_shape[2])

    def windows(self, x, fill=0):
        """(batch, out_h, out_w, size, size, channels) windows of `x` padded with `fill`."""
        k, s = self.size, self.stride
        x = pad_images(x, self.pads, fill)
        out_h, out_w = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
        view = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
        return view[:, ::s, ::s][:, :out_h, :out_w].transpose(0, 1, 2, 4, 5, 3)

    def forward(self, x):
        fill = np.iinfo(x.dtype).min if np.issubdtype(x.dtype, np.integer) else -np.inf
        return self.windows(x, fill).max(axis=(3, 4))


@dataclass(frozen=True, eq=False)
class AvgPool2d(MaxPool2d):
    """Mean over `size` x `size` windows every `stride` pixels: padding counted as zeros
    in the divisor (ONNX's count_include_pad=1), or, `count_include_pad` False, left out
    of it (the divisor is the window's pixels inside the image). On the accelerator it is
    a convolution with fixed identity taps (the crossbar sums, requantisation divides)."""
    count_include_pad: bool = True

    def window_counts(self, height, width):
        """The divisor of each output pixel, (out_h, out_w), for a height x width input."""
        if self.count_include_pad:
            out = self.output_shape((height, width, 1))
            return np.full(out[:2], self.size * self.size)
        return self.windows(np.ones((1, height, width, 1))).sum(axis=(3, 4))[0, :, :, 0]

    def forward(self, x):
        counts = self.window_counts(*x.shape[1:3])
        return self.windows(x).sum(axis=(3, 4)) / counts[None, :, :, None]


@dataclass(frozen=True, eq=False)
class Flatten:
    """Images to vectors, in (y, x, channel) order."""
    name: str
    reads: tuple = ()

    def __post_init__(self):
        _check_reads(self)

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x):
        return x.reshape(len(x), -1)


@dataclass(frozen=True, eq=False)
class Add:
    """The elementwise sum of the outputs of the layers it `reads` (two or more, one
    shape), then ReLU when `relu` and the upper clamp `clip` when set: a residual
    connection, or a shortcut through a projection."""
    name: str
    reads: tuple
    relu: bool = False
    clip: float = None

    def __post_init__(self):
        _check_reads(self, None)

    def output_shape(self, *shapes):
        if len(set(shapes)) != 1:
            raise NetworkError(f"layer {self.name!r} adds tensors of shapes "
                               f"{', '.join(map(str, shapes))}; they must be one shape")
        return shapes[0]

    def forward(self, *xs):
        return activate(sum(xs[1:], xs[0]), self.relu, self.clip)


@dataclass(frozen=True, eq=False)
class Concat:
    """The outputs of the layers it `reads` (two or more) side by side along the channels
    (the last axis), in that order."""
    name: str
    reads: tuple

    def __post_init__(self):
        _check_reads(self, None)

    def output_shape(self, *shapes):
        if len({shape[:-1] for shape in shapes}) != 1:
            raise NetworkError(f"layer {self.name!r} concatenates tensors of shapes "
                               f"{', '.join(map(str, shapes))}; all but the channels must agree")
        return (*shapes[0][:-1], sum(shape[-1] for shape in shapes))

    def forward(self, *xs):
        return np.concatenate(xs, axis=-1)


LAYER_TYPES = (Dense, Conv2d, MaxPool2d, AvgPool2d, Flatten, Add, Concat)


def graph_reads(layers):
    """Per layer, the tensors it reads (0 the network's input, ``i + 1`` layer i's output),
    from the names in `reads`; a layer with none reads the one before it."""
    index, graph = {NETWORK_INPUT: 0}, []
    for i, layer in enumerate(layers):
        names = layer.reads or (layers[i - 1].name if i else NETWORK_INPUT,)
        missing = [name for name in names if name not in index]
        if missing:
            earlier = [other.name for other in layers[:i]]
            raise NetworkError(f"layer {layer.name!r} reads {missing[0]!r}, which is neither "
                               f"the network input ({NETWORK_INPUT!r}) nor a layer before it; "
                               f"earlier layers: {earlier}")
        graph.append(tuple(index[name] for name in names))
        index[layer.name] = i + 1
    return tuple(graph)


def stream_tensors(layers, x, reads=None):
    """Every tensor through `layers`, as ``(index, value)`` in order (0 the input), each
    dropped after its last reader: the memory of the widest cut of the graph, not of
    every tensor at once."""
    reads = reads or graph_reads(layers)
    last = {t: i for i, tensors in enumerate(reads) for t in tensors}
    held = {0: x}
    yield 0, x
    for i, (layer, tensors) in enumerate(zip(layers, reads)):
        out = layer.forward(*[held[t] for t in tensors])
        for t in set(tensors):
            if last[t] == i:
                del held[t]
        held[i + 1] = out
        yield i + 1, out


def run_layers(layers, x, reads=None):
    """Every tensor through float or quantised `layers`: the network's input, then each
    layer's output, in order (`reads`: `graph_reads(layers)`, when known)."""
    seen = [x]
    for layer, tensors in zip(layers, reads or graph_reads(layers)):
        seen.append(layer.forward(*[seen[t] for t in tensors]))
    return seen


@dataclass(frozen=True, eq=False)
class Network:
    """Layers in order; `input_shape` is one sample's, e.g. (64,) or (8, 8, 1) (default:
    the first Dense layer's inputs)."""
    layers: tuple
    input_shape: tuple = None

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise NetworkError("a network needs at least one layer")
        names = set()
        for i, layer in enumerate(layers):
            if not isinstance(layer, LAYER_TYPES):
                raise NetworkError(f"layer {i} ({type(layer).__name__}) is not supported; "
                                   f"supported: {', '.join(t.__name__ for t in LAYER_TYPES)}")
            if layer.name in names or layer.name == NETWORK_INPUT:
                raise NetworkError(f"layer name {layer.name!r} is used twice" if layer.name in names
                                   else f"layer {i}: {NETWORK_INPUT!r} names the network input")
            names.add(layer.name)
        shape = self.input_shape
        if shape is None:
            if not isinstance(layers[0], Dense):
                raise NetworkError(f"layer {layers[0].name!r}: a network that does not start "
                                   f"with Dense needs its input_shape")
            shape = (layers[0].inputs,)
        shape = tuple(int(d) for d in shape)
        reads = graph_reads(layers)
        shapes = [shape]
        for i, (layer, tensors) in enumerate(zip(layers, reads)):
            try:
                shapes.append(layer.output_shape(*[shapes[t] for t in tensors]))
            except NetworkError as error:
                source = "the input" if tensors[0] == 0 else repr(layers[tensors[0] - 1].name)
                raise NetworkError(f"{error}, which {source} gives") from None
        unread = set(range(1, len(layers))) - {t for tensors in reads for t in tensors}
        if unread:
            raise NetworkError(f"layer {layers[min(unread) - 1].name!r}: no layer reads its "
                               f"output (the network's output is the last layer's)")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "shapes", tuple(shapes))
        object.__setattr__(self, "reads", reads)

    @property
    def inputs(self):
        return int(np.prod(self.input_shape))

    def matrix_layers(self):
        return [layer for layer in self.layers if isinstance(layer, _MatrixLayer)]

    def with_layers(self, layers):
        return Network(tuple(layers), self.input_shape)

    def _check_input(self, x):
        x = np.asarray(x, np.float64)
        if x.ndim == 2 and len(self.input_shape) > 1 and x.shape[1] == self.inputs:
            x = x.reshape(len(x), *self.input_shape)
        if x.shape[1:] != self.input_shape:
            raise NetworkError(f"inputs must have shape (batch, {', '.join(map(str, self.input_shape))}), "
                               f"not {x.shape}")
        return x

    def forward(self, x):
        """Float forward pass."""
        return self.activations(x)[-1]

    def activations(self, x):
        """Every tensor: the network's input, then each layer's output, in order."""
        return run_layers(self.layers, self._check_input(x), self.reads)
