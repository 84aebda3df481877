"""AXI4-Lite (32-bit) target, turned into a simple register bus for the top's decoder."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXI4LiteSignature", "RegisterBusSignature", "AXI4LiteTarget", "RESP_OKAY", "RESP_SLVERR"]

RESP_OKAY, RESP_SLVERR = 0b00, 0b10


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite, from the manager's side; signal names as in the AMBA spec, so that
    they come out as ``<port>__awaddr`` etc. for cocotbext-axi."""

    def __init__(self, addr_width):
        if not isinstance(addr_width, int) or addr_width < 3:
            raise TypeError(f"addr_width must be an integer >= 3, not {addr_width!r}")
        self._addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self):
        return self._addr_width


class RegisterBusSignature(wiring.Signature):
    """One access at a time, from the initiator's side. A read's ``r_data``/``r_err``
    are valid the cycle after ``r_en``; a write's ``w_err`` in the cycle of ``w_en``."""

    def __init__(self, addr_width):
        super().__init__({
            "addr": Out(addr_width),
            "r_en": Out(1), "r_data": In(32), "r_err": In(1),
            "w_en": Out(1), "w_data": Out(32), "w_strb": Out(4), "w_err": In(1),
        })


class AXI4LiteTarget(wiring.Component):
    """Accepts one transaction at a time; a write needs AW and W together (both ready in
    the same cycle), reads and writes alternate when both wait.

    Attributes
    ----------
    axi : In(AXI4LiteSignature)
    bus : Out(RegisterBusSignature)
    """

    def __init__(self, addr_width):
        super().__init__({"axi": In(AXI4LiteSignature(addr_width)),
                          "bus": Out(RegisterBusSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        axi, bus = self.axi, self.bus
        last_was_read = Signal()
        with m.FSM():
            with m.State("IDLE"):
                write = axi.awvalid & axi.wvalid
                read = axi.arvalid
                with m.If(write & ~(read & ~last_was_read)):
                    m.d.comb += [axi.awready.eq(1), axi.wready.eq(1), bus.addr.eq(axi.awaddr),
                                 bus.w_en.eq(1), bus.w_data.eq(axi.wdata), bus.w_strb.eq(axi.wstrb)]
                    m.d.sync += [axi.bresp.eq(bus.w_err << 1), last_was_read.eq(0)]
                    m.next = "WRITE_RESPONSE"
                with m.Elif(read):
                    m.d.comb += [axi.arready.eq(1), bus.addr.eq(axi.araddr), bus.r_en.eq(1)]
                    m.d.sync += last_was_read.eq(1)
                    m.next = "READ_DATA"
            with m.State("READ_DATA"):
                m.d.sync += [axi.rdata.eq(bus.r_data), axi.rresp.eq(bus.r_err << 1)]
                m.next = "READ_RESPONSE"
            with m.State("READ_RESPONSE"):
                m.d.comb += axi.rvalid.eq(1)
                with m.If(axi.rready):
                    m.next = "IDLE"
            with m.State("WRITE_RESPONSE"):
                m.d.comb += axi.bvalid.eq(1)
                with m.If(axi.bready):
                    m.next = "IDLE"
        return m
