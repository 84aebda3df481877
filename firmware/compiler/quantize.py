"""Post-training int8 quantisation: per-output-channel symmetric weights, per-tensor
asymmetric activations calibrated on sample data (min/max or percentile)."""

import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from golden import quantize_multiplier, requantize

from ..frontend.network import (Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, MaxPool2d,
                                Network, NetworkError, graph_reads, run_layers, stream_tensors)
from ..frontend.quant_params import TensorQuant
from ..windows import im2col, pad_images, window_count

# Weight scale floor, relative to y_scale / x_scale: see `quantize`.
DEAD_CHANNEL_RATIO = 2.0 ** -16

__all__ = ["QuantizedDense", "QuantizedConv2d", "QuantizedMerge", "QuantizedAdd",
           "QuantizedConcat", "QuantizedAvgPool", "QuantizedMaxPool2d", "QuantizedFlatten",
           "QuantizedNetwork", "CalibrationWarning", "calibrate", "quantize"]


@dataclass(frozen=True, eq=False)
class QuantizedDense:
    """Integer layer: ``requantize(x_q @ weights, bias, multiplier, shift, out.zero_point,
    clamp_min, 127)``, exactly what the accelerator computes."""
    name: str
    weights: np.ndarray      # int8 matrix (inputs, outputs); Conv2d: (kh * kw * cin, cout)
    bias: np.ndarray         # int32, input zero point folded in
    multiplier: np.ndarray   # per output channel
    shift: np.ndarray
    input: TensorQuant
    output: TensorQuant
    relu: bool
    clip: float = None       # the float layer's upper clamp (Clip(0, clip)), if any
    reads: tuple = ()        # the layers whose outputs it takes (firmware.frontend.network)

    @property
    def matrix(self):
        return self.weights

    @property
    def clamp_min(self):
        return self.output.zero_point if self.relu else -128

    @property
    def clamp_max(self):
        return 127 if self.clip is None else int(self.output.quantize(self.clip))

    def patches(self, x_q):
        return np.asarray(x_q, np.int64)

    @cached_property
    def _blas_weights(self):
        return np.asarray(self.weights, np.float64)

    def forward(self, x_q):
        # Through float64 BLAS, exactly: int8 inputs times weights of at most 8 bits are
        # below 2**16 each, so any sum of fewer than 2**37 of them is an integer float64
        # holds. (NumPy's int64 matmul has no BLAS: several times slower.)
        acc = (np.asarray(self.patches(x_q), np.float64) @ self._blas_weights).astype(np.int64)
        return requantize(acc, self.bias, self.multiplier, self.shift, self.output.zero_point,
                          self.clamp_min, self.clamp_max)


@dataclass(frozen=True, eq=False)
class QuantizedConv2d(QuantizedDense):
    """A convolution as a QuantizedDense on im2col patches of the int8 NHWC input."""
    kernel: tuple = (1, 1)
    stride: int = 1
    pads: tuple = (0, 0, 0, 0)

    def patches(self, x_q):
        """im2col patches, the padding at the input's zero point (real 0)."""
        x_q = pad_images(np.asarray(x_q, np.int64), self.pads, self.input.zero_point)
        return im2col(x_q, *self.kernel, self.stride)


@dataclass(frozen=True, eq=False)
class QuantizedAvgPool(QuantizedConv2d):
    """An average pool as a convolution of identity taps (how the crossbar computes it).
    Its reference sums each window directly: the same integers as the product with its
    identity-tap matrix, without multiplying by a (k*k*C, C) matrix of mostly zeros.
    Excluding the padding from the divisor, output pixels fall in classes by divisor:
    `classes` maps each output pixel to one, `class_params` holds each class's
    (multiplier, shift) per channel (the layer's own are its last, the interior's)."""
    classes: np.ndarray = None
    class_params: tuple = ()

    def forward(self, x_q):
        (kh, kw), s = self.kernel, self.stride
        x = pad_images(np.asarray(x_q, np.int64), self.pads, self.input.zero_point)
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
        out_h, out_w = window_count(x.shape[1], kh, s), window_count(x.shape[2], kw, s)
        acc = windows[:, ::s, ::s][:, :out_h, :out_w].sum(axis=(-2, -1))
        params = self.class_params or ((self.multiplier, self.shift),)
        classes = np.zeros((out_h, out_w), np.int64) if self.classes is None else self.classes
        out = np.empty(acc.shape, np.int64)
        for index, (multiplier, shift) in enumerate(params):
            where = classes == index
            out[:, where] = requantize(acc[:, where], self.bias, multiplier, shift,
                                       self.output.zero_point, self.clamp_min, self.clamp_max)
        return out


