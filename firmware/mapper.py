"""Mapping a quantised network onto the accelerator: blocks, tiles, memory layout.

Each layer's (inputs x outputs) int8 weight matrix is cut into rows x cols blocks. A
block that is entirely zero is never stored, programmed or computed. The K dimension
(rows) is summed in the partial sums by accumulating MVMs; the N dimension (cols) is
spread over tiles that share one input vector. All samples of a batch go through one
MVM per (K block, run of N blocks).
"""

from dataclasses import dataclass, field

import numpy as np

from .network import NetworkError

__all__ = ["LayerMap", "NetworkMap", "map_network", "MappingError"]


class MappingError(NetworkError):
    """The network does not fit the hardware; says which layer and which memory."""


@dataclass
class LayerMap:
    name: str
    k_blocks: int
    n_blocks: int
    nonzero: np.ndarray          # (k_blocks, n_blocks) bool
    images: dict                 # (kb, nb) -> wmem image index
    input_base: int              # amem entry of (sample 0, kb 0)
    psum_base: int               # psum entry of (sample 0, nb 0)
    qmem_base: int               # qmem entry of output block 0 (cols channels an entry)
    weights: np.ndarray          # int8, padded to (k_blocks*rows, n_blocks*cols)
    cell_utilisation: float      # cells of stored blocks holding a real (unpadded) weight

    @property
    def block_utilisation(self):
        return float(self.nonzero.mean())


@dataclass
class NetworkMap:
    config: object
    batch: int
    layers: list
    output_base: int             # amem entry of (sample 0, output block 0)
    output_blocks: int
    images: int                  # wmem images used
    resident: bool               # every block has a tile of its own: program once
    zero_psum_entries: list = field(default_factory=list)


def _blocks(count, size):
    return -(-count // size)


def map_network(qnet, config, batch=None):
    """Lay `qnet` out on `config`; `batch` defaults to the largest that fits."""
    R, C = config.rows, config.cols
    layers, kbs, nbs = [], [], []
    image = 0
    for layer in qnet.layers:
        k, n = layer.weights.shape
        kb, nb = _blocks(k, R), _blocks(n, C)
        padded = np.zeros((kb * R, nb * C), np.int64)
        padded[:k, :n] = layer.weights
        nonzero = padded.reshape(kb, R, nb, C).any(axis=(1, 3))
        images = {}
        for block in zip(*np.nonzero(nonzero)):
            images[tuple(int(i) for i in block)] = image
            image += 1
        if image * R > config.wmem_depth:
            raise MappingError(f"layer {layer.name!r}: its weight blocks bring the images to "
                               f"{image} x {R} rows, beyond wmem_depth {config.wmem_depth}")
        real = np.zeros_like(padded, bool)
        real[:k, :n] = True
        stored_real = (real.reshape(kb, R, nb, C).sum(axis=(1, 3)) * nonzero).sum()
        cells = int(nonzero.sum()) * R * C
        layers.append(LayerMap(layer.name, kb, nb, nonzero, images, 0, 0, 0, padded,
                               stored_real / cells if cells else 0.0))
        kbs.append(kb)
        nbs.append(nb)
    output_blocks = _blocks(qnet.layers[-1].weights.shape[1], R)

    entries = 0
    for layer_map, nb in zip(layers, nbs):
        layer_map.qmem_base = entries
        entries += nb
        if entries > config.qmem_depth:
            raise MappingError(f"layer {layer_map.name!r}: {entries} entries of quantisation "
                               f"parameters exceed qmem_depth {config.qmem_depth}")

    amem_per_sample = sum(kbs) + output_blocks
    psum_per_sample = sum(nbs)
    largest = min(config.amem_depth // amem_per_sample, config.psum_depth // psum_per_sample,
                  (1 << 16) - 1)
    if largest < 1:
        worst = max(layers, key=lambda lm: lm.k_blocks + lm.n_blocks)
        raise MappingError(f"layer {worst.name!r}: one sample needs {amem_per_sample} activation "
                           f"and {psum_per_sample} partial-sum entries, the memories hold "
                           f"{config.amem_depth} and {config.psum_depth}")
    batch = largest if batch is None else batch
    if not 1 <= batch <= largest:
        raise MappingError(f"batch must be in 1..{largest} for this network and config, not {batch}")

    amem, psum = 0, 0
    for layer_map, kb, nb in zip(layers, kbs, nbs):
        layer_map.input_base, layer_map.psum_base = amem, psum
        amem += batch * kb
        psum += batch * nb
    zero_psum = [lm.psum_base + s * lm.n_blocks + n for lm in layers
                 for n in range(lm.n_blocks) if not lm.nonzero[:, n].any() for s in range(batch)]
    return NetworkMap(config, batch, layers, amem, output_blocks, image,
                      resident=image <= config.tiles, zero_psum_entries=zero_psum)
