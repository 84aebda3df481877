"""Gradient training of float Dense networks in NumPy: training from scratch and the
short fine-tuning that recovers accuracy after pruning (masks held fixed)."""

import numpy as np

from .network import Dense, Network

__all__ = ["init_mlp", "train", "accuracy"]


def init_mlp(sizes, rng):
    """He-initialised Dense layers of the given sizes; ReLU on all but the last."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(Dense(f"dense{i}", rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)),
                            np.zeros(fan_out), relu=i < len(sizes) - 2))
    return Network(tuple(layers))


def accuracy(network, x, y):
    return float(np.mean(np.argmax(network.forward(x), axis=1) == y))


def train(network, x, y, epochs, rng, lr=0.05, batch=32, masks=None, progress=None):
    """Mini-batch SGD with momentum on softmax cross-entropy; `masks` (by layer name)
    keep pruned weights at zero."""
    weights = [layer.weights.copy() for layer in network.layers]
    biases = [layer.bias.copy() for layer in network.layers]
    relus = [layer.relu for layer in network.layers]
    keep = [None if masks is None else masks.get(layer.name) for layer in network.layers]
    velocity = [np.zeros_like(w) for w in weights] + [np.zeros_like(b) for b in biases]
    classes = weights[-1].shape[1]
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            acts = [x[idx]]
            for w, b, relu in zip(weights, biases, relus):
                z = acts[-1] @ w + b
                acts.append(np.maximum(z, 0) if relu else z)
            logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            grad = (probs - np.eye(classes)[y[idx]]) / len(idx)
            for i in reversed(range(len(weights))):
                gw, gb = acts[i].T @ grad, grad.sum(axis=0)
                if i:
                    grad = (grad @ weights[i].T) * (acts[i] > 0 if relus[i - 1] else 1)
                velocity[i] = 0.9 * velocity[i] - lr * gw
                velocity[len(weights) + i] = 0.9 * velocity[len(weights) + i] - lr * gb
                weights[i] += velocity[i]
                biases[i] += velocity[len(weights) + i]
                if keep[i] is not None:
                    weights[i] *= keep[i]
        if progress:
            progress(epoch + 1, epochs)
    return Network(tuple(Dense(layer.name, w, b, layer.relu)
                         for layer, w, b in zip(network.layers, weights, biases)))
