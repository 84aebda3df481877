"""Pruning: unstructured magnitude pruning, and block pruning aligned to the crossbar
(rows x cols blocks of a layer's weight matrix), so whole tiles are skipped."""

import numpy as np

from .network import Dense, Network

__all__ = ["prune_magnitude", "prune_blocks", "block_mask"]


def _check_sparsity(sparsity):
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity!r}")


def _selected(network, layers):
    names = [layer.name for layer in network.layers]
    chosen = names if layers is None else list(layers)
    for name in chosen:
        if name not in names:
            raise ValueError(f"no layer {name!r}; layers are {names}")
    return set(chosen)


def prune_magnitude(network, sparsity, layers=None):
    """Zero the `sparsity` fraction of smallest-magnitude weights in each chosen layer.
    Returns the pruned network and the keep-masks by layer name."""
    _check_sparsity(sparsity)
    chosen, new_layers, masks = _selected(network, layers), [], {}
    for layer in network.layers:
        mask = np.ones_like(layer.weights, bool)
        if layer.name in chosen and sparsity > 0:
            threshold = np.quantile(np.abs(layer.weights), sparsity)
            mask = np.abs(layer.weights) > threshold
        masks[layer.name] = mask
        new_layers.append(Dense(layer.name, layer.weights * mask, layer.bias, layer.relu))
    return Network(tuple(new_layers)), masks


def block_mask(weights, sparsity, rows, cols):
    """Keep-mask zeroing the lowest-L2 `sparsity` fraction of rows x cols blocks
    (blocks at the edges are padded with zeros for the ranking)."""
    k, n = weights.shape
    kb, nb = -(-k // rows), -(-n // cols)
    padded = np.zeros((kb * rows, nb * cols))
    padded[:k, :n] = weights
    norms = np.sqrt((padded.reshape(kb, rows, nb, cols) ** 2).sum(axis=(1, 3)))
    drop = int(round(sparsity * norms.size))
    keep_blocks = np.ones(norms.size, bool)
    keep_blocks[np.argsort(norms, axis=None, kind="stable")[:drop]] = False
    keep = np.repeat(np.repeat(keep_blocks.reshape(kb, nb), rows, axis=0), cols, axis=1)
    return keep[:k, :n]


def prune_blocks(network, sparsity, rows, cols, layers=None):
    """Block pruning aligned to the crossbar: whole rows x cols weight blocks become zero,
    so the mapper never programs or computes them."""
    _check_sparsity(sparsity)
    chosen, new_layers, masks = _selected(network, layers), [], {}
    for layer in network.layers:
        mask = np.ones_like(layer.weights, bool)
        if layer.name in chosen and sparsity > 0:
            mask = block_mask(layer.weights, sparsity, rows, cols)
        masks[layer.name] = mask
        new_layers.append(Dense(layer.name, layer.weights * mask, layer.bias, layer.relu))
    return Network(tuple(new_layers)), masks
