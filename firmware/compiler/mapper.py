"""Mapping a quantised network onto the accelerator: blocks, tiles, segments, memory layout.

Each matrix layer's int8 weight matrix (rows laid out by :mod:`firmware.compiler.layout`) is cut
into rows x cols blocks. A block that is entirely zero is never stored, programmed or
computed. The K dimension (rows) is summed in the partial sums by accumulating MVMs; the
N dimension (cols) is spread over tiles that share one input vector.

Convolutions are lowered to im2col vectors with the weights held stationary. The first
layer's patches are written by the host. A later convolution reads the image its
predecessor left in the activation memory, one entry group per pixel: each (kernel tap,
channel block) is one block of the matrix and one strided MVM per output row. Output
positions keep the input's row pitch ("wide" rows), so a layer's image is addressed
the same way whatever its valid width.

A network whose weights, parameters or program do not fit the memories at once is cut
into *segments*, each one device program with its own weight and parameter images: whole
steps while they fit, and a matrix layer too big on its own in chunks of its blocks
(groups of up to `tiles` output blocks, all their K blocks, in order; the partial sums
stay in place between chunks). Tensors are numbered by the step that reads them (the last
is the network's output). A segment's input tensor sits at one end of the activation
memory and its output at the other, alternating, so the next segment finds its input
where the last one wrote it: only the network's input and output, and a residual add's
skip from an earlier segment, move through the host. A step whose tensors do not fit for
one sample runs in tiles (`Band`): of its output rows and columns, of a convolution's
output channels, or of a Dense layer's K blocks, each tile's windows of its tensors
moved by the host (`Transfer`s the compiler places).
"""

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from golden import isa
from golden.timing import FETCH_DECODE_CYCLES, mvm_cycles, mvm_round_cycles, program_cycles

from ..frontend.network import NetworkError
from ..runtime.executable import Transfer
from .layout import matrix_row_layout, padded_matrix
from .quantize import (QuantizedConcat, QuantizedConv2d, QuantizedDense, QuantizedFlatten,
                       QuantizedMaxPool2d, QuantizedMerge)

__all__ = ["LayerMap", "PoolMap", "PadMap", "Segment", "Placement", "NetworkMap", "Job", "lower",
           "plan_jobs", "starves", "step_inputs", "Band", "band_step", "output_rows",
           "output_cols", "channel_bands", "input_bands", "input_band", "segment_steps",
           "tensor_entries", "segment_tensors", "place_segment", "MappingError"]


class MappingError(NetworkError):
    """The network does not fit the hardware; says which layer and which memory."""


def _power_of_two_at_most(n):
    return 1 << (n.bit_length() - 1)


@dataclass(frozen=True)
class Job:
    """One PROGRAM and its MVMs: tile ``(r * ngroups + n) * ktiles + k`` of the job's range
    holds block ``(kbs[k], nbs[n])`` of step `step` for every replica ``r``."""
    step: int
    kbs: tuple                   # K blocks, their inputs evenly spaced in one tensor
    nbs: tuple                   # consecutive output blocks
    replicas: int
    accumulate: bool             # adds to partial sums an earlier job of the layer wrote

    @property
    def ktiles(self):
        return len(self.kbs)

    @property
    def ngroups(self):
        return len(self.nbs)

    @property
    def tiles(self):
        return self.ktiles * self.ngroups * self.replicas


@dataclass
class LayerMap:
    name: str
    k_blocks: int
    n_blocks: int
    nonzero: np.ndarray          # (k_blocks, n_blocks) bool
    weights: np.ndarray          # int8, padded to (k_blocks*rows, n_blocks*cols)
    row_index: np.ndarray        # the padded row of each matrix row (firmware.compiler.layout)
    cell_utilisation: float      # cells of stored blocks holding a nonzero weight (not
                                 # padding, the zeros between groups, a diagonal's or pruned)
    positions: int               # input vectors per sample (output pixels, wide; 1 for Dense)
    k_offsets: list              # per K block: its entry in a sample's input tensor
    position_stride: int         # entries between one position's input and the next's
    input_entries: int           # entries of one sample's input tensor
    output_entries: int          # entries of one position's output (channels / rows lanes)
    sample_runs: list            # MVM runs of one sample: (count, input offset, first position)
    k_inputs: dict = field(default_factory=dict)   # K block -> step whose input tensor
                                                    # holds it, when not this layer's
    jobs: list = field(default_factory=list)         # `plan_jobs`, in execution order
    row_runs: list = None        # a convolution's runs per output row, for bands (else None)
    pitch: int = None            # pixels a row of the image it reads (None: vectors)
    window: tuple = None         # a convolution's (kernel height, width, stride) over it
    n_first: int = 0             # a band of its output channels: the whole layer's first block
    band_jobs: dict = field(default_factory=dict, repr=False, compare=False)  # its tiles' jobs,
                                 # by (pitch, output blocks): planned once, shared by copies
    requant_classes: np.ndarray = None   # per position: its class of requantisation
                                         # parameters (-1: a wide row's gap), else None
    class_count: int = 1         # classes of requantisation parameters (qmem entries a block)
    source_groups: dict = field(default_factory=dict)   # a merge's inputs: tensor -> its
                                                        # entries a pixel (positions, strides
                                                        # and runs are then in pixels)
    adc_shift: int = 0           # the ADC range of its MVMs (firmware.compiler.adc_calibration)
    offset_inputs: bool = False  # its MVMs apply x + 128; the bias takes 128 * sum(w) back
    fault_layout: str = None     # written around stuck cells (fault_aware): "tile", each
                                 # block on one tile, or "pair", on two (kbs (kb, kb)),
                                 # its weights split between them; no replicas either way

    @property
    def block_utilisation(self):
        return float(self.nonzero.mean())

    @property
    def stored_blocks(self):
        return int(self.nonzero.sum())

    @property
    def samples_contiguous(self):
        """Whether one strided run covers every sample's positions: they follow each other
        at the position stride, or there is one position a sample (then the run steps
        from sample to sample, as a Dense layer's does)."""
        if self.positions == 1:
            return self.sample_runs == [(1, 0, 0)]
        return (len(self.sample_runs) == 1
                and self.positions * self.position_stride == self.input_entries)


