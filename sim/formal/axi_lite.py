"""The AXI4-Lite target obeys the protocol for any manager behaviour.

The manager (every AXI input) and the register bus behind the target (read data, read
and write errors) are free; the manager is assumed only to keep a VALID and its payload
until READY, as AXI requires. Proven by induction:

- a response, once valid, holds with its payload until taken;
- a write takes its address and its data in the same cycle;
- one request at a time: each accepted request gets exactly one response (B valid exactly
  while a write is outstanding; R valid on the second cycle of an outstanding read until
  taken), none without a request;
- a request reaches the register bus exactly once, with its address, data and strobes;
- each response carries the register bus's verdict: SLVERR exactly when the bus refused
  that request (so the register map's errors reach the host, none other), and the data
  it read.
"""

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Module, Mux, ResetSignal, Signal

from rtl.axi_lite import RESP_OKAY, RESP_SLVERR, AXI4LiteTarget

from .handshake import held

__all__ = ["axi_lite_proof", "ADDRESS_BITS"]

# The target's logic is the same at every address width; a narrow one proves faster.
ADDRESS_BITS = 6


def axi_lite_proof():
    m = Module()
    m.submodules.dut = dut = AXI4LiteTarget(ADDRESS_BITS)
    axi, bus = dut.axi, dut.bus
    m.d.comb += Assume(~ResetSignal())
    for signal in (axi.awaddr, axi.awprot, axi.awvalid, axi.wdata, axi.wstrb, axi.wvalid,
                   axi.bready, axi.araddr, axi.arprot, axi.arvalid, axi.rready,
                   bus.r_data, bus.r_err, bus.w_err):
        m.d.comb += signal.eq(AnySeq(len(signal)))

    # The manager keeps each request until it is taken.
    m.d.comb += [Assume(held(m, axi.awvalid, axi.awready, [axi.awaddr])),
                 Assume(held(m, axi.wvalid, axi.wready, [axi.wdata, axi.wstrb])),
                 Assume(held(m, axi.arvalid, axi.arready, [axi.araddr]))]
    # The target keeps each response until it is taken.
    m.d.comb += [Assert(held(m, axi.bvalid, axi.bready, [axi.bresp])),
                 Assert(held(m, axi.rvalid, axi.rready, [axi.rresp, axi.rdata]))]

    aw_fire, w_fire = axi.awvalid & axi.awready, axi.wvalid & axi.wready
    ar_fire = axi.arvalid & axi.arready
    b_fire, r_fire = axi.bvalid & axi.bready, axi.rvalid & axi.rready
    write_pending, read_pending, read_aged = Signal(), Signal(), Signal()
    expected_bresp, expected_rresp, expected_rdata = Signal(2), Signal(2), Signal(32)
    with m.If(aw_fire):
        m.d.sync += [write_pending.eq(1),
                     expected_bresp.eq(Mux(bus.w_err, RESP_SLVERR, RESP_OKAY))]
    with m.Elif(b_fire):
        m.d.sync += write_pending.eq(0)
    with m.If(ar_fire):
        m.d.sync += [read_pending.eq(1), read_aged.eq(0)]
    with m.Elif(r_fire):
        m.d.sync += read_pending.eq(0)
    with m.Elif(read_pending & ~read_aged):     # the bus's answer, a cycle after r_en
        m.d.sync += [read_aged.eq(1), expected_rdata.eq(bus.r_data),
                     expected_rresp.eq(Mux(bus.r_err, RESP_SLVERR, RESP_OKAY))]

    m.d.comb += [
        Assert(aw_fire == w_fire),
        Assert(~((aw_fire | ar_fire) & (write_pending | read_pending))),
        Assert(~(aw_fire & ar_fire)),
        Assert(axi.bvalid == write_pending),
        Assert(axi.rvalid == (read_pending & read_aged)),
        Assert(~axi.bvalid | (axi.bresp == expected_bresp)),
        Assert(~axi.rvalid | ((axi.rresp == expected_rresp) & (axi.rdata == expected_rdata))),
        Assert(bus.w_en == aw_fire),
        Assert(bus.r_en == ar_fire),
        Assert(~aw_fire | ((bus.addr == axi.awaddr) & (bus.w_data == axi.wdata)
                           & (bus.w_strb == axi.wstrb))),
        Assert(~ar_fire | (bus.addr == axi.araddr)),
    ]
    return m
