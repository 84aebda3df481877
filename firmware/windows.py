"""Sliding-window arithmetic on NHWC tensors: window positions, im2col patches (rows in
(ky, kx, channel) order, as the crossbars hold a convolution's matrix) and padding.
Shared by the network description, the compiler and the runtime, which forms a host-fed
convolution's patches."""

import numpy as np

__all__ = ["window_count", "im2col", "im2col_columns", "col2im", "pad_images"]


def window_count(size, window, stride):
    """Positions of a `window` sliding by `stride` along `size` (padding included)."""
    return (size - window) // stride + 1


def im2col(x, kh, kw, stride=1):
    """Patches of NHWC `x` as ``(batch, out_h, out_w, kh * kw * channels)``, (ky, kx, c) order."""
    batch, height, width, channels = x.shape
    out_h, out_w = window_count(height, kh, stride), window_count(width, kw, stride)
    taps = [x[:, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride]
            for ky in range(kh) for kx in range(kw)]
    return np.concatenate(taps, axis=3)


def im2col_columns(x, kh, kw, stride, columns, width):
    """``out[..., columns] = im2col(x, kh, kw, stride)`` in an ``(..., width)`` array of
    zeros, written tap by tap, without the patches in between (the host's first
    convolution: a patch's values go to the crossbar rows the compiler chose)."""
    batch, height, width_in, channels = x.shape
    out_h, out_w = window_count(height, kh, stride), window_count(width_in, kw, stride)
    out = np.zeros((batch, out_h, out_w, width), x.dtype)
    for column, (ky, kx, c) in zip(columns, np.ndindex(kh, kw, channels)):
        out[..., column] = x[:, ky:ky + stride * (out_h - 1) + 1:stride,
                             kx:kx + stride * (out_w - 1) + 1:stride, c]
    return out


def col2im(cols, input_shape, kh, kw, stride=1):
    """The adjoint of :func:`im2col`: patch gradients summed back onto the input."""
    batch, out_h, out_w, _ = cols.shape
    grad = np.zeros((batch, *input_shape), cols.dtype)
    channels = input_shape[2]
    for tap, (ky, kx) in enumerate((ky, kx) for ky in range(kh) for kx in range(kw)):
        grad[:, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride] += \
            cols[..., tap * channels:(tap + 1) * channels]
    return grad


def pad_images(x, pads, value=0):
    """NHWC `x` with `pads` (top, left, bottom, right) rows and columns of `value` added."""
    top, left, bottom, right = pads
    if not any(pads):
        return x
    batch, height, width, channels = x.shape
    # (np.pad spends ~50 us in Python: a host-fed convolution pads every sample it runs)
    out = np.full((batch, top + height + bottom, left + width + right, channels), value, x.dtype)
    out[:, top:top + height, left:left + width] = x
    return out
