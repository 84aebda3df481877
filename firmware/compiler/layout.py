"""Where each weight-matrix row lands on the crossbars: the row layout that block pruning
and the mapper share.

A matrix layer whose input the host writes (the first layer; a first Conv2d gets im2col
patches, its kernel taps centre first) or a Dense layer's output reads its rows
contiguously. An image made by a Conv2d
sits in the activation memory one entry group per pixel, its channels padded to a whole
number of ``rows``-lane entries; the layer reading it (a Conv2d, or a Dense after Flatten)
has its rows padded the same way, so that each crossbar block is (kernel tap or pixel,
channel block).
"""

import numpy as np

__all__ = ["matrix_row_layout", "padded_matrix"]


def _blocks(count, size):
    return -(-count // size)


def _centre_first(kernel, k):
    """Padded row of each (ky, kx, c) patch element of a host-fed convolution: taps in
    order of distance from the kernel's centre, so that the first crossbar block holds
    the central taps and a pruned block drops outer ones (the host writes the patches in
    any order at no cost)."""
    kh, kw = kernel
    channels = k // (kh * kw)
    dy, dx = np.meshgrid(np.arange(kh) - (kh - 1) / 2, np.arange(kw) - (kw - 1) / 2, indexing="ij")
    rank = np.empty(kh * kw, np.int64)
    rank[np.argsort((dy ** 2 + dx ** 2).ravel(), kind="stable")] = np.arange(kh * kw)
    return (rank[:, None] * channels + np.arange(channels)).ravel()


def matrix_row_layout(network, rows):
    """{matrix layer name: (padded row index of each matrix row, padded row count)}, for a
    float or a quantised network (matrix layers have `matrix`, convolutions `kernel`, layers
    of several inputs `parts`)."""
    layouts = {}
    image = {0: None}                  # tensor -> (height, width, channels) made on-device
    for index, (layer, tensors) in enumerate(zip(network.layers, network.reads)):
        source = image[tensors[0]]
        out_shape = network.shapes[index + 1]
        image[index + 1] = out_shape if len(out_shape) == 3 else None
        if hasattr(layer, "size"):                       # a pooling: a smaller image
            continue
        if not hasattr(layer, "matrix"):                 # Flatten: the Dense after reads pixels
            image[index + 1] = source
            continue
        k = layer.matrix.shape[0]
        if getattr(layer, "parts", ()):                  # inputs side by side, each whole blocks
            starts = np.cumsum([0] + [_blocks(n, rows) * rows for n in layer.parts])
            layouts[layer.name] = (np.concatenate([start + np.arange(n) for start, n
                                                   in zip(starts, layer.parts)]), int(starts[-1]))
        elif source is None and hasattr(layer, "kernel"):
            layouts[layer.name] = (_centre_first(layer.kernel, k), _blocks(k, rows) * rows)
        elif source is None:
            layouts[layer.name] = (np.arange(k), _blocks(k, rows) * rows)
        else:
            height, width, channels = source
            group = _blocks(channels, rows) * rows           # rows per tap or pixel
            if hasattr(layer, "kernel"):
                kh, kw = layer.kernel
                taps = np.arange(kh * kw).repeat(channels)
            else:
                taps = np.arange(height * width).repeat(channels)
            padded_rows = taps * group + np.tile(np.arange(channels), len(taps) // channels)
            layouts[layer.name] = (padded_rows, (len(taps) // channels) * group)
    return layouts


def padded_matrix(matrix, row_index, padded_rows, cols):
    """`matrix` with its rows moved to `row_index` and zero rows/columns padding it to
    ``(padded_rows, whole cols blocks)``."""
    k, n = matrix.shape
    padded = np.zeros((padded_rows, _blocks(n, cols) * cols), matrix.dtype)
    padded[row_index, :n] = matrix
    return padded
