"""The UART bridge's frame logic (`rtl.uart_bridge.BridgeCore`) never hangs and never
writes on a bad checksum, for any bytes a host sends and any bus behind it.

Free: the request bytes (a stream that holds each byte until taken), the response
sink's READY, and the AXI subordinate's READYs and responses; each partner is assumed to
answer a VALID within `RESPONSIVE` cycles. A parser written here from the framing in
`golden/bridge.py` follows the bytes the core takes. Proven by induction:

- no bus write (AWVALID or WVALID) unless the last frame taken was a WRITE with a good
  checksum and an accepted count, no read unless it was such a READ; at most `count`
  transactions, at address, address + 4, ...; none after a SLVERR;
- as an AXI manager: a VALID holds with its payload until taken; one transaction at a
  time; READY for a response only when one is due;
- the response comes after the frame's whole burst (or its SLVERR): the sync byte, the
  status the framing defines for that frame and bus, the count (words read, else 0), at
  most 4 x count data bytes and a checksum that makes them sum to 0; only then does the
  core take bytes again;
- it never hangs: while it does not take bytes it makes a handshake at least every
  `GAP` cycles, and (above) a busy spell has a bounded number of handshakes, so it ends.

A host may pause between bytes for any time, so no induction window reaches back to a
frame's start: invariants tie the core's registers (`BridgeCore.registers`) and state to
the parser at every point of a frame, and with them the properties close in 8 cycles.
The proof found a real fault on its way: a write waiting for a slow WREADY changed its
data, as the buffer's read port went on reading (fixed in the core).
"""

from types import SimpleNamespace

from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cat, Module, Mux, ResetSignal, Signal

from golden import bridge, regmap
from rtl.axi_lite import RESP_OKAY
from rtl.uart_bridge import BridgeCore

from .handshake import held, stalled

__all__ = ["uart_bridge_proof", "RESPONSIVE", "GAP"]

ADDRESS_BITS = regmap.ADDRESS_BITS     # the core as the board tops build it
RESPONSIVE = 2      # cycles a partner takes at most to answer a VALID
GAP = RESPONSIVE + 1    # cycles at most between two handshakes of a busy core


def uart_bridge_proof():
    m = Module()
    dut = BridgeCore(ADDRESS_BITS)
    m.submodules.dut = dut.elaborate(None)      # elaborated here, for its registers
    dut._MustUse__silence = True                # (the elaborated module stands in for it)
    byte_in, byte_out, axi = dut.i_stream, dut.o_stream, dut.axi
    m.d.comb += Assume(~ResetSignal())
    for signal in (byte_in.valid, byte_in.payload, byte_out.ready, axi.awready, axi.wready,
                   axi.bvalid, axi.bresp, axi.arready, axi.rvalid, axi.rdata, axi.rresp):
        m.d.comb += signal.eq(AnySeq(len(signal)))
    m.d.comb += Assume(held(m, byte_in.valid, byte_in.ready, [byte_in.payload]))
    for valid, ready in ((axi.awvalid, axi.awready), (axi.wvalid, axi.wready),
                         (axi.arvalid, axi.arready), (axi.bready, axi.bvalid),
                         (axi.rready, axi.rvalid), (byte_out.valid, byte_out.ready)):
        m.d.comb += Assume(stalled(m, valid, ready, RESPONSIVE) < RESPONSIVE)

    frame = _parse_requests(m, byte_in)
    burst = _check_bus(m, axi, frame)
    reply = _check_reply(m, byte_out, frame, burst)
    _invariants(m, dut.registers, frame, burst, reply, ~byte_in.ready)
    handshakes = (byte_in.valid & byte_in.ready) | burst.fired | reply.fire
    gap = Signal(range(GAP + 2))
    m.d.sync += gap.eq(Mux(byte_in.ready | handshakes, 0, gap + (gap <= GAP)))
    m.d.comb += [Assert(gap <= GAP),
                 Assert(byte_in.ready == ~frame.answering)]
    return m


