"""Mapping a quantised network onto the accelerator: blocks, tiles, memory layout.

Each matrix layer's int8 weight matrix (rows laid out by :mod:`firmware.layout`) is cut
into rows x cols blocks. A block that is entirely zero is never stored, programmed or
computed. The K dimension (rows) is summed in the partial sums by accumulating MVMs; the
N dimension (cols) is spread over tiles that share one input vector.

Convolutions are lowered to im2col vectors with the weights held stationary. The first
layer's patches are written by the host. A later convolution reads the image its
predecessor left in the activation memory, one entry group per pixel: each (kernel tap,
channel block) is one block of the matrix and one strided MVM per output row. Output
positions keep the input's row pitch ("wide" rows), so a layer's image is addressed
the same way whatever its valid width.
"""

from dataclasses import dataclass, field

import numpy as np

from .layout import matrix_row_layout, padded_matrix
from .network import NetworkError
from .quantize import QuantizedAdd, QuantizedConv2d, QuantizedDense, QuantizedMaxPool2d

__all__ = ["LayerMap", "PoolMap", "NetworkMap", "map_network", "input_entries", "MappingError"]


class MappingError(NetworkError):
    """The network does not fit the hardware; says which layer and which memory."""


@dataclass
class LayerMap:
    name: str
    k_blocks: int
    n_blocks: int
    nonzero: np.ndarray          # (k_blocks, n_blocks) bool
    images: dict                 # (kb, nb) -> wmem image index
    weights: np.ndarray          # int8, padded to (k_blocks*rows, n_blocks*cols)
    row_index: np.ndarray        # the padded row of each matrix row (firmware.layout)
    cell_utilisation: float      # cells of stored blocks holding a real (unpadded) weight
    positions: int               # input vectors per sample (output pixels, wide; 1 for Dense)
    k_offsets: list              # per K block: its entry in a sample's input tensor
    position_stride: int         # entries between one position's input and the next's
    input_entries: int           # entries of one sample's input tensor
    output_entries: int          # entries of one position's output (channels / rows lanes)
    sample_runs: list            # MVM runs of one sample: (count, input offset, first position)
    k_inputs: dict = field(default_factory=dict)   # K block -> step whose input tensor
                                                    # holds it, when not this layer's
    input_base: int = 0          # amem entry of sample 0's input tensor
    psum_base: int = 0           # psum entry of (sample 0, position 0, nb 0)
    qmem_base: int = 0           # qmem entry of output block 0 (cols channels an entry)

    @property
    def block_utilisation(self):
        return float(self.nonzero.mean())

    @property
    def samples_contiguous(self):
        """Whether one strided run covers every sample's positions."""
        return (len(self.sample_runs) == 1
                and self.positions * self.position_stride == self.input_entries)


@dataclass
class PoolMap:
    """Max pooling of an on-device image into a new, compact one, by MAX instructions."""
    name: str
    size: int
    out_h: int
    out_w: int
    pitch: int                   # input row pitch, in pixels
    group: int                   # entries per pixel (channels / rows lanes)
    input_entries: int
    input_base: int = 0

    @property
    def positions(self):
        return self.out_h * self.out_w

    @property
    def output_entries(self):
        return self.group


@dataclass
class NetworkMap:
    config: object
    batch: int
    layers: list                 # LayerMaps, one per matrix layer
    steps: list                  # LayerMaps and PoolMaps in execution order
    output_base: int             # amem entry of (sample 0, output entry 0)
    output_blocks: int           # amem entries of one sample's output
    images: int                  # wmem images used
    resident: bool               # every block has a tile of its own: program once
    zero_psum_entries: list = field(default_factory=list)


