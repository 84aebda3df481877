"""A small, typed network description built from NumPy arrays (float, before compression)."""

from dataclasses import dataclass

import numpy as np

__all__ = ["NetworkError", "Dense", "Network"]


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


@dataclass(frozen=True, eq=False)
class Dense:
    """``y = x @ weights + bias``, then ReLU when `relu`. `weights` is (inputs, outputs)."""
    name: str
    weights: np.ndarray
    bias: np.ndarray
    relu: bool = True

    def __post_init__(self):
        weights = _float_array(self.name, "weights", self.weights, 2)
        bias = _float_array(self.name, "bias", self.bias, 1)
        if bias.shape != (weights.shape[1],):
            raise NetworkError(f"layer {self.name!r}: bias has shape {bias.shape}, the "
                               f"weights have {weights.shape[1]} outputs")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)

    @property
    def inputs(self):
        return self.weights.shape[0]

    @property
    def outputs(self):
        return self.weights.shape[1]

    def forward(self, x):
        y = x @ self.weights + self.bias
        return np.maximum(y, 0) if self.relu else y


@dataclass(frozen=True, eq=False)
class Network:
    layers: tuple

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise NetworkError("a network needs at least one layer")
        names = set()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise NetworkError(f"layer {i} ({type(layer).__name__}) is not supported; "
                                   f"supported: Dense")
            if layer.name in names:
                raise NetworkError(f"layer name {layer.name!r} is used twice")
            names.add(layer.name)
            if i and layer.inputs != layers[i - 1].outputs:
                raise NetworkError(f"layer {layer.name!r} takes {layer.inputs} inputs, but "
                                   f"{layers[i - 1].name!r} gives {layers[i - 1].outputs}")
        object.__setattr__(self, "layers", layers)

    @property
    def inputs(self):
        return self.layers[0].inputs

    def forward(self, x):
        """Float forward pass."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise NetworkError(f"inputs must have shape (batch, {self.inputs}), not {x.shape}")
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def activations(self, x):
        """The input of every layer and the network's output, in order."""
        x = np.asarray(x, np.float64)
        seen = [x]
        for layer in self.layers:
            x = layer.forward(x)
            seen.append(x)
        return seen