def _parse_requests(m, byte_in):
    """The frames in the bytes the core takes, and each one's verdict."""
    taken, byte = byte_in.valid & byte_in.ready, byte_in.payload
    f = SimpleNamespace(
        inside=Signal(name="f_inside"),
        position=Signal(range(4 * bridge.MAX_COUNT + 8), name="f_position"),
        command=Signal(8, name="f_command"), count=Signal(8, name="f_count"),
        address=Signal(32, name="f_address"), total=Signal(8, name="f_total"),
        status=Signal(8, name="f_status"), write=Signal(name="f_write"),
        read=Signal(name="f_read"), answering=Signal(name="f_answering"), completed=Signal())
    f.data_bytes = data_bytes = Mux((f.command == bridge.Command.WRITE) & (f.count != 0),
                                    f.count * 4, 0)
    good_sum = (f.total + byte)[:8] == 0
    good_command = (((f.command == bridge.Command.READ) | (f.command == bridge.Command.WRITE))
                    & (f.count != 0))
    m.d.comb += f.completed.eq(taken & f.inside & (f.position == 6 + data_bytes))
    with m.If(taken & ~f.inside):
        with m.If(byte == bridge.REQUEST_SYNC):
            m.d.sync += [f.inside.eq(1), f.position.eq(0), f.total.eq(0), f.address.eq(0)]
    with m.Elif(taken):
        m.d.sync += [f.position.eq(f.position + 1), f.total.eq(f.total + byte)]
        with m.Switch(f.position):
            with m.Case(0):
                m.d.sync += f.command.eq(byte)
            with m.Case(1):
                m.d.sync += f.count.eq(byte)
            with m.Case(2, 3, 4, 5):                        # the address, little-endian
                m.d.sync += f.address.eq((f.address >> 8) | (byte << 24))
        with m.If(f.completed):
            ok = good_sum & good_command
            m.d.sync += [f.inside.eq(0), f.answering.eq(1),
                         f.write.eq(ok & (f.command == bridge.Command.WRITE)),
                         f.read.eq(ok & (f.command == bridge.Command.READ)),
                         f.status.eq(Mux(~good_sum, bridge.Status.BAD_CHECKSUM,
                                         Mux(~good_command, bridge.Status.BAD_COMMAND,
                                             bridge.Status.OK)))]
    return f


def _check_bus(m, axi, frame):
    """The bus transactions the last frame asked for, and no others."""
    b = SimpleNamespace(writes=Signal(8, name="b_writes"), written=Signal(8, name="b_written"),
                        responses=Signal(8, name="b_responses"), reads=Signal(8, name="b_reads"),
                        returned=Signal(8, name="b_returned"), error=Signal(name="b_error"))
    aw_fire, w_fire = axi.awvalid & axi.awready, axi.wvalid & axi.wready
    ar_fire, r_fire = axi.arvalid & axi.arready, axi.rvalid & axi.rready
    b_fire = axi.bvalid & axi.bready
    b.fired = aw_fire | w_fire | ar_fire | r_fire | b_fire
    with m.If(frame.completed):
        m.d.sync += [b.writes.eq(0), b.written.eq(0), b.responses.eq(0), b.reads.eq(0),
                     b.returned.eq(0), b.error.eq(0)]
    with m.Else():
        m.d.sync += [b.writes.eq(b.writes + aw_fire), b.written.eq(b.written + w_fire),
                     b.responses.eq(b.responses + b_fire), b.reads.eq(b.reads + ar_fire),
                     b.returned.eq(b.returned + r_fire),
                     b.error.eq(b.error | (b_fire & (axi.bresp != RESP_OKAY))
                                | (r_fire & (axi.rresp != RESP_OKAY)))]

    def at(n):
        return (frame.address + 4 * n)[:ADDRESS_BITS]

    may_write = frame.answering & frame.write & ~b.error
    may_read = frame.answering & frame.read & ~b.error
    m.d.comb += [
        Assert(~axi.awvalid | (may_write & (b.writes < frame.count)
                               & (b.responses == b.writes) & (axi.awaddr == at(b.writes)))),
        Assert(~axi.wvalid | (may_write & (b.written < frame.count)
                              & (b.responses == b.written) & (axi.wstrb == 0xF))),
        Assert(~axi.bready | ((b.responses < b.writes) & (b.responses < b.written))),
        Assert(~axi.arvalid | (may_read & (b.reads < frame.count) & (b.returned == b.reads)
                               & (axi.araddr == at(b.reads)))),
        Assert(~axi.rready | (b.returned < b.reads)),
        Assert(held(m, axi.awvalid, axi.awready, [axi.awaddr])),
        Assert(held(m, axi.wvalid, axi.wready, [axi.wdata, axi.wstrb])),
        Assert(held(m, axi.arvalid, axi.arready, [axi.araddr])),
    ]
    b.finished = (b.error | ~(frame.write | frame.read)
                  | (frame.write & (b.responses == frame.count))
                  | (frame.read & (b.returned == frame.count)))
    return b


