"""int8 quantisation parameters: a tensor's (scale, zero point), and those a model brings
(a QDQ or QOperator ONNX model) in place of calibration."""

from dataclasses import dataclass

import numpy as np

__all__ = ["TensorQuant", "GivenQuant"]


@dataclass(frozen=True)
class TensorQuant:
    """``real = scale * (q - zero_point)``, q in int8."""
    scale: float
    zero_point: int

    def quantize(self, x):
        return np.clip(np.round(np.asarray(x) / self.scale) + self.zero_point, -128, 127).astype(np.int64)

    def dequantize(self, q):
        return self.scale * (np.asarray(q, np.float64) - self.zero_point)

    @classmethod
    def covering(cls, lo, hi):
        """Asymmetric int8 parameters covering [lo, hi] (widened to include 0)."""
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        zero_point = int(np.clip(np.round(-128 - lo / scale), -128, 127))
        return cls(scale, zero_point)


@dataclass(frozen=True)
class GivenQuant:
    """Quantisation a model brings (a QDQ or QOperator ONNX model): `ranges[i]` is the
    TensorQuant of layer i's input (the last: the output), None where not given;
    `weight_scales` holds per-output-channel weight scales by layer name."""
    ranges: tuple
    weight_scales: dict
    source: str = "the model"