@dataclass(frozen=True, eq=False)
class QuantizedFlatten:
    name: str
    input: TensorQuant
    reads: tuple = ()

    @property
    def output(self):
        return self.input

    def forward(self, x_q):
        return np.asarray(x_q).reshape(len(x_q), -1)


@dataclass(frozen=True, eq=False)
class QuantizedMerge(QuantizedDense):
    """A layer of several inputs on the crossbar, as a 1x1 layer over their channels side
    by side: `parts` holds each input's channel count (its rows of `weights`, in order)."""
    parts: tuple = ()

    def forward(self, *xs):
        return super().forward(np.concatenate(xs, axis=-1))


@dataclass(frozen=True, eq=False)
class QuantizedAdd(QuantizedMerge):
    """An add: ``[x0, x1, ..] @ [[diag(w0)], [diag(w1)], ..]``, the input scales as int8
    weights, then the usual requantisation."""


@dataclass(frozen=True, eq=False)
class QuantizedConcat(QuantizedMerge):
    """A concatenation: block-diagonal identity weights, each input rescaled to the
    output's scale by its channels' requantisation (exact where the scales agree).
    `in_quants` holds each input's quantisation."""
    in_quants: tuple = ()

    @property
    def layout_only(self):
        """Whether every input already has the output's quantisation: then the layer moves
        int8 values unchanged, and the mapper can leave its inputs where they are."""
        return all(q == self.output for q in self.in_quants)


