"""8N1 UART receiver and transmitter at ``clock / divisor`` baud."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx"]


class _UartComponent(wiring.Component):
    """Both directions run at ``divisor`` clock cycles a bit."""

    def __init__(self, divisor):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer >= 4 clock cycles a bit, not {divisor!r}")
        self.divisor = divisor
        super().__init__()


class UartRx(_UartComponent):
    """Receives bytes on `rx`, sampling each bit in its middle.

    Attributes
    ----------
    rx : In(1)
    o_stream : Out(stream.Signature(8))
        A byte that is not taken before the next one completes is lost (``overrun``).
    overrun : Out(1)
    """

    rx: In(1, init=1)
    o_stream: Out(stream.Signature(8))
    overrun: Out(1)

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor))
        bit = Signal(range(10))
        shift = Signal(8)
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [timer.eq(self.divisor // 2), bit.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 0):
                        with m.If(rx):                  # start bit gone: a glitch
                            m.next = "IDLE"
                    with m.Elif(bit <= 8):
                        m.d.sync += shift.eq(Cat(shift[1:], rx))
                    with m.Else():                      # stop bit
                        with m.If(rx):
                            m.d.sync += [self.o_stream.payload.eq(shift),
                                         self.o_stream.valid.eq(1),
                                         self.overrun.eq(self.overrun | (self.o_stream.valid
                                                                         & ~self.o_stream.ready))]
                        m.next = "IDLE"
        return m


class UartTx(_UartComponent):
    """Sends the bytes of `i_stream` on `tx`.

    Attributes
    ----------
    i_stream : In(stream.Signature(8))
    tx : Out(1)
    """

    i_stream: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(10)
        remaining = Signal(range(11))
        m.d.comb += self.i_stream.ready.eq(remaining == 0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [bits.eq(Cat(0, self.i_stream.payload, 1)), remaining.eq(10),
                         timer.eq(0)]
        with m.Elif(remaining != 0):
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(bits[0]), bits.eq(bits >> 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
                with m.If((timer == 1) & (remaining != 0)):
                    m.d.sync += remaining.eq(remaining - 1)
        return m
