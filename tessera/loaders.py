"""The files users hand the commands, read as data and checked (never unpickled): arrays,
networks, inputs in the model's layout, labels. Each refusal is one line naming the file."""

import zipfile
from pathlib import Path

import numpy as np

from .options import UsageError

def load_array(path, what):
    """An .npy file as data (never unpickled, its header checked before anything is
    allocated): refused in one line if it is missing, not a regular file, not an .npy
    array, empty, not numeric, or holds NaN or infinite values (the first one named)."""
    from firmware.data_files import read_npy

    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        raise UsageError(f"{what} {path} is an .npz archive; give one .npy array "
                         f"(np.save(path, array))")
    array = read_npy(path, what)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            or array.dtype == bool):
        raise UsageError(f"{what} {path} holds {array.dtype} values, not numbers")
    if array.ndim == 0 or len(array) == 0 or array.size == 0:
        raise UsageError(f"{what} {path} holds no samples (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating):
        bad = np.argwhere(~np.isfinite(array))
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            raise UsageError(f"{what} {path} holds {array[index]} at index {index}: "
                             f"inputs must be finite")
    return array



def load_network(path):
    """(float Network, input layout, the model's own quantisation or None, a final
    Softmax/LogSoftmax/ArgMax or None) from an .onnx
    model (NCHW images, see :mod:`firmware.frontend.onnx_io`; a QDQ or QOperator model brings its
    scales) or an .npz holding w0, b0, w1, b1, ... (float, weights (in, out)) and
    optionally `relu`, one bool per layer (default: all but the last)."""
    from firmware.data_files import check_readable, describe_bytes, read_npz
    from firmware.frontend.network import Dense, Network

    path = check_readable(path, "network")
    if path.suffix == ".onnx":
        from firmware.frontend.onnx_io import load_onnx_model
        model = load_onnx_model(path)
        layout = "NCHW" if len(model.network.input_shape) == 3 else "vector"
        return model.network, layout, model.quant, model.head
    if not zipfile.is_zipfile(path):
        with path.open("rb") as stream:
            head = stream.read(64)
        raise UsageError(f"network {path} is not an .onnx model or an .npz of arrays: it "
                         f"looks like {describe_bytes(head)}")
    arrays = read_npz(path, "network")
    count = sum(1 for key in arrays if key.startswith("w") and key[1:].isdigit())
    if count == 0:
        raise UsageError(f"{path}: no layer arrays w0, b0, ... found (keys: {sorted(arrays)})")
    relu = [i < count - 1 for i in range(count)]
    if "relu" in arrays:
        relu = arrays["relu"].ravel()
        if relu.dtype != bool and not (np.issubdtype(relu.dtype, np.integer)
                                       and np.isin(relu, (0, 1)).all()):
            raise UsageError(f"{path}: relu must hold booleans (or 0 and 1), one per layer, "
                             f"not {relu.dtype} {relu.tolist()[:4]}")
        if len(relu) != count:
            raise UsageError(f"{path}: relu has {len(relu)} entries, the network has "
                             f"{count} layers (w0..w{count - 1})")
    layers = []
    for i in range(count):
        if f"b{i}" not in arrays:
            raise UsageError(f"{path}: layer {i} has w{i} but no b{i}")
        layers.append(Dense(f"dense{i}", arrays[f"w{i}"], arrays[f"b{i}"], bool(relu[i])))
    return Network(tuple(layers)), "vector", None, None



def load_inputs(path, what, input_shape, layout):
    """Samples from an .npy as the network takes them (NHWC images). `layout` "NCHW"
    (an ONNX model's) takes (samples, C, H, W), or each sample flattened in that order."""
    array = load_array(path, what)
    features = int(np.prod(input_shape))
    if layout == "NCHW":
        height, width, channels = input_shape
        expected = f"(samples, {channels}, {height}, {width}) or (samples, {features})"
        if array.ndim == 2 and array.shape[1] == features:
            array = array.reshape(len(array), channels, height, width)
        if array.shape[1:] != (channels, height, width):
            raise UsageError(f"{what} {path} must have shape {expected}, not {array.shape}")
        return array.transpose(0, 2, 3, 1)
    if array.ndim < 2 or int(np.prod(array.shape[1:])) != features:
        raise UsageError(f"{what} {path} must have shape (samples, "
                         f"{', '.join(map(str, input_shape))}), not {array.shape}")
    return array.reshape(len(array), *input_shape)



def load_labels(path, samples, classes):
    labels = load_array(path, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"labels {path} must be one integer class per sample, shape (samples,), "
                         f"not {labels.dtype} {labels.shape}")
    if len(labels) < samples:
        raise UsageError(f"labels {path} has {len(labels)} labels for {samples} samples")
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise UsageError(f"labels {path}: label {labels[bad[0]]} at index {bad[0]} is not a "
                         f"class of the network's {classes} outputs")
    return labels[:samples]