@dataclass(frozen=True, eq=False)
class QuantizedMaxPool2d:
    """Max commutes with the monotonic int8 mapping: the same scale in and out."""
    name: str
    input: TensorQuant
    size: int = 2
    stride: int = None
    pads: tuple = (0, 0, 0, 0)
    reads: tuple = ()

    @property
    def output(self):
        return self.input

    def forward(self, x_q):
        """Padding is -128: it never wins (every window holds a pixel of the image)."""
        pool = MaxPool2d(self.name, self.size, self.stride, self.pads)
        return pool.forward(np.asarray(x_q, np.int64).clip(-128, 127).astype(np.int8)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class QuantizedNetwork:
    layers: tuple
    input_shape: tuple = None
    shapes: tuple = None            # one sample's input shape of each layer, then the output

    @property
    def input(self):
        return self.layers[0].input

    @property
    def output(self):
        return self.layers[-1].output

    @cached_property
    def reads(self):
        """Per layer, the tensors it reads (`firmware.frontend.network.graph_reads`)."""
        return graph_reads(self.layers)

    def matrix_layers(self):
        return [layer for layer in self.layers if isinstance(layer, QuantizedDense)]

    def activations(self, x_q):
        """Every int8 tensor: the input, then each layer's output."""
        x_q = np.asarray(x_q, np.int64)
        if self.input_shape and x_q.ndim == 2 and len(self.input_shape) > 1:
            x_q = x_q.reshape(len(x_q), *self.input_shape)
        return run_layers(self.layers, x_q, self.reads)

    def forward(self, x_q):
        """The int8 reference: what the golden model and the RTL must reproduce."""
        return self.activations(x_q)[-1]

    def predict(self, x):
        """Float inputs in, class indices out, through the int8 reference."""
        return np.argmax(self.forward(self.input.quantize(x)), axis=1)


PERCENTILE_LOW = 50     # a percentile range clips at most the upper half of a tensor
CALIBRATION_CHUNK = 4   # samples a min/max calibration runs at once: bounds its memory


class CalibrationWarning(UserWarning):
    """Calibration data too degenerate to set int8 ranges: one sample, identical samples,
    a tensor with a range of 0, or values that overflow."""


def calibrate(network, samples, method="minmax", percentile=99.99, chunk=CALIBRATION_CHUNK):
    """A `TensorQuant` for each layer input and the final output, from `samples`.

    `method` is ``"minmax"`` or ``"percentile"`` (clip the range at the given
    percentile of each tensor, which ignores rare outliers). Min/max streams the samples
    through the network `chunk` at a time, so memory is bounded by one chunk's
    activations whatever the number of samples; a percentile needs every value of a
    tensor at once and holds them.
    """
    if method not in ("minmax", "percentile"):
        raise ValueError(f"calibration method must be 'minmax' or 'percentile', not {method!r}")
    if not PERCENTILE_LOW < percentile <= 100:
        raise ValueError(f"percentile must be in ({PERCENTILE_LOW}, 100], not {percentile!r}")
    samples = np.asarray(samples)
    problems = []
    if len(samples) < 2 or np.all(samples == samples[:1]):
        problems.append(f"{'a single sample' if len(samples) < 2 else 'every sample the same'}")
    names = ["the input"] + [f"{layer.name}'s output" for layer in network.layers]
    step = len(samples) if method == "percentile" else max(1, chunk)
    low, high = np.full(len(names), np.inf), np.full(len(names), -np.inf)
    finite = np.ones(len(names), bool)
    for first in range(0, len(samples), step):
        x = network._check_input(samples[first:first + step])
        for t, value in stream_tensors(network.layers, x, network.reads):
            finite[t] &= bool(np.all(np.isfinite(value)))
            value = np.nan_to_num(value)
            if method == "minmax":
                low[t], high[t] = min(low[t], value.min()), max(high[t], value.max())
            else:
                low[t] = min(low[t], np.percentile(value, 100 - percentile))
                high[t] = max(high[t], np.percentile(value, percentile))
    ranges = []
    for name, ok, lo, hi in zip(names, finite, low, high):
        if not ok:
            problems.append(f"{name} is not finite (it overflows)")
        elif lo == hi:
            problems.append(f"{name} is {lo:g} throughout (a range of 0)")
        ranges.append(TensorQuant.covering(lo, hi))
    if problems:
        warnings.warn(CalibrationWarning(
            f"degenerate calibration data ({len(samples)} samples): {'; '.join(problems[:3])}"
            f"{f' and {len(problems) - 3} more' if len(problems) > 3 else ''}: the int8 "
            f"ranges it sets will not fit real inputs; calibrate on representative samples"),
            stacklevel=2)
    return ranges


def _requant_params(name, acc_scale, y_quant):
    """Per-channel (multiplier, shift) for `acc_scale` to `y_quant`, and `y_quant` widened
    until every channel's scale is below 1 (the hardware only shifts right)."""
    if acc_scale.max() >= y_quant.scale:
        y_quant = TensorQuant(float(acc_scale.max()) * (1 + 2.0 ** -20), y_quant.zero_point)
    multipliers, shifts = [], []
    for channel, scale in enumerate(acc_scale / y_quant.scale):
        scale = max(scale, 2.0 ** -32)           # the smallest the hardware represents
        try:
            m, s = quantize_multiplier(scale)
        except ValueError as error:
            raise NetworkError(f"layer {name!r}, output channel {channel}: {error}") from None
        multipliers.append(m)
        shifts.append(s)
    return np.array(multipliers), np.array(shifts), y_quant


def scale_weights(scale_a, scale_b, largest=127):
    """Integer weights (wa, wb), each in 1..`largest`, whose ratio is the closest to
    scale_a / scale_b (the best rational approximation with both terms at most `largest`)."""
    ratio = scale_a / scale_b
    best = None
    for wb in range(1, largest + 1):
        wa = int(round(ratio * wb))
        if 1 <= wa <= largest:
            error = abs(wa / wb - ratio) / ratio
            if best is None or error < best[0] - 1e-15:
                best = (error, wa, wb)
    if best is None:                     # a ratio beyond 1/127..127: the smaller input weighs 1
        return (largest, 1) if ratio > 1 else (1, largest)
    return best[1], best[2]


def _add_weights(scales, largest=127):
    """Integer weights (each 1..`largest`) in the ratio of the input `scales`: for two, the
    best rational approximation; for more, the largest scale at `largest`."""
    if len(scales) == 2:
        return scale_weights(*scales, largest)
    top = max(scales)
    return tuple(max(1, int(round(largest * scale / top))) for scale in scales)


def _add_on_crossbar(add, in_quants, y_quant, channels):
    """The add as a QuantizedAdd: the input scales as int8 weights on diagonals (for two,
    typically within 1e-4 of the scales' ratio); the zero points fold into the bias."""
    weights = _add_weights([q.scale for q in in_quants])
    matrix = np.vstack([w * np.eye(channels, dtype=np.int64) for w in weights])
    bias = np.full(channels, -sum(w * q.zero_point for w, q in zip(weights, in_quants)))
    # acc = sum w_i (x_i - z_i); one accumulator unit is about scale_i / w_i for every i
    acc_scale = np.full(channels, np.mean([q.scale / w for w, q in zip(weights, in_quants)]))
    multipliers, shifts, y_quant = _requant_params(add.name, acc_scale, y_quant)
    return QuantizedAdd(add.name, matrix, bias, multipliers, shifts, in_quants[0], y_quant,
                        add.relu, add.clip, add.reads, parts=(channels,) * len(in_quants))


def _concat_on_crossbar(concat, in_quants, y_quant, parts):
    """The concatenation as a QuantizedConcat: each input's channels requantised from its
    scale to the output's. Its weights are the identity, times the integer that brings an
    input scale above the output's under it (a model may clip a wide input into a narrower
    output; the requantiser only scales down); the bias removes the zero points."""
    gains = [max(1, int(np.floor(q.scale / y_quant.scale)) + 1) if q.scale >= y_quant.scale
             else 1 for q in in_quants]
    if max(gains) > 127:
        raise NetworkError(f"layer {concat.name!r}: an input's scale is {max(gains) - 1}x the "
                           f"output's, beyond what int8 weights bring back (127x)")
    per_channel = lambda values: np.concatenate([np.full(n, v) for n, v in zip(parts, values)])
    gain = per_channel(gains)
    matrix = np.diag(gain).astype(np.int64)
    bias = -per_channel([g * q.zero_point for g, q in zip(gains, in_quants)]).astype(np.int64)
    acc_scale = per_channel([q.scale / g for g, q in zip(gains, in_quants)])
    multipliers, shifts, y_quant = _requant_params(concat.name, acc_scale, y_quant)
    return QuantizedConcat(concat.name, matrix, bias, multipliers, shifts, in_quants[0],
                           y_quant, False, None, concat.reads, parts=tuple(parts),
                           in_quants=tuple(in_quants))


def _average_as_convolution(pool, x_quant, y_quant, in_shape):
    """Average pooling as a convolution with identity taps: the crossbar sums the window,
    the requantiser divides by its size, or by the pixels inside the image where the
    padding is left out of the count, per class of output pixel (and rescales to
    `y_quant`, which a quantised model may give; calibrated, it is `x_quant`)."""
    k, channels = pool.size, in_shape[2]
    # int8: a global pool of C channels is a (k*k*C, C) matrix, mostly zeros
    weights = np.tile(np.eye(channels, dtype=np.int8), (k * k, 1))       # (ky, kx, c) rows
    counts = pool.window_counts(*in_shape[:2])
    divisors = np.unique(counts)                 # ascending: the largest scale first
    params = []
    for divisor in divisors:
        multipliers, shifts, y_quant = _requant_params(
            pool.name, np.full(channels, x_quant.scale / divisor), y_quant)
        params.append((multipliers, shifts))
    classes = None if len(divisors) == 1 else np.searchsorted(divisors, counts)
    return QuantizedAvgPool(pool.name, weights, np.full(channels, -x_quant.zero_point * k * k),
                            *params[-1], x_quant, y_quant, False, None, pool.reads,
                            kernel=(k, k), stride=pool.stride, pads=pool.pads,
                            classes=classes, class_params=tuple(params) if classes is not None
                            else ())


def _given_ranges(network, samples, method, percentile, given):
    """The model's own ranges; any it leaves out calibrated on `samples` (if given)."""
    ranges = list(given.ranges)
    for index, layer in enumerate(network.layers):        # pools and Flatten pass theirs on
        if ranges[index + 1] is None and isinstance(layer, (Flatten, MaxPool2d)):
            ranges[index + 1] = ranges[network.reads[index][0]]
    if any(r is None for r in ranges):
        if samples is None:
            missing = [i for i, r in enumerate(ranges) if r is None]
            where = ", ".join("the network input" if i == 0 else
                              f"layer {network.layers[i - 1].name!r}'s output" for i in missing)
            raise NetworkError(f"{given.source} gives no quantisation for {where}; give "
                               f"calibration data")
        calibrated = calibrate(network, samples, method, percentile)
        ranges = [r if r is not None else c for r, c in zip(ranges, calibrated)]
    return ranges


def _concat_inputs_share(network, ranges):
    """`ranges` with each Concat's inputs given its output's range where a matrix layer
    makes them (TFLite's rule for concatenation): the Concat then changes no value and
    costs no work (`QuantizedConcat.layout_only`). Outer Concats first, so a nested one
    passes the outer range on."""
    ranges = list(ranges)
    makers = (Add, Concat, Conv2d, Dense)                 # not pools: same range in and out
    for index in reversed(range(len(network.layers))):
        if isinstance(network.layers[index], Concat):
            for t in network.reads[index]:
                if t > 0 and isinstance(network.layers[t - 1], makers):
                    ranges[t] = ranges[index + 1]
    return ranges


def quantize(network, samples, method="minmax", percentile=99.99, given=None):
    """Quantise `network` to int8 with activation ranges calibrated on `samples`, or with
    the ranges and weight scales a quantised model brings (`given`, a GivenQuant)."""
    if not isinstance(network, Network):
        raise TypeError(f"quantize takes a firmware.Network, not {type(network).__name__}")
    if given is None:
        ranges = _concat_inputs_share(network, calibrate(network, samples, method, percentile))
    else:
        ranges = _given_ranges(network, samples, method, percentile, given)
    layers = []
    for index, (layer, tensors) in enumerate(zip(network.layers, network.reads)):
        x_quant, y_quant = ranges[tensors[0]], ranges[index + 1]
        if isinstance(layer, (Add, Concat)):
            in_quants = [ranges[t] for t in tensors]
            if isinstance(layer, Add):
                layers.append(_add_on_crossbar(layer, in_quants, y_quant,
                                               network.shapes[index + 1][-1]))
            else:
                layers.append(_concat_on_crossbar(layer, in_quants, y_quant,
                                                  [network.shapes[t][-1] for t in tensors]))
            ranges[index + 1] = layers[-1].output
            continue
        if isinstance(layer, AvgPool2d):
            model_given = given is not None and given.ranges[index + 1] is not None
            layers.append(_average_as_convolution(layer, x_quant, y_quant if model_given else x_quant,
                                                  network.shapes[tensors[0]]))
            ranges[index + 1] = layers[-1].output
            continue
        if isinstance(layer, (Flatten, MaxPool2d)):
            ranges[index + 1] = x_quant                 # the same numbers, fewer or reshaped
            layers.append(QuantizedFlatten(layer.name, x_quant, layer.reads)
                          if isinstance(layer, Flatten)
                          else QuantizedMaxPool2d(layer.name, x_quant, layer.size, layer.stride,
                                                  layer.pads, layer.reads))
            continue
        # A dead channel (weights ~0, as trained networks often have) or an all-zero layer:
        # its weight scale is floored where a weight moves the output by 2**-16 LSB per
        # input LSB, so its weights quantise to 0 and the requantisation scale (and the
        # bias in accumulator units) stay representable.
        max_abs = np.abs(layer.matrix).max(axis=0)
        w_scale = np.maximum(max_abs / 127.0, DEAD_CHANNEL_RATIO * y_quant.scale / x_quant.scale)
        w_min = -127
        if given is not None and layer.name in given.weight_scales:
            w_scale = np.broadcast_to(given.weight_scales[layer.name], w_scale.shape)
            w_min = -128                                # the model's own int8 weights, exactly
        w_q = np.clip(np.round(layer.matrix / w_scale), w_min, 127).astype(np.int64)
        acc_scale = x_quant.scale * w_scale
        multipliers, shifts, y_quant = _requant_params(layer.name, acc_scale, y_quant)
        ranges[index + 1] = y_quant                      # the next layer follows a widening
        bias = np.round(layer.bias / acc_scale).astype(np.int64) - x_quant.zero_point * w_q.sum(axis=0)
        if np.abs(bias).max(initial=0) >= 1 << 31:
            raise NetworkError(f"layer {layer.name!r}: quantised bias overflows int32")
        fields = (layer.name, w_q, bias, multipliers, shifts, x_quant, y_quant, layer.relu,
                  layer.clip, layer.reads)
        if isinstance(layer, Conv2d):
            layers.append(QuantizedConv2d(*fields, kernel=layer.kernel, stride=layer.stride,
                                          pads=layer.pads))
        else:
            layers.append(QuantizedDense(*fields))
    return QuantizedNetwork(tuple(layers), network.input_shape, network.shapes)
