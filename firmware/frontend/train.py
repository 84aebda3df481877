"""Gradient training of float networks (Dense, Conv2d, Flatten) in NumPy: training from
scratch and the short fine-tuning that recovers accuracy after pruning (masks held fixed)."""

import numpy as np

from ..windows import col2im
from .network import (Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, MaxPool2d, Network,
                      NetworkError, run_layers)

__all__ = ["init_mlp", "init_cnn", "train", "accuracy"]


def init_mlp(sizes, rng):
    """He-initialised Dense layers of the given sizes; ReLU on all but the last."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(Dense(f"dense{i}", rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)),
                            np.zeros(fan_out), relu=i < len(sizes) - 2))
    return Network(tuple(layers))


def init_cnn(input_shape, features, classes, rng):
    """He-initialised convolutions and poolings, then Flatten and a Dense classifier.
    `features` holds (kernel, out channels, stride[, padding]) per convolution, ("maxpool",
    size[, stride[, padding]]) or ("avgpool", ...) per pooling, ("residual",) for a 1x1 convolution whose output
    is added to its input (then ReLU)."""
    layers, shape = [], tuple(input_shape)
    for i, spec in enumerate(features):
        if spec[0] == "residual":
            channels = shape[2]
            layers.append(Conv2d(f"conv{i}", rng.normal(0, np.sqrt(2 / channels),
                                                        (1, 1, channels, channels)),
                                 np.zeros(channels)))
            layer = Add(f"add{i}", (layers[-1].name, layers[-2].name), relu=True)
        elif spec[0] in ("maxpool", "avgpool"):
            size, stride, pad = (*spec[1:], None, 0)[:3]
            layer = (MaxPool2d if spec[0] == "maxpool" else AvgPool2d)(f"pool{i}", size, stride,
                                                                       (pad,) * 4)
        else:
            kernel, channels, stride, pad = (*spec, 0)[:4]
            fan_in = kernel * kernel * shape[2]
            layer = Conv2d(f"conv{i}", rng.normal(0, np.sqrt(2 / fan_in),
                                                  (kernel, kernel, shape[2], channels)),
                           np.zeros(channels), stride=stride, pads=(pad,) * 4)
        layers.append(layer)
        shape = layer.output_shape(shape)
    features = int(np.prod(shape))
    layers += [Flatten("flatten"),
               Dense("classifier", rng.normal(0, np.sqrt(2 / features), (features, classes)),
                     np.zeros(classes), relu=False)]
    return Network(tuple(layers), tuple(input_shape))


def accuracy(network, x, y):
    return float(np.mean(np.argmax(network.forward(x), axis=1) == y))


def _passes(layer, y):
    """Where the activation (ReLU, clamp) lets the gradient through."""
    mask = (y > 0) if layer.relu else np.ones(y.shape, bool)
    return mask if layer.clip is None else mask & (y < layer.clip)


def _backward(layer, xs, y, grad_y):
    """(gradient of each input, matrix gradient or None, bias gradient or None) of one
    layer that read the tensors `xs`."""
    if isinstance(layer, Add):
        return [grad_y * _passes(layer, y)] * len(xs), None, None
    if isinstance(layer, Concat):
        ends = np.cumsum([x.shape[-1] for x in xs])[:-1]
        return np.split(grad_y, ends, axis=-1), None, None
    grad_x, grad_matrix, grad_bias = _backward_one(layer, xs[0], y, grad_y)
    return [grad_x], grad_matrix, grad_bias


def _backward_one(layer, x, y, grad_y):
    """(input gradient, matrix gradient or None, bias gradient or None) of a layer of one
    input."""
    if isinstance(layer, Flatten):
        return grad_y.reshape(x.shape), None, None
    if isinstance(layer, MaxPool2d):
        if not layer.tiled:
            raise NetworkError(f"layer {layer.name!r}: training through overlapping or padded "
                               f"pooling is not supported")
        # Average: to every input of the window; max: to its maximum (ties share).
        k, (out_h, out_w) = layer.size, y.shape[1:3]
        windows = x[:, :out_h * k, :out_w * k].reshape(len(x), out_h, k, out_w, k, x.shape[3])
        if isinstance(layer, AvgPool2d):
            share = np.full(windows.shape, 1.0 / layer.size ** 2)
        else:
            winners = windows == y[:, :, None, :, None, :]
            share = winners / winners.sum(axis=(2, 4), keepdims=True)
        grad_x = np.zeros_like(x)
        grad_x[:, :out_h * k, :out_w * k] = (share * grad_y[:, :, None, :, None, :]).reshape(
            len(x), out_h * k, out_w * k, x.shape[3])
        return grad_x, None, None
    grad_y = grad_y * _passes(layer, y)
    patches = layer.patches(x)
    rows = patches.reshape(-1, patches.shape[-1])
    grad_rows = grad_y.reshape(-1, grad_y.shape[-1])
    grad_matrix, grad_bias = rows.T @ grad_rows, grad_rows.sum(axis=0)
    grad_patches = (grad_rows @ layer.matrix.T).reshape(patches.shape)
    if isinstance(layer, Conv2d):
        top, left, bottom, right = layer.pads
        padded = (x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3])
        grad_x = col2im(grad_patches, padded, *layer.kernel, layer.stride)
        grad_x = grad_x[:, top:top + x.shape[1], left:left + x.shape[2]]
    else:
        grad_x = grad_patches
    return grad_x, grad_matrix, grad_bias


def train(network, x, y, epochs, rng, lr=0.05, batch=32, masks=None, progress=None):
    """Mini-batch SGD with momentum on softmax cross-entropy; `masks` (by layer name,
    shaped like the layer's matrix) keep pruned weights at zero."""
    layers = list(network.layers)
    trained = [i for i, layer in enumerate(layers) if hasattr(layer, "matrix")]
    velocity = {i: (np.zeros_like(layers[i].matrix), np.zeros_like(layers[i].bias)) for i in trained}
    x = network._check_input(x)
    classes = network.shapes[-1][0]
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            acts = run_layers(layers, x[idx], network.reads)
            logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            grads = {len(layers): (probs - np.eye(classes)[y[idx]]) / len(idx)}
            for i in reversed(range(len(layers))):      # tensor -> gradient, summed over readers
                tensors = network.reads[i]
                grad_xs, grad_matrix, grad_bias = _backward(
                    layers[i], [acts[t] for t in tensors], acts[i + 1], grads.pop(i + 1))
                for t, grad_x in zip(tensors, grad_xs):
                    grads[t] = grads.get(t, 0) + grad_x
                if grad_matrix is None:
                    continue
                v_matrix, v_bias = velocity[i]
                v_matrix[:] = 0.9 * v_matrix - lr * grad_matrix
                v_bias[:] = 0.9 * v_bias - lr * grad_bias
                matrix = layers[i].matrix + v_matrix
                keep = None if masks is None else masks.get(layers[i].name)
                if keep is not None:
                    matrix = matrix * keep
                layers[i] = layers[i].with_matrix(matrix, layers[i].bias + v_bias)
        if progress:
            progress(epoch + 1, epochs)
    return network.with_layers(layers)