def _check_reply(m, byte_out, frame, burst):
    """The response to the last frame, after its burst; returns its handshake, the
    position in it of the byte offered, its words, its running sum and its last byte."""
    fire = byte_out.valid & byte_out.ready
    position = Signal(range(4 * bridge.MAX_COUNT + 8), name="o_position")
    total = Signal(8, name="o_total")
    status = Mux(burst.error & (frame.status == bridge.Status.OK), bridge.Status.BUS_ERROR,
                 frame.status)
    words = Mux(frame.read & ~burst.error, frame.count, 0)
    last = 3 + 4 * words
    with m.If(frame.completed):
        m.d.sync += [position.eq(0), total.eq(0)]
    with m.Elif(fire):
        m.d.sync += [position.eq(position + 1),
                     total.eq(Mux(position == 0, 0, total + byte_out.payload))]
        with m.If(position == last):
            m.d.sync += frame.answering.eq(0)
    payload = byte_out.payload
    m.d.comb += [
        Assert(~byte_out.valid | (frame.answering & burst.finished & (position <= last))),
        Assert(~byte_out.valid | (position != 0) | (payload == bridge.RESPONSE_SYNC)),
        Assert(~byte_out.valid | (position != 1) | (payload == status)),
        Assert(~byte_out.valid | (position != 2) | (payload == words)),
        Assert(~byte_out.valid | (position != last) | ((total + payload)[:8] == 0)),
        Assert(held(m, byte_out.valid, byte_out.ready, [byte_out.payload])),
    ]
    return SimpleNamespace(fire=fire, position=position, words=words, total=total, last=last)


