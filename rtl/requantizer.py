"""One output channel's requantisation: int32 accumulator to int8, in three pipeline stages."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import golden
from golden.config import ACC_BITS
from golden.timing import REQUANTIZER_STAGES

__all__ = ["Requantizer"]

INT32_MIN, INT32_MAX = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1


class Requantizer(wiring.Component):
    """Bit-exact with :func:`golden.requantize` (TFLite single rounding); `result` is the
    requantisation of the inputs presented :attr:`latency` cycles earlier.

    The stages cut the paths that kept small FPGAs from timing closure: bias add and
    saturation | 33x32 multiply | rounding add and variable shift, then offset and clamp.

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
    latency = REQUANTIZER_STAGES

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

        def delayed(value, stages, name):
            """`value` as it was `stages` cycles ago."""
            for stage in range(stages):
                register = Signal.like(value, name=f"{name}_{stage + 1}")
                m.d.sync += register.eq(value)
                value = register
            return value

        total = self.acc + self.bias
        biased = Signal(signed(ACC_BITS))
        m.d.sync += biased.eq(Mux(total > INT32_MAX, INT32_MAX,
                                  Mux(total < INT32_MIN, INT32_MIN, total)))
        multiplier = delayed(self.multiplier, 1, "multiplier")

        # (p + 2**(n+30)) >> (n+31) == ((p >> 30) + 2**n) >> (n+1) for any integer p (the
        # dropped low bits never carry into the kept ones), so only p >> 30 is kept.
        product_high = Signal(signed(ACC_BITS + 2))
        m.d.sync += product_high.eq((biased * multiplier) >> 30)
        shift = delayed(self.shift, 2, "shift")

        rounded = Signal(signed(ACC_BITS + 3))
        m.d.comb += rounded.eq(product_high + (Const(1, ACC_BITS) << shift))
        scaled = Signal(signed(ACC_BITS + 2))
        m.d.sync += scaled.eq(rounded >> (shift + 1))                    # arithmetic: floors

        zero_point = delayed(self.zero_point, 3, "zero_point")
        clamp_min = delayed(self.clamp_min, 3, "clamp_min")
        clamp_max = delayed(self.clamp_max, 3, "clamp_max")
        offset = scaled + zero_point
        low_clamped = Mux(offset < clamp_min, clamp_min, offset)
        m.d.comb += self.result.eq(Mux(low_clamped > clamp_max, clamp_max, low_clamped))
        return m
