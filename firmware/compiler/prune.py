"""Pruning: unstructured magnitude pruning, and block pruning aligned to the crossbar
(rows x cols blocks of a layer's weight matrix), so whole tiles are skipped."""

import numpy as np

from .layout import matrix_row_layout, padded_matrix

__all__ = ["prune_magnitude", "prune_blocks", "block_mask"]


def _check_sparsity(sparsity):
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity!r}")


def _selected(network, layers):
    names = [layer.name for layer in network.matrix_layers()]
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
        if layer in network.matrix_layers():
            mask = np.ones_like(layer.matrix, bool)
            if layer.name in chosen and sparsity > 0:
                threshold = np.quantile(np.abs(layer.matrix), sparsity)
                mask = np.abs(layer.matrix) > threshold
            masks[layer.name] = mask
            layer = layer.with_matrix(layer.matrix * mask)
        new_layers.append(layer)
    return network.with_layers(new_layers), masks


def block_mask(weights, sparsity, rows, cols, row_layout=None):
    """Keep-mask zeroing the lowest-L2 `sparsity` fraction of rows x cols blocks
    (blocks at the edges are padded with zeros for the ranking). Each column of blocks
    keeps its strongest block, so no output channel is cut off from every input.
    `row_layout` is (padded row of each row, padded row count), as
    :func:`firmware.compiler.layout.matrix_row_layout` gives; default: rows in order."""
    k, n = weights.shape
    row_index, padded_rows = row_layout or (np.arange(k), -(-k // rows) * rows)
    padded = padded_matrix(np.asarray(weights, np.float64), row_index, padded_rows, cols)
    kb, nb = padded.shape[0] // rows, padded.shape[1] // cols
    norms = np.sqrt((padded.reshape(kb, rows, nb, cols) ** 2).sum(axis=(1, 3)))
    drop = min(int(round(sparsity * norms.size)), norms.size - nb)
    strongest = np.zeros((kb, nb), bool)
    strongest[np.argmax(norms, axis=0), np.arange(nb)] = True
    candidates = np.flatnonzero(~strongest.ravel())
    weakest = candidates[np.argsort(norms.ravel()[candidates], kind="stable")[:drop]]
    keep_blocks = np.ones(norms.size, bool)
    keep_blocks[weakest] = False
    keep = np.repeat(np.repeat(keep_blocks.reshape(kb, nb), rows, axis=0), cols, axis=1)
    return keep[row_index, :n]


def prune_blocks(network, sparsity, rows, cols, layers=None):
    """Block pruning aligned to the crossbar: whole rows x cols weight blocks become zero,
    so the mapper never programs or computes them."""
    _check_sparsity(sparsity)
    chosen, new_layers, masks = _selected(network, layers), [], {}
    layouts = matrix_row_layout(network, rows)
    for layer in network.layers:
        if layer.name in layouts:
            mask = np.ones_like(layer.matrix, bool)
            if layer.name in chosen and sparsity > 0:
                mask = block_mask(layer.matrix, sparsity, rows, cols, layouts[layer.name])
            masks[layer.name] = mask
            layer = layer.with_matrix(layer.matrix * mask)
        new_layers.append(layer)
    return network.with_layers(new_layers), masks