class _ImageStep:
    """A step that makes a compact image of `out_h` x `out_w` pixels, `group` entries each."""

    @property
    def positions(self):
        return self.out_h * self.out_w

    @property
    def output_entries(self):
        return self.group


@dataclass
class PoolMap(_ImageStep):
    """Max pooling of an on-device image (tensor `input_tensor`) into a new, compact one, by
    MAX instructions."""
    name: str
    size: int
    out_h: int
    out_w: int
    pitch: int                   # input row pitch, in pixels
    group: int                   # entries per pixel (channels / rows lanes)
    input_entries: int
    stride: int = None           # default: the window size
    input_tensor: int = None

    def __post_init__(self):
        self.stride = self.stride or self.size


COPY = -128                      # max(x, -128) = x: a MAX against it copies


@dataclass
class PadMap(_ImageStep):
    """An on-device image (tensor `input_tensor`) copied into a compact one with a border of
    `fill` (the zero point before a padded convolution, -128 before a padded max pool; no
    border compacts wide rows), by MAX runs against constant entries the host writes: the
    whole image from the fill, then each row over it."""
    name: str
    in_h: int
    in_w: int
    pitch: int                   # input row pitch, in pixels
    group: int
    pads: tuple                  # (top, left, bottom, right)
    fill: int
    input_entries: int
    input_tensor: int = None

    @property
    def out_h(self):
        return self.in_h + self.pads[0] + self.pads[2]

    @property
    def out_w(self):
        return self.in_w + self.pads[1] + self.pads[3]

    @property
    def constants(self):
        """Constant entries (every lane one value) its MAX runs read."""
        return (self.fill, COPY)