def _blocks(count, size):
    return -(-count // size)


def _lower(qnet, config):
    """LayerMaps and PoolMaps without memory bases: blocks, positions and input addressing."""
    R, C = config.rows, config.cols
    layouts = matrix_row_layout(qnet, R)
    if not isinstance(qnet.layers[-1], QuantizedDense) or isinstance(qnet.layers[-1], QuantizedConv2d):
        raise MappingError(f"layer {qnet.layers[-1].name!r}: the last layer must be Dense "
                           f"(the output is read back as one vector per sample)")
    maps, image = [], None       # image: (producer step, row pitch, valid width)
    consumer = {}                # layer name -> the step whose input tensor is its output
    image_of = {}                # layer name -> the image it left on the device
    previous = None              # the last layer that wrote a tensor
    for index, layer in enumerate(qnet.layers):
        if isinstance(layer, (QuantizedDense, QuantizedMaxPool2d)):
            if previous is not None:
                consumer.setdefault(previous, len(maps))
            previous = layer.name
        if isinstance(layer, QuantizedMaxPool2d):
            if image is None:
                raise MappingError(f"layer {layer.name!r}: pooling runs on an image a Conv2d "
                                   f"left on the device; this one comes from the host")
            producer, pitch, _ = image
            out_h, out_w = qnet.shapes[index + 1][:2]
            pool = PoolMap(layer.name, layer.size, out_h, out_w, pitch, producer.output_entries,
                           producer.positions * producer.output_entries)
            maps.append(pool)
            image = image_of[layer.name] = (pool, out_w, out_w)
            continue
        if not isinstance(layer, QuantizedDense):
            continue                                     # Flatten: a layout, no work
        k, n = layer.weights.shape
        row_index, padded_rows = layouts[layer.name]
        padded = padded_matrix(layer.weights, row_index, padded_rows, C)
        kb, nb = padded.shape[0] // R, padded.shape[1] // C
        nonzero = padded.reshape(kb, R, nb, C).any(axis=(1, 3))
        real = padded_matrix(np.ones((k, n), bool), row_index, padded_rows, C)
        cells = int(nonzero.sum()) * R * C
        stored_real = (real.reshape(kb, R, nb, C).sum(axis=(1, 3)) * nonzero).sum()
        out_shape = qnet.shapes[index + 1]
        k_inputs = {}
        if isinstance(layer, QuantizedAdd):
            # [x; skip] per vector or pixel: the skip blocks read the source's output where
            # the step after the source found it, at the same offsets.
            same_image = image is None or image_of.get(layer.source, (None,))[1:] == image[1:]
            if layer.source not in consumer or not same_image:
                raise MappingError(f"layer {layer.name!r}: a residual add takes an output the "
                                   f"device made, laid out like its input; {layer.source!r}'s is not")
            half = kb // 2
            k_inputs = {b: consumer[layer.source] for b in range(half, kb)}
            k_offsets = list(range(half)) * 2
            if image is None:
                positions, stride, runs, entries = 1, half, [(1, 0, 0)], half
            else:                                        # a 1x1 convolution of two images
                producer, pitch, width = image
                out_h = out_shape[0]
                positions, stride = producer.positions, half
                runs = [(width, y * pitch * half, y * pitch) for y in range(out_h)]
                entries = producer.positions * half
        elif image is None:                              # the host writes the vectors
            positions = int(np.prod(out_shape[:-1])) if isinstance(layer, QuantizedConv2d) else 1
            k_offsets, stride, entries = list(range(kb)), kb, positions * kb
            runs = [(positions, 0, 0)]
        else:
            producer, pitch, _ = image
            group = producer.output_entries
            if isinstance(layer, QuantizedConv2d):
                (kh, kw), s = layer.kernel, layer.stride
                out_h, out_w = out_shape[:2]
                taps = [ky * pitch + kx for ky in range(kh) for kx in range(kw)]
                positions, stride = (out_h - 1) * pitch + out_w, s * group
                # One run per output row: the wide columns past out_w are not computed.
                runs = [(out_w, y * s * pitch * group, y * pitch) for y in range(out_h)]
            else:
                height, width = qnet.shapes[index - 1][:2]    # the image Flatten took
                taps = [y * pitch + x for y in range(height) for x in range(width)]
                positions, stride, runs = 1, 1, [(1, 0, 0)]
            k_offsets = [tap * group + b for tap in taps for b in range(group)]
            entries = producer.positions * group
        lm = LayerMap(layer.name, kb, nb, nonzero, {}, padded, row_index,
                      stored_real / cells if cells else 0.0,
                      positions, k_offsets, stride, entries, _blocks(nb * C, R), runs, k_inputs)
        maps.append(lm)
        if len(out_shape) == 3:                          # a convolution or an image add
            pitch = image[1] if image is not None else out_shape[1]
            image = image_of[layer.name] = (lm, pitch, out_shape[1])
        else:
            image = None
    return maps


def map_network(qnet, config, batch=None):
    """Lay `qnet` out on `config`; `batch` defaults to the largest that fits."""
    R = config.rows
    steps = _lower(qnet, config)
    layers = [step for step in steps if isinstance(step, LayerMap)]
    image = 0
    for lm in layers:
        for block in zip(*np.nonzero(lm.nonzero)):
            lm.images[tuple(int(i) for i in block)] = image
            image += 1
        if image * R > config.wmem_depth:
            raise MappingError(f"layer {lm.name!r}: its weight blocks bring the images to "
                               f"{image} x {R} rows, beyond wmem_depth {config.wmem_depth}")

    entries = 0
    for lm in layers:
        lm.qmem_base = entries
        entries += lm.n_blocks
        if entries > config.qmem_depth:
            raise MappingError(f"layer {lm.name!r}: {entries} entries of quantisation "
                               f"parameters exceed qmem_depth {config.qmem_depth}")

    output_blocks = layers[-1].output_entries
    amem_per_sample = sum(step.input_entries for step in steps) + output_blocks
    psum_per_sample = sum(lm.positions * lm.n_blocks for lm in layers)
    largest = min(config.amem_depth // amem_per_sample, config.psum_depth // psum_per_sample,
                  (1 << 16) - 1)
    if largest < 1:
        worst = max(layers, key=lambda lm: lm.input_entries + lm.positions * lm.n_blocks)
        raise MappingError(f"layer {worst.name!r}: one sample needs {amem_per_sample} activation "
                           f"and {psum_per_sample} partial-sum entries, the memories hold "
                           f"{config.amem_depth} and {config.psum_depth}")
    batch = largest if batch is None else batch
    if not 1 <= batch <= largest:
        raise MappingError(f"batch must be in 1..{largest} for this network and config, not {batch}")

    amem, psum = 0, 0
    for step in steps:
        step.input_base = amem
        amem += batch * step.input_entries
    for lm in layers:
        lm.psum_base = psum
        psum += batch * lm.positions * lm.n_blocks
    zero_psum = [lm.psum_base + (s * lm.positions + p) * lm.n_blocks + n for lm in layers
                 for n in range(lm.n_blocks) if not lm.nonzero[:, n].any()
                 for s in range(batch) for p in range(lm.positions)]
    return NetworkMap(config, batch, layers, steps, amem, output_blocks, image,
                      resident=image <= config.tiles, zero_psum_entries=zero_psum)


def input_entries(qnet, network_map, x_q):
    """The amem image of a batch of int8 inputs: the first layer's vectors (im2col
    patches for a convolution), each padded to whole entries."""
    first = network_map.layers[0]
    R = network_map.config.rows
    x_q = np.asarray(x_q, np.int64)
    if len(qnet.input_shape) > 1 and x_q.ndim == 2:
        x_q = x_q.reshape(len(x_q), *qnet.input_shape)
    layer = qnet.matrix_layers()[0]
    for earlier in qnet.layers[:qnet.layers.index(layer)]:
        x_q = earlier.forward(x_q)                       # a leading Flatten
    vectors = layer.patches(x_q).reshape(-1, layer.weights.shape[0])
    padded = np.zeros((len(vectors), first.k_blocks * R), np.int64)
    padded[:, first.row_index] = vectors
    return padded.reshape(-1, R)