def _invariants(m, r, frame, burst, reply, busy):
    """Where the core is in a frame, and what its registers hold there: the lemmas that
    make the properties provable by induction over a short window (a host may pause
    between bytes for any time, so no window reaches back to a frame's start)."""
    f, b, state, p = frame, burst, r.ongoing, frame.position
    position = reply.position
    m.d.comb += [
        Assert(state("SYNC") == (~f.inside & ~busy)),
        Assert(~f.inside | (p <= 6 + f.data_bytes)),
        Assert(state("COMMAND") == (f.inside & (p == 0))),
        Assert(state("COUNT") == (f.inside & (p == 1))),
        Assert(state("ADDRESS") == (f.inside & (p >= 2) & (p <= 5))),
        Assert(state("DATA") == (f.inside & (p >= 6) & (p < 6 + f.data_bytes))),
        Assert(state("CHECKSUM") == (f.inside & (p == 6 + f.data_bytes))),
        Assert(~(state("COMMAND") | state("COUNT")) | (r.index == 0)),
        Assert(~state("ADDRESS") | (r.index == p - 2)),
        Assert(~state("DATA") | (r.index == p - 6)),
        Assert(~f.inside | ((r.total == f.total) & (r.address == f.address))),
        Assert(~f.inside | (p < 1) | (r.command == f.command)),
        Assert(~f.inside | (p < 2) | (r.count == f.count)),
        Assert(~busy | (~f.inside & (r.command == f.command) & (r.count == f.count))),
        Assert(~busy | (r.status == Mux(b.error, bridge.Status.BUS_ERROR, f.status))),
    ]
    bus_state = state("BUS") | state("WRITE") | state("WRITE_RESPONSE") \
        | state("READ_ADDRESS") | state("READ_DATA")
    m.d.comb += [
        Assert(~bus_state | ((f.write | f.read) & ~b.error & (r.index <= f.count) & (position == 0)
                             & (r.address == (f.address + 4 * r.index)[:32]))),
        Assert(~state("BUS") | (b.responses == Mux(f.write, r.index, 0))
               & (b.returned == Mux(f.read, r.index, 0))),
        Assert(~state("WRITE") | (f.write & (r.index < f.count) & (b.responses == r.index)
                                  & (b.writes == r.index + r.aw_done)
                                  & (b.written == r.index + r.w_done))),
        Assert(~state("WRITE_RESPONSE") | (f.write & (b.responses == r.index)
                                           & (b.writes == r.index + 1)
                                           & (b.written == r.index + 1))),
        Assert(~state("READ_ADDRESS") | (f.read & (r.index < f.count)
                                         & (b.reads == r.index) & (b.returned == r.index))),
        Assert(~state("READ_DATA") | (f.read & (r.index < f.count)
                                      & (b.reads == r.index + 1) & (b.returned == r.index))),
        Assert(state("WRITE") | ~(r.aw_done | r.w_done)),
        Assert(~(b.writes | b.written | b.responses).any() | f.write),
        Assert(~(b.reads | b.returned).any() | f.read),
    ]
    ok, write, read = bridge.Status.OK, bridge.Command.WRITE, bridge.Command.READ
    counted = [b.writes, b.written, b.responses, b.reads, b.returned]
    accepted = (f.count != 0) & (f.command == Mux(f.write, write, read))
    m.d.comb += [           # the parser's own bookkeeping
        Assert(~(f.write & f.read) & (f.status != bridge.Status.BUS_ERROR)),
        Assert(~f.answering | ~(f.write | f.read) | accepted),
        Assert(~f.answering | ((f.status == ok) == (f.write | f.read))),
        Assert(~f.answering | (position <= reply.last)),
        Assert(~f.answering | ~b.error | f.write | f.read),
        Assert(~f.answering | Cat(*(n <= f.count for n in counted)).all()),
        Assert(bus_state | ((b.writes == b.written) & (b.written == b.responses)
                            & (b.reads == b.returned))),
        Assert(bus_state | ~busy | (b.finished & (r.replied == reply.words))),
        Assert(~bus_state | (r.replied == 0)),
    ]
    data_state = state("REPLY_FETCH") | state("REPLY_LOAD") | state("REPLY_DATA")
    m.d.comb += [
        Assert(~state("REPLY_SYNC") | (position == 0)),
        Assert(~state("REPLY_STATUS") | (position == 1)),
        Assert(~state("REPLY_COUNT") | (position == 2)),
        Assert(~(data_state | state("REPLY_CHECKSUM")) | ((position == 3 + r.index)
                                                          & (r.replied == reply.words)
                                                          & (r.index <= 4 * reply.words))),
        Assert(~(state("REPLY_FETCH") | state("REPLY_LOAD")) | (r.index[:2] == 0)),
        Assert(~state("REPLY_CHECKSUM") | (r.index == 4 * reply.words)),
        Assert(~(data_state | state("REPLY_CHECKSUM") | state("REPLY_COUNT")
                 | state("REPLY_STATUS")) | (r.total == reply.total)),
    ]