def _blocks(count, size):
    return -(-count // size)


@dataclass(frozen=True)
class _Held:
    """Where a network tensor lives: mapper tensor `tensor` (the output of step
    ``tensor - 1``; 0 is the input the host writes), and for an image on the device its
    producer step, row pitch and valid width, and its (height, width, channels)."""
    tensor: int
    image: tuple = None          # (producer step, pitch, width)
    shape: tuple = None


def _pad_step(maps, name, held, pads, fill):
    """Append the PadMap that borders (or, without pads, compacts) the image `held`; return
    where the new image is held."""
    producer, pitch, width = held.image
    pad = PadMap(name, held.shape[0], width, pitch, producer.output_entries, tuple(pads),
                 int(fill), producer.positions * producer.output_entries, held.tensor)
    maps.append(pad)
    height, width, channels = held.shape
    return _Held(len(maps), (pad, pad.out_w, pad.out_w), (pad.out_h, pad.out_w, channels))


def _check_ending(qnet):
    """The output is read back as one vector per sample: a Dense's, or a convolution's (or
    global pool's) of one pixel, which is laid out alike; a Flatten after it is free."""
    last = len(qnet.layers) - 1
    while last > 0 and isinstance(qnet.layers[last], QuantizedFlatten):
        last -= 1
    ending = qnet.layers[last]
    if not isinstance(ending, QuantizedDense) or (len(qnet.shapes[last + 1]) == 3
                                                  and qnet.shapes[last + 1][:2] != (1, 1)):
        raise MappingError(f"layer {ending.name!r}: the network must end in a Dense layer or "
                           f"in a convolution or global pool of one pixel (the output is read "
                           f"back as one vector per sample)")


def _one_geometry(maps, name, parts):
    """Images `parts` in one addressing: as they are where they share pitch and width, else
    each with wide rows compacted first (a copy)."""
    if parts[0].image is not None and len({held.image[1:] for held in parts}) > 1:
        parts = [held if held.image[1] == held.image[2] else
                 _pad_step(maps, f"{name}.compact{i}", held, (0, 0, 0, 0), COPY)
                 for i, held in enumerate(parts)]
    return parts


def _merge_inputs(maps, name, parts, channels, rows):
    """A merge's (Add's, Concat's, or a pointwise convolution's of a layout-only Concat)
    inputs as one addressing: vectors, or images of one geometry. Returns (held inputs,
    k_offsets, k_tensors, source_groups, positions, position_stride, runs, entries,
    row_runs), the image quantities in pixels (each source's entries per pixel in
    `source_groups`)."""
    if any(held.tensor == 0 for held in parts):
        raise MappingError(f"layer {name!r}: reads the network's input, which the host "
                           f"writes once, laid out for the first layer")
    if len({held.image is None for held in parts}) > 1:
        raise MappingError(f"layer {name!r}: mixes images and vectors (a Flatten keeps "
                           f"its image's pixel layout; only a Dense makes a vector)")
    images = parts[0].image is not None
    parts = _one_geometry(maps, name, parts)
    k_offsets, k_tensors, groups = [], [], {}
    for held, count in zip(parts, channels):
        group = _blocks(count, rows)
        k_offsets += range(group)
        k_tensors += [held.tensor] * group
        groups[held.tensor] = group
    if not images:
        return parts, k_offsets, k_tensors, {}, 1, 0, [(1, 0, 0)], None, None
    producer, pitch, width = parts[0].image
    height = parts[0].shape[0]
    rows = [(width, y * pitch, y * pitch) for y in range(height)]
    runs = [(height * width, 0, 0)] if pitch == width else rows
    return (parts, k_offsets, k_tensors, groups, producer.positions, 1, runs,
            producer.positions, rows)


@dataclass(frozen=True)
class _Parts:
    """A Concat that costs nothing (see `_layout_concats`): its inputs stay where their
    producers left them, in one geometry, and its readers read them there."""
    parts: tuple                 # `_Held` of each input, in channel order
    channels: tuple              # channels of each


def _pointwise(layer):
    """A 1x1 convolution of stride 1 without padding: a merge of its input's channels."""
    return (type(layer) is QuantizedConv2d and tuple(layer.kernel) == (1, 1)
            and layer.stride == 1 and not any(layer.pads))


def _layout_concats(qnet, rows):
    """The tensors to hold as `_Parts`, not concatenated: the outputs of Concats that
    change no value (`QuantizedConcat.layout_only`) of on-device images of whole channel
    blocks (so each part's entries are the concatenation's), and max pools of those,
    where every reader takes parts: a pointwise convolution (as a merge of the parts), a
    max pool (part by part) or another such Concat."""
    held = set()
    for index, (layer, tensors) in enumerate(zip(qnet.layers, qnet.reads)):
        if isinstance(layer, QuantizedConcat):
            if (layer.layout_only and 0 not in tensors and all(
                    len(qnet.shapes[t]) == 3 and qnet.shapes[t][2] % rows == 0 for t in tensors)):
                held.add(index + 1)
        elif isinstance(layer, QuantizedMaxPool2d) and tensors[0] in held:
            held.add(index + 1)
    readers = {}
    for index, tensors in enumerate(qnet.reads):
        for t in tensors:
            readers.setdefault(t, []).append(index)
    held.discard(len(qnet.layers))                       # the output goes to the host
    while True:
        refused = {t for t in held
                   if any(not _pointwise(qnet.layers[i]) and i + 1 not in held
                          for i in readers.get(t, ()))
                   or (isinstance(qnet.layers[t - 1], QuantizedMaxPool2d)
                       and qnet.reads[t - 1][0] not in held)}
        if not refused:
            return held
        held -= refused


def _pool_step(maps, name, layer, source, out_shape):
    """Append the max pool `layer` of the image `source` (after its border, if padded) as
    step `name`; return where its output is held."""
    if source.image is None:
        raise MappingError(f"layer {layer.name!r}: pooling runs on an image a Conv2d "
                           f"left on the device; this one comes from the host")
    if any(layer.pads):
        source = _pad_step(maps, f"{name}.pad", source, layer.pads, COPY)
    producer, pitch, _ = source.image
    out_h, out_w = out_shape[:2]
    pool = PoolMap(name, layer.size, out_h, out_w, pitch, producer.output_entries,
                   producer.positions * producer.output_entries, layer.stride, source.tensor)
    maps.append(pool)
    return _Held(len(maps), (pool, out_w, out_w), tuple(out_shape))


class _Addressing(NamedTuple):
    """How a matrix layer's jobs read their input: the source it reads, each K block's
    entry offset and tensor, positions and their stride, runs, entries a sample, and the
    geometry a convolution on an on-device image needs."""
    source: object
    k_offsets: list
    k_tensors: list
    groups: dict
    positions: int
    stride: int
    runs: list
    entries: int
    row_runs: list = None
    pitch: int = None
    window: tuple = None


def _addressing(maps, layer, source, inputs, out_shape, kb, rows):
    """The `_Addressing` of a matrix layer reading `source` (`inputs`: what a merge reads):
    merged or concatenated parts; vectors the host writes; or an on-device image, read
    in place through its taps (padded first by a PAD step where the layer pads)."""
    if isinstance(source, _Parts) or isinstance(layer, QuantizedMerge):
        sources, channels = ((source.parts, source.channels) if isinstance(source, _Parts)
                             else (inputs, layer.parts))
        parts, k_offsets, k_tensors, groups, positions, stride, runs, entries, row_runs = \
            _merge_inputs(maps, layer.name, sources, channels, rows)
        source = parts[0]
        if entries is None:                              # vectors: one entry run a sample
            entries = tensor_entries(maps, source.tensor)
        return _Addressing(source, k_offsets, k_tensors, groups, positions, stride, runs,
                           entries, row_runs, source.image and source.image[1])
    if source.image is None:                             # the host writes the vectors
        conv = isinstance(layer, QuantizedConv2d)
        positions = int(np.prod(out_shape[:-1])) if conv else 1
        return _Addressing(source, list(range(kb)), [source.tensor] * kb, {}, positions, kb,
                           [(positions, 0, 0)], positions * kb,
                           # bands of positions: each a vector
                           [(1, p * kb, p) for p in range(positions)] if conv else None)
    if isinstance(layer, QuantizedConv2d) and any(layer.pads):
        source = _pad_step(maps, f"{layer.name}.pad", source, layer.pads, layer.input.zero_point)
    producer, pitch, _ = source.image
    group = producer.output_entries
    row_runs = window = None
    if isinstance(layer, QuantizedConv2d):
        (kh, kw), s = layer.kernel, layer.stride
        out_h, out_w = out_shape[:2]
        taps = [ky * pitch + kx for ky in range(kh) for kx in range(kw)]
        positions, stride = (out_h - 1) * pitch + out_w, s * group
        # One run per output row: the wide columns past out_w are not computed.
        runs = row_runs = [(out_w, y * s * pitch * group, y * pitch) for y in range(out_h)]
        window = (kh, kw, s)
    else:
        height, width = source.shape[:2]                # the image Flatten took
        taps = [y * pitch + x for y in range(height) for x in range(width)]
        positions, stride, runs, pitch = 1, 1, [(1, 0, 0)], None
    k_offsets = [tap * group + b for tap in taps for b in range(group)]
    return _Addressing(source, k_offsets, [source.tensor] * len(k_offsets), {}, positions,
                       stride, runs, producer.positions * group, row_runs, pitch, window)


def _requant_classes(layer, source, positions, out_shape):
    """An average pool's divisor class per output position (-1 where none), or None."""
    classes = getattr(layer, "classes", None)
    if classes is None:
        return None
    row_pitch = source.image[1] if source.image is not None else out_shape[1]
    requant_classes = np.full(positions, -1)
    for y in range(out_shape[0]):
        requant_classes[y * row_pitch:y * row_pitch + out_shape[1]] = classes[y]
    return requant_classes


def _matrix_step(maps, layer, source, inputs, out_shape, layout, config, samples,
                 fault_layout):
    """The LayerMap of a matrix layer (appended to `maps`) and where its output is held."""
    R, C = config.rows, config.cols
    row_index, padded_rows = layout
    padded = padded_matrix(layer.weights, row_index, padded_rows, C)
    kb, nb = padded.shape[0] // R, padded.shape[1] // C
    nonzero = padded.reshape(kb, R, nb, C).any(axis=(1, 3))
    cells = int(nonzero.sum()) * R * C
    a = _addressing(maps, layer, source, inputs, out_shape, kb, R)
    step = len(maps)
    if len(a.k_offsets) != kb:
        raise MappingError(f"layer {layer.name!r}: its {kb} K blocks do not match the "
                           f"{len(a.k_offsets)} entries its inputs hold a position")
    k_inputs = {b: t for b, t in enumerate(a.k_tensors) if t != step}
    lm = LayerMap(layer.name, kb, nb, nonzero, padded, row_index,
                  np.count_nonzero(padded) / cells if cells else 0.0,
                  a.positions, a.k_offsets, a.stride, a.entries, _blocks(nb * C, R), a.runs,
                  k_inputs, row_runs=a.row_runs,
                  requant_classes=_requant_classes(layer, a.source, a.positions, out_shape),
                  class_count=len(getattr(layer, "class_params", ())) or 1,
                  source_groups=a.groups, pitch=a.pitch, window=a.window,
                  fault_layout=fault_layout)
    lm.jobs = plan_jobs(lm, step, config, samples)
    maps.append(lm)
    if len(out_shape) == 3:                              # a convolution or an image merge
        pitch = a.source.image[1] if a.source.image is not None else out_shape[1]
        return _Held(step + 1, (lm, pitch, out_shape[1]), out_shape)
    return _Held(step + 1)


def lower(qnet, config, samples=None, fault_layout=None):
    """LayerMaps and PoolMaps (and PadMaps) without memory bases, in execution order:
    blocks, positions, input addressing and jobs (shaped for `samples` a batch, see
    `plan_jobs`; `fault_layout` as `LayerMap`'s). Steps and tensors follow
    the network's graph: each step reads the tensors its layer reads, where their
    producers left them."""
    layouts = matrix_row_layout(qnet, config.rows)
    _check_ending(qnet)
    maps = []
    held = {0: _Held(0)}         # network tensor -> where it is held
    as_parts = _layout_concats(qnet, config.rows)
    for index, (layer, tensors) in enumerate(zip(qnet.layers, qnet.reads)):
        source = held[tensors[0]]
        out_shape = qnet.shapes[index + 1]
        if isinstance(layer, QuantizedFlatten):          # a layout, no work
            held[index + 1] = source
        elif index + 1 in as_parts and isinstance(layer, QuantizedMaxPool2d):
            held[index + 1] = _Parts(tuple(
                _pool_step(maps, f"{layer.name}.part{i}", layer, part, (*out_shape[:2], c))
                for i, (part, c) in enumerate(zip(source.parts, source.channels))),
                source.channels)
        elif index + 1 in as_parts:                      # a Concat: its inputs, as they are
            inputs = [held[t] if isinstance(held[t], _Parts) else
                      _Parts((held[t],), (qnet.shapes[t][2],)) for t in tensors]
            held[index + 1] = _Parts(
                tuple(_one_geometry(maps, layer.name, [p for h in inputs for p in h.parts])),
                tuple(c for h in inputs for c in h.channels))
        elif isinstance(layer, QuantizedMaxPool2d):
            held[index + 1] = _pool_step(maps, layer.name, layer, source, out_shape)
        else:
            held[index + 1] = _matrix_step(maps, layer, source, [held[t] for t in tensors],
                                           out_shape, layouts[layer.name], config, samples,
                                           fault_layout)
    readers = [s for s in range(len(maps)) if 0 in step_inputs(maps, s)]
    if readers != [0]:
        raise MappingError(f"layer {maps[readers[-1]].name!r}: reads the network's input, which "
                           f"the host writes once, laid out for the first layer")
    return maps


def _window(tensor, offset, entries, piece=None, counts=(), strides=(), device_strides=()):
    """A band's share of one sample's tensor, as the `Transfer` that moves it, its amem
    base (and the tensor's size) left for the compiler to place."""
    return Transfer(tensor, 0, entries, offset, None, piece, counts, strides, device_strides)


def _rect(tensor, pitch, group, y, x, height, width, device_pitch=None):
    """The window of `height` x `width` pixels from (y, x) of an image of `pitch` pixels a
    row and `group` entries a pixel, on the device in rows of `device_pitch` pixels: a
    piece a row, or one run where the rows follow each other on both sides."""
    device_pitch = device_pitch or width
    entries = ((height - 1) * device_pitch + width) * group
    if height == 1 or pitch == width == device_pitch:
        return _window(tensor, (y * pitch + x) * group, entries)
    return _window(tensor, (y * pitch + x) * group, entries, width * group, (height,),
                   (pitch * group,), (device_pitch * group,))


@dataclass(frozen=True)
class Band:
    """A tile of one step's output, run on its own: rows ``rows[0] .. rows[1] - 1`` and
    columns ``cols[0] .. cols[1] - 1`` (a host-fed convolution's: output positions, no
    columns). `step` is the step's map for just the tile; it reads the `inputs` windows
    (the pixels its kernel windows cover, halo included) and writes the `output` window,
    each a `Transfer` the compiler places."""
    rows: tuple
    step: object
    inputs: tuple
    output: Transfer
    index: tuple = (0, 1)        # (band, bands) of the step
    cols: tuple = None
    channels: tuple = None       # output blocks ``channels[0] .. channels[1] - 1`` (None: all)
    k_blocks: tuple = None       # a Dense's K blocks ``k_blocks[0] ..`` (None: all); its
                                 # partial sums stay in psum from band to band

    @property
    def output_entries(self):
        return self.output.entries

    @property
    def writes_output(self):
        """Whether it leaves output for the host (a Dense's K bands: only the last)."""
        return self.k_blocks is None or self.index[0] == self.index[1] - 1

    @property
    def shape(self):
        """What makes two bands' programs differ: their size and each window's."""
        return (self.rows[1] - self.rows[0], self.cols and self.cols[1] - self.cols[0],
                tuple(w.entries for w in self.inputs), self.output.entries,
                getattr(self.step, "pads", None),
                self.channels and self.channels[1] - self.channels[0],
                self.k_blocks and self.k_blocks[1] - self.k_blocks[0])


def output_rows(step):
    """How many output rows a step makes, if it can run in bands of them (else None): a
    convolution's (reading an image; a host-fed one's bands are of its output positions,
    each an independent vector), a merge's of images, a pool's, a border's."""
    if isinstance(step, LayerMap):
        return len(step.row_runs) if step.row_runs else None
    return step.out_h


def output_cols(step):
    """How many output columns a step that runs in bands makes, if its bands can also be
    cut into columns (else None: a host-fed convolution's bands are of positions)."""
    if isinstance(step, LayerMap):
        return None if step.pitch is None else step.row_runs[0][0]
    return step.out_w


def _band_jobs(step, key, plan):
    """The jobs of `step`'s tiles of one kind (`key`): `plan()`, planned once."""
    if key not in step.band_jobs:
        step.band_jobs[key] = plan()
    return step.band_jobs[key]


def _pad_band(step, s, rows, cols):
    """A border's tile: the input pixels inside it, the border around them."""
    (first, last), (x0, x1) = rows, cols
    top, left, bottom, right = step.pads
    y_start, y_stop = max(0, first - top), min(step.in_h, last - top)
    x_start, x_stop = max(0, x0 - left), min(step.in_w, x1 - left)
    output = _rect(s + 1, step.out_w, step.group, first, x0, last - first, x1 - x0)
    if y_stop <= y_start or x_stop <= x_start:  # border only: the fill, no input
        pad = replace(step, in_h=0, in_w=0, pads=(last - first, x1 - x0, 0, 0), input_entries=0)
        return pad, (), output
    height, width = y_stop - y_start, x_stop - x_start
    pad = replace(step, in_h=height, in_w=width, pitch=width, input_entries=height * width * step.group,
                  pads=(y_start + top - first, x_start + left - x0,
                        last - (y_stop + top), x1 - (x_stop + left)))
    return pad, (_rect(step.input_tensor, step.pitch, step.group, y_start, x_start, height,
                       width),), output


def _pool_band(step, s, rows, cols):
    """A max pool's tile: the input its windows cover, compact."""
    (first, last), (x0, x1) = rows, cols
    k, stride, group = step.size, step.stride, step.group
    height, width = (last - 1 - first) * stride + k, (x1 - 1 - x0) * stride + k
    pool = replace(step, out_h=last - first, out_w=x1 - x0, pitch=width,
                   input_entries=height * width * group)
    return pool, (_rect(step.input_tensor, step.pitch, group, first * stride, x0 * stride,
                        height, width),), \
        _rect(s + 1, step.out_w, group, first, x0, last - first, x1 - x0)


def _merge_band(step, s, rows, cols):
    """A merge's tile: the same pixels of each input, compact."""
    (first, last), (x0, x1) = rows, cols
    height, width = last - first, x1 - x0
    band = replace(step, positions=height * width, sample_runs=[(height * width, 0, 0)],
                   input_entries=height * width, row_runs=None, pitch=width)
    inputs = tuple(_rect(t, step.pitch, group, first, x0, height, width)
                   for t, group in step.source_groups.items())
    return band, inputs, _rect(s + 1, step.pitch, step.output_entries, first, x0, height, width)


def _conv_band(step, s, rows, cols, config, samples):
    """A convolution's tile: the input its windows cover, compact, in rows of `width`
    pixels; its output positions keep that pitch (wide rows). The taps move with the
    pitch, so its jobs are planned again."""
    (first, last), (x0, x1) = rows, cols
    (kh, kw), stride = step.window[:2], step.window[2]
    group = step.position_stride // stride
    height, width = (last - 1 - first) * stride + kh, (x1 - 1 - x0) * stride + kw
    out_h, out_w = last - first, x1 - x0

    def moved(offset):                     # an input entry's offset at the tile's pitch
        tap, entry = divmod(offset, group)
        return (tap // step.pitch * width + tap % step.pitch) * group + entry
    runs = _coalesced([(out_w, y * stride * width * group, y * width) for y in range(out_h)],
                      step.position_stride)
    classes = step.requant_classes
    if classes is not None:
        tile = np.full((out_h - 1) * width + out_w, -1)
        for y in range(out_h):
            start = (first + y) * step.pitch + x0
            tile[y * width:y * width + out_w] = classes[start:start + out_w]
        classes = tile
    band = replace(step, positions=(out_h - 1) * width + out_w, sample_runs=runs,
                   k_offsets=[moved(o) for o in step.k_offsets], pitch=width,
                   input_entries=height * width * group, row_runs=None, requant_classes=classes)
    band.jobs = _band_jobs(step, (width, None), lambda: plan_jobs(band, s, config, samples))
    (tensor,) = {step.k_inputs.get(kb, s) for kb in range(step.k_blocks)}
    return band, (_rect(tensor, step.pitch, group, first * stride, x0 * stride, height, width),), \
        _rect(s + 1, step.pitch, step.output_entries, first, x0, out_h, out_w, width)


def _pixel_channels(window, group, first, count):
    """A window of whole pixels (`group` entries each, in rows) cut to `count` entries
    from `first` of each pixel: a piece a pixel."""
    if window.counts:
        (height,), (stride,), (device_stride,) = window.counts, window.strides, window.device_strides
        width = window.piece // group
    else:                                   # one run of pixels: one row of them
        height, width = 1, window.entries // group
        stride = device_stride = window.entries
    return _window(window.tensor, window.offset + first, window.entries // group * count, count,
                   (height, width), (stride, group), (device_stride // group * count, count))


def _channel_band(step, s, band, inputs, output, channels, config, samples):
    """A convolution tile's output blocks `channels` on their own: the K blocks they
    need, which read a contiguous range of each input pixel's entries, from just those
    entries (a global pool's output blocks each read one)."""
    R, C = config.rows, config.cols
    n0, n1 = channels
    (window,) = inputs
    group = band.position_stride // step.window[2]
    needed = [kb for kb in range(band.k_blocks) if band.nonzero[kb, n0:n1].any()] or [0]
    entries = {band.k_offsets[kb] % group for kb in needed}
    e0, width = min(entries), max(entries) + 1 - min(entries)
    kept = [kb for kb in range(band.k_blocks) if e0 <= band.k_offsets[kb] % group < e0 + width]
    moved = lambda offset: offset // group * width + offset % group - e0
    rows = np.concatenate([np.arange(kb * R, (kb + 1) * R) for kb in kept])
    out_group, out_entries = step.output_entries, _blocks((n1 - n0) * C, R)
    sub = replace(band, k_blocks=len(kept), n_blocks=n1 - n0,
                  nonzero=band.nonzero[kept][:, n0:n1], weights=band.weights[rows][:, n0 * C:n1 * C],
                  k_offsets=[moved(band.k_offsets[kb]) for kb in kept],
                  k_inputs={i: band.k_inputs[kb] for i, kb in enumerate(kept) if kb in band.k_inputs},
                  position_stride=band.position_stride // group * width,
                  input_entries=band.input_entries // group * width, output_entries=out_entries,
                  sample_runs=[(count, offset // group * width, position)
                               for count, offset, position in band.sample_runs], n_first=n0)
    sub.jobs = _band_jobs(step, (band.pitch, channels), lambda: plan_jobs(sub, s, config, samples))
    return (sub, (_pixel_channels(window, group, e0, width),),
            _pixel_channels(output, out_group, n0 * C // R, out_entries))


def _positions_band(step, s, first, last):
    """A host-fed convolution's band of output positions, each its own input vector."""
    runs = step.row_runs[first:last]
    in_offset = runs[0][1]
    runs = _coalesced([(count, offset - in_offset, position - first)
                       for count, offset, position in runs], step.position_stride)
    positions = runs[-1][2] + runs[-1][0]
    reach = runs[-1][1] + (runs[-1][0] - 1) * step.position_stride + max(step.k_offsets) + 1
    band = replace(step, positions=positions, sample_runs=runs, input_entries=reach,
                   row_runs=None)
    return band, (_window(0, in_offset, reach),), \
        _window(s + 1, first * step.output_entries, positions * step.output_entries)


def _coalesced(runs, stride):
    """`runs` with each one that continues the one before (its next input and position)
    joined to it."""
    joined = [runs[0]]
    for count, offset, position in runs[1:]:
        last_count, last_offset, last_position = joined[-1]
        if offset == last_offset + last_count * stride and position == last_position + last_count:
            joined[-1] = (last_count + count, last_offset, last_position)
        else:
            joined.append((count, offset, position))
    return joined


def band_step(network_map, s, rows, cols=None, channels=None):
    """The `Band` of output rows ``rows[0] .. rows[1] - 1`` of step `s` (see `output_rows`),
    of its output columns `cols` (all of them when None; see `output_cols`) and, for a
    convolution, of its output blocks `channels` (all when None)."""
    step = network_map.steps[s]
    width = output_cols(step)
    if width is None:
        return Band(rows, *_positions_band(step, s, *rows))
    cols = cols or (0, width)
    if isinstance(step, PadMap):
        parts = _pad_band(step, s, rows, cols)
    elif isinstance(step, PoolMap):
        parts = _pool_band(step, s, rows, cols)
    elif step.source_groups:
        parts = _merge_band(step, s, rows, cols)
    else:
        parts = _conv_band(step, s, rows, cols, network_map.config, network_map.samples)
        if channels is not None:
            parts = _channel_band(step, s, *parts, channels, network_map.config,
                                  network_map.samples)
    return Band(rows, *parts, cols=cols, channels=channels)


def input_bands(step):
    """Whether a step can run in bands of its input: a Dense layer's K blocks (reading
    one tensor, in order), each band adding to the partial sums the one before left."""
    return (isinstance(step, LayerMap) and step.positions == 1 and not step.source_groups
            and not step.k_inputs and step.k_offsets == sorted(step.k_offsets))


def input_band(network_map, s, k_blocks):
    """The `Band` of a Dense step `s` (see `input_bands`) that adds K blocks
    ``k_blocks[0] .. k_blocks[1] - 1`` into its partial sums: it reads the input entries
    they cover; every job accumulates (the host zeroes the partial sums before the first
    band) and only the last band requantises and writes the output."""
    step, R = network_map.steps[s], network_map.config.rows
    k0, k1 = k_blocks
    first, last = step.k_offsets[k0], step.k_offsets[k1 - 1] + 1
    rows = np.arange(k0 * R, k1 * R)
    sub = replace(step, k_blocks=k1 - k0, nonzero=step.nonzero[k0:k1], weights=step.weights[rows],
                  k_offsets=[offset - first for offset in step.k_offsets[k0:k1]],
                  input_entries=last - first)
    sub.jobs = _band_jobs(step, ("k", k_blocks), lambda: [
        replace(job, accumulate=True)
        for job in plan_jobs(sub, s, network_map.config, network_map.samples)])
    return Band((0, 1), sub, (_window(step.k_inputs.get(0, s), first, last - first),),
                _window(s + 1, 0, step.output_entries), k_blocks=k_blocks)


def channel_bands(step):
    """Whether a step's output blocks can run in bands of their own: a convolution's."""
    return isinstance(step, LayerMap) and step.window is not None


def segment_steps(steps, segment):
    """`steps` as `segment` runs them: a band's step in place of the whole one."""
    if segment.band is None:
        return steps
    steps, s = list(steps), segment.steps[0]
    band = segment.band.step
    if isinstance(band, LayerMap):        # the ADC ranges calibrated after the bands were cut
        band = replace(band, adc_shift=steps[s].adc_shift, offset_inputs=steps[s].offset_inputs)
    steps[s] = band
    return steps


def step_inputs(steps, s):
    """The tensors step `s` reads."""
    step = steps[s]
    if isinstance(step, LayerMap):
        return {step.k_inputs.get(kb, s) for kb in range(step.k_blocks)}
    return {step.input_tensor}


def _power_of_two_runs(items, fits):
    """`items` cut greedily into runs whose lengths are powers of two, each run as long as
    `fits(run)` allows."""
    runs, i = [], 0
    while i < len(items):
        length = 1
        while i + 2 * length <= len(items) and fits(items[i:i + 2 * length]):
            length *= 2
        runs.append(items[i:i + length])
        i += length
    return runs


def plan_jobs(lm, step, config, samples=None):
    """The layer's jobs: output blocks in groups of up to ``ngroups`` (consecutive), and
    per group its stored K blocks in runs of up to ``ktiles`` whose inputs are evenly
    spaced entries of one tensor, each job replicated over tiles it leaves free. The
    shape (the most K blocks and output blocks a job takes, and each job's replicas) is
    the one the golden timing model finds fastest for the layer at `samples` samples a
    batch (by default as many as the activation memory holds of its input and output):
    a round of an MVM feeds ``replicas x ktiles`` inputs and writes ``replicas x
    ngroups`` partial sums, one a cycle, while its tiles convert, so the widest job is
    not the fastest. The widest K-reduction (then the most output blocks) stays unless
    its rounds outlast a conversion (`starves`) and another shape saves more than 1 % of
    the layer's cycles: it writes the fewest partial sums, so it spends less energy. A
    group's blocks that are zero while another output block of the group needs that K
    block are computed as zeros (only when ngroups > 1)."""
    samples = samples or _samples_estimate(lm, config)
    if lm.samples_contiguous:
        counts = {samples * lm.positions: 1}
    else:
        counts = {}
        for count, _, _ in lm.sample_runs:
            counts[count] = counts.get(count, 0) + samples
    if lm.fault_layout == "pair":   # one K block a job, on two tiles; output blocks searched
        shapes = [_shaped_jobs(lm, step, 1, 1 << glog, config, counts)
                  for glog in range(_power_of_two_at_most(
                      min(lm.n_blocks, max(1, config.tiles // 2))).bit_length())]
        return min(shapes, key=lambda jobs: (sum(_job_cycles(config, job, counts)
                                                 for job in jobs), len(jobs)))
    k_first = _k_first(lm, config)
    if not starves(lm, config):
        return _shaped_jobs(lm, step, *k_first, config, {})       # replicas fill the tiles
    jobs = _shaped_jobs(lm, step, *k_first, config, counts)
    k_first_cycles = sum(_job_cycles(config, job, counts) for job in jobs)
    best = (k_first_cycles, len(jobs)), jobs
    for klog in range(_power_of_two_at_most(min(lm.k_blocks, config.tiles)).bit_length()):
        tiles_left = config.tiles >> klog
        for glog in range(_power_of_two_at_most(min(lm.n_blocks, tiles_left)).bit_length()):
            if (1 << klog, 1 << glog) == k_first:
                continue
            shaped = _shaped_jobs(lm, step, 1 << klog, 1 << glog, config, counts)
            key = (sum(_job_cycles(config, job, counts) for job in shaped), len(shaped))
            best = min(best, (key, shaped), key=lambda shape: shape[0])
    return best[1] if best[0][0] < SHAPE_GAIN * k_first_cycles else jobs


def _k_first(lm, config):
    """(ktiles, ngroups) at most of the widest K-reduction: as many K blocks as the
    tiles take, then as many output blocks as the tiles left take."""
    ktiles = min(_power_of_two_at_most(lm.k_blocks), _power_of_two_at_most(config.tiles))
    return ktiles, min(_power_of_two_at_most(lm.n_blocks),
                       _power_of_two_at_most(config.tiles // ktiles))


def starves(lm, config):
    """Whether the widest K-reduction, replicated over the tiles left, has rounds that
    outlast a conversion (its feeds or writes, one a cycle, take longer): only then may
    another shape be faster, and only then are shapes searched (compile time); else the
    jobs are those widest K-reductions with as many replicas as the tiles hold."""
    ktiles, ngroups = _k_first(lm, config)
    replicas = _power_of_two_at_most(config.tiles // (ktiles * ngroups))
    return (mvm_round_cycles(config, ktiles, ngroups, replicas)
            > config.steps * config.adc_share)


SHAPE_GAIN = 0.99           # a shape other than the widest K-reduction must be this fast


def _samples_estimate(lm, config):
    """Samples a batch that the layer's own tensors and partial sums leave room for."""
    amem = lm.input_entries + lm.positions * lm.output_entries
    psum = lm.positions * lm.n_blocks
    most_vectors = (1 << isa.FIELDS["count"][1]) - 1
    return max(1, min(config.amem_depth // max(amem, 1), config.psum_depth // max(psum, 1),
                      most_vectors // lm.positions))


def _job_cycles(config, job, counts):
    """Cycles of one job: its PROGRAM and its MVM runs (``counts``: vectors -> runs)."""
    return (FETCH_DECODE_CYCLES + program_cycles(config)
            + sum(runs * (FETCH_DECODE_CYCLES + mvm_cycles(config, count, job.ktiles,
                                                           job.ngroups, job.replicas))
                  for count, runs in counts.items()))


def _shaped_jobs(lm, step, ktiles, ngroups, config, counts):
    """The jobs of one shape, each with the replicas that make it fastest for `counts`
    (vectors -> runs), or, with no counts, with as many replicas as the tiles hold."""
    stored = [nb for nb in range(lm.n_blocks) if lm.nonzero[:, nb].any()]
    groups = {}
    for nb in stored:
        groups.setdefault(nb // ngroups, []).append(nb)
    source = lambda kb: lm.k_inputs.get(kb, -1)
    jobs = []
    for members in groups.values():
        consecutive = lambda run: run[-1] - run[0] == len(run) - 1 and len(run) <= ngroups
        for nbs in _power_of_two_runs(members, consecutive):
            kbs = [kb for kb in range(lm.k_blocks) if lm.nonzero[kb, nbs].any()]

            def spaced(run):
                offsets = [lm.k_offsets[kb] for kb in run]
                steps = {b - a for a, b in zip(offsets, offsets[1:])}
                return (len(run) <= ktiles and len({source(kb) for kb in run}) == 1
                        and len(steps) == 1 and min(steps) >= 0)
            for i, run in enumerate(_power_of_two_runs(kbs, spaced)):
                if lm.fault_layout == "pair":
                    run = [kb for kb in run for _ in range(2)]
                # Replicas share their block's requantisation, whose bias is written for one
                # tile's stuck cells: none then.
                most = 1 if lm.fault_layout else _power_of_two_at_most(
                    config.tiles // (len(run) * len(nbs)))
                shapes = [Job(step, tuple(run), tuple(nbs), 1 << r, i > 0)
                          for r in range(most.bit_length())]
                jobs.append(min(shapes, key=lambda job: _job_cycles(config, job, counts))
                            if counts else shapes[-1])
    return jobs


@dataclass
class Segment:
    """One device program: whole steps, or one chunk of a matrix layer's jobs."""
    steps: tuple                 # step indices, in order
    jobs: dict                   # matrix step -> the Jobs this segment runs, in order
    requants: dict               # matrix step -> output blocks requantised here
    zero_columns: dict           # matrix step -> all-zero output blocks (psum zeroed by host)
    limit: str = "end"           # what closed it: a memory's name, or the end of a layer or network
    part: tuple = None           # (chunk, chunks) of a split layer
    input_at_top: bool = False   # its input tensor at the top of amem (output at the bottom)
    band: Band = None            # one step's tile of output rows and columns, its tensors
                                 # through the host

    @property
    def slots(self):
        """wmem slots (``rows`` entries each, a lane per tile): one per job."""
        return sum(len(jobs) for jobs in self.jobs.values())

    @property
    def blocks(self):
        """Stored weight blocks its jobs compute."""
        return sum(job.ktiles * job.ngroups for jobs in self.jobs.values() for job in jobs)


def tensor_entries(steps, tensor):
    """Activation entries of one sample of `tensor` (the output of step ``tensor - 1``;
    tensor 0 is the input the host writes for step 0)."""
    if tensor == 0:
        return steps[0].input_entries
    return steps[tensor - 1].positions * steps[tensor - 1].output_entries


def segment_tensors(steps, segment):
    """The tensors a segment touches: its input, skips it reads (made by earlier
    segments), inner ones, its output."""
    first, last = segment.steps[0], segment.steps[-1]
    if segment.band is not None:                 # one step: its inputs, its output
        inputs = [w.tensor for w in segment.band.inputs] or [first]   # (a border's: none)
        return inputs[:1], inputs[1:], [], [first + 1]
    skips = sorted({t for s in segment.steps for t in step_inputs(steps, s) if t < first})
    inner = list(range(first + 1, last + 1))
    return [first], skips, inner, [last + 1]


@dataclass
class Placement:
    """Where a segment's data sits for a batch: amem base of each tensor, psum base of
    each matrix step, wmem slot and first tile of each job, qmem entry of each requantised
    block."""
    batch: int
    tensor_base: dict            # tensor -> amem entry of (sample 0, entry 0)
    psum_base: dict              # matrix step -> psum entry of (sample 0, position 0, nb 0)
    slot: dict                   # Job -> wmem slot (its rows in every lane it uses)
    first_tile: dict             # Job -> the first tile of its range
    qentry: dict                 # (step, nb, class) -> qmem entry
    amem_used: int
    psum_used: int
    sample_entries: dict         # tensor -> its amem entries a sample
    constant_base: int = 0       # amem entry of the first constant entry
    constants: tuple = ()        # the value filling every lane of each constant entry
    resident: bool = False       # jobs on tiles of their own, programmed once


def segment_constants(steps, segment):
    """The constant entries a segment's steps read (each: one value in every lane)."""
    return tuple(sorted({value for s in segment.steps
                         for value in getattr(steps[s], "constants", ())}))


def resident_tiles(segment):
    """First tiles that give each job (unreplicated) a range of its own, aligned to its
    ktiles, and the tiles they need: when these fit, the tiles are programmed once."""
    first, cursor = {}, 0
    for jobs in segment.jobs.values():
        for job in jobs:
            cursor = -(-cursor // job.ktiles) * job.ktiles
            first[job], cursor = cursor, cursor + job.ktiles * job.ngroups
    return first, cursor


def place_segment(steps, segment, batch, amem_depth, resident=False):
    """Lay one segment out for `batch` samples: its input tensor at one end of the
    activation memory, its output at the other (which end alternates from segment to
    segment), skips and inner tensors in between. Each job has a wmem slot of its own
    and runs from tile 0, or, `resident`, every job has its own tiles and slot 0."""
    steps = segment_steps(steps, segment)
    (t_in,), skips, inner, (t_out,) = segment_tensors(steps, segment)
    sample = {t: tensor_entries(steps, t) for t in [t_in, *skips, *inner, t_out]}
    if segment.band is not None:
        sample.update({w.tensor: w.entries for w in segment.band.inputs} or {t_in: 0})
        sample[t_out] = segment.band.output.entries
    size = {t: batch * entries for t, entries in sample.items()}
    bottom, top = (t_out, t_in) if segment.input_at_top else (t_in, t_out)
    bases, cursor = {}, 0
    for t in [bottom, *skips, *inner]:
        bases[t], cursor = cursor, cursor + size[t]
    bases[top] = amem_depth - size[top]
    constants = segment_constants(steps, segment)
    constant_base = cursor
    cursor += len(constants)
    psum_base, psum = {}, 0
    for s in segment.steps:
        if isinstance(steps[s], LayerMap):
            psum_base[s] = psum
            psum += batch * steps[s].positions * steps[s].n_blocks
    jobs = [job for step_jobs in segment.jobs.values() for job in step_jobs]
    if resident:
        slot, first_tile = dict.fromkeys(jobs, 0), resident_tiles(segment)[0]
    else:
        slot, first_tile = {job: i for i, job in enumerate(jobs)}, dict.fromkeys(jobs, 0)
    qentry = {key: i for i, key in enumerate((s, nb, c) for s, nbs in segment.requants.items()
                                             for nb in nbs for c in range(steps[s].class_count))}
    return Placement(batch, bases, psum_base, slot, first_tile, qentry,
                     sum(size.values()) + len(constants), psum, sample, constant_base, constants,
                     resident)


@dataclass
class NetworkMap:
    config: object
    steps: list                  # LayerMaps and PoolMaps in execution order
    segments: list               # Segments in execution order
    batch: int                   # samples a full batch runs
    samples: int = None          # the batch its jobs are shaped for (None: an estimate)
    segment_batches: list = None  # the most samples each segment runs at once
    fault_writes: object = None  # a fault_aware.FaultAwareWrites: weights for stuck cells

    @property
    def layers(self):
        return [step for step in self.steps if isinstance(step, LayerMap)]

    @property
    def blocks(self):
        """Weight blocks stored (and computed), over all segments."""
        return sum(lm.stored_blocks for lm in self.layers)

    @property
    def resident(self):
        """Every block has a tile of its own, so the tiles are programmed once, not per
        batch, and that is faster at this batch than reprogramming with replicas."""
        if len(self.segments) != 1 or resident_tiles(self.segments[0])[1] > self.config.tiles:
            return False
        c, jobs = self.config, [j for js in self.segments[0].jobs.values() for j in js]
        vectors = lambda job: self.batch * self.steps[job.step].positions
        held = sum(FETCH_DECODE_CYCLES + mvm_cycles(c, vectors(j), j.ktiles, j.ngroups)
                   for j in jobs)
        streamed = sum(2 * FETCH_DECODE_CYCLES + program_cycles(c)
                       + mvm_cycles(c, vectors(j), j.ktiles, j.ngroups, j.replicas) for j in jobs)
        return held <= streamed
