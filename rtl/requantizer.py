"""One output channel's requantisation: int32 accumulator to int8."""

from amaranth.hdl import Const, Module, Mux, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import golden
from golden.config import ACC_BITS

__all__ = ["Requantizer"]

INT32_MIN, INT32_MAX = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1


class Requantizer(wiring.Component):
    """Combinational; bit-exact with :func:`golden.requantize` (TFLite single rounding).

    Attributes
    ----------
    acc, bias : In(signed(32))
    multiplier : In(unsigned(32))
        Q0.31, at most ``2**31 - 1``.
    shift : In(unsigned(5))
    zero_point, clamp_min, clamp_max : In(signed(8))
    result : Out(signed(8))
    """

    model = staticmethod(golden.requantize)

    acc: In(signed(32))
    bias: In(signed(32))
    multiplier: In(unsigned(32))
    shift: In(unsigned(5))
    zero_point: In(signed(8))
    clamp_min: In(signed(8))
    clamp_max: In(signed(8))
    result: Out(signed(8))

    def elaborate(self, platform):
        m = Module()
        total = self.acc + self.bias
        biased = Mux(total > INT32_MAX, INT32_MAX, Mux(total < INT32_MIN, INT32_MIN, total))
        product = biased * self.multiplier                          # 64-bit signed
        rounding = Const(1, 64) << (self.shift + 30)
        scaled = (product + rounding.as_signed()) >> (self.shift + 31)   # arithmetic: floors
        offset = scaled + self.zero_point
        low_clamped = Mux(offset < self.clamp_min, self.clamp_min, offset)
        m.d.comb += self.result.eq(Mux(low_clamped > self.clamp_max, self.clamp_max, low_clamped))
        return m
