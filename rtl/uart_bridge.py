"""UART-to-AXI4-Lite bridge: executes golden.bridge request frames as bus transactions."""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import bridge

from .axi_lite import AXI4LiteSignature, RESP_OKAY
from .uart import UartRx, UartTx

__all__ = ["UartBridge"]


class UartBridge(wiring.Component):
    """Parses request frames from `rx`, runs them on `axi` (as manager) and answers on `tx`.

    A write burst is buffered until its checksum is known, so a damaged frame changes
    nothing. See :mod:`golden.bridge` for the framing.

    Attributes
    ----------
    rx : In(1)
    tx : Out(1)
    axi : Out(AXI4LiteSignature)
    """

    def __init__(self, divisor, addr_width):
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "axi": Out(AXI4LiteSignature(addr_width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        m.submodules.buffer = buffer = Memory(shape=32, depth=bridge.MAX_COUNT + 1, init=[])
        r = SimpleNamespace(
            buf_read=buffer.read_port(), buf_write=buffer.write_port(), utx=utx,
            command=Signal(8, name="command"), count=Signal(8, name="count"), address=Signal(32, name="address"),
            total=Signal(8, name="total"),                     # running byte sum for the checksum
            index=Signal(range(4 * bridge.MAX_COUNT + 1), name="index"),   # byte or word index in a field
            word=Signal(32, name="word"), status=Signal(8, name="status"),
            replied=Signal(8, name="replied"),                   # words the response carries
            byte_in=urx.o_stream)
        m.d.comb += r.byte_in.ready.eq(1)
        with m.FSM():
            self._request_states(m, r)
            self._bus_states(m, r)
            self._reply_states(m, r)
        return m

    def _request_states(self, m, r):
        """Sync, command, count, address, the write burst into the buffer, checksum."""
        command, count, address, total, index, word, status, replied = (
            r.command, r.count, r.address, r.total, r.index, r.word, r.status, r.replied)
        byte_in, buf_write = r.byte_in, r.buf_write
        got = byte_in.valid & byte_in.ready
        with m.State("SYNC"):
            with m.If(got & (byte_in.payload == bridge.REQUEST_SYNC)):
                m.d.sync += [total.eq(0), index.eq(0), address.eq(0)]
                m.next = "COMMAND"
        with m.State("COMMAND"):
            with m.If(got):
                m.d.sync += [command.eq(byte_in.payload), total.eq(total + byte_in.payload)]
                m.next = "COUNT"
        with m.State("COUNT"):
            with m.If(got):
                m.d.sync += [count.eq(byte_in.payload), total.eq(total + byte_in.payload)]
                m.next = "ADDRESS"
        with m.State("ADDRESS"):
            with m.If(got):
                m.d.sync += [address.eq((address >> 8) | (byte_in.payload << 24)),
                             total.eq(total + byte_in.payload), index.eq(index + 1)]
                with m.If(index == 3):
                    m.d.sync += index.eq(0)
                    with m.If((command == bridge.Command.WRITE) & (count != 0)):
                        m.next = "DATA"
                    with m.Else():
                        m.next = "CHECKSUM"
        with m.State("DATA"):
            with m.If(got):
                m.d.sync += [word.eq((word >> 8) | (byte_in.payload << 24)),
                             total.eq(total + byte_in.payload), index.eq(index + 1)]
                with m.If(index[:2] == 3):
                    m.d.comb += [buf_write.addr.eq(index[2:]), buf_write.en.eq(1),
                                 buf_write.data.eq((word >> 8) | (byte_in.payload << 24))]
                    with m.If(index[2:] == count - 1):
                        m.next = "CHECKSUM"
        with m.State("CHECKSUM"):
            with m.If(got):
                m.d.sync += [index.eq(0), replied.eq(0)]
                with m.If((total + byte_in.payload)[:8] != 0):
                    m.d.sync += status.eq(bridge.Status.BAD_CHECKSUM)
                    m.next = "REPLY_SYNC"
                with m.Elif(((command != bridge.Command.READ) & (command != bridge.Command.WRITE))
                            | (count == 0)):
                    m.d.sync += status.eq(bridge.Status.BAD_COMMAND)
                    m.next = "REPLY_SYNC"
                with m.Else():
                    m.d.sync += status.eq(bridge.Status.OK)
                    m.next = "BUS"

    def _bus_states(self, m, r):
        """One bus transaction per word; a SLVERR ends the burst."""
        axi = self.axi
        command, count, address, index, status, replied = (
            r.command, r.count, r.address, r.index, r.status, r.replied)
        buf_read, buf_write = r.buf_read, r.buf_write

        def word_done(response):
            """Next word of the burst, or the reply with BUS_ERROR after a SLVERR."""
            m.d.sync += [index.eq(index + 1), address.eq(address + 4)]
            with m.If(response != RESP_OKAY):
                m.d.sync += status.eq(bridge.Status.BUS_ERROR)
                m.next = "REPLY_SYNC"
            with m.Else():
                m.next = "BUS"

        with m.State("BUS"):
            with m.If(index == count):
                with m.If(command == bridge.Command.READ):
                    m.d.sync += replied.eq(count)
                m.next = "REPLY_SYNC"
            with m.Elif(command == bridge.Command.READ):
                m.next = "READ_ADDRESS"
            with m.Else():
                m.d.comb += [buf_read.addr.eq(index), buf_read.en.eq(1)]
                m.next = "WRITE"
        with m.State("READ_ADDRESS"):
            m.d.comb += [axi.araddr.eq(address), axi.arvalid.eq(1)]
            with m.If(axi.arready):
                m.next = "READ_DATA"
        with m.State("READ_DATA"):
            m.d.comb += axi.rready.eq(1)
            with m.If(axi.rvalid):
                m.d.comb += [buf_write.addr.eq(index), buf_write.en.eq(1),
                             buf_write.data.eq(axi.rdata)]
                word_done(axi.rresp)
        with m.State("WRITE"):
            m.d.comb += [axi.awaddr.eq(address), axi.awvalid.eq(1), axi.wdata.eq(buf_read.data),
                         axi.wstrb.eq(0xF), axi.wvalid.eq(1)]
            with m.If(axi.awready & axi.wready):
                m.next = "WRITE_RESPONSE"
        with m.State("WRITE_RESPONSE"):
            m.d.comb += axi.bready.eq(1)
            with m.If(axi.bvalid):
                word_done(axi.bresp)

    def _reply_states(self, m, r):
        """Response: sync, status, count, data, checksum."""
        utx, total, index, word, status, replied, buf_read = (
            r.utx, r.total, r.index, r.word, r.status, r.replied, r.buf_read)

        def send(value, next_state):
            m.d.comb += [utx.i_stream.valid.eq(1), utx.i_stream.payload.eq(value)]
            with m.If(utx.i_stream.ready):
                m.d.sync += total.eq(total + value)
                m.next = next_state

        with m.State("REPLY_SYNC"):
            m.d.comb += [utx.i_stream.valid.eq(1), utx.i_stream.payload.eq(bridge.RESPONSE_SYNC)]
            with m.If(utx.i_stream.ready):
                m.d.sync += [total.eq(0), index.eq(0)]
                m.next = "REPLY_STATUS"
        with m.State("REPLY_STATUS"):
            send(status, "REPLY_COUNT")
        with m.State("REPLY_COUNT"):
            send(replied, "REPLY_FETCH")
        with m.State("REPLY_FETCH"):
            with m.If(index[2:] == replied):
                m.next = "REPLY_CHECKSUM"
            with m.Else():
                m.d.comb += [buf_read.addr.eq(index[2:]), buf_read.en.eq(1)]
                m.next = "REPLY_LOAD"
        with m.State("REPLY_LOAD"):
            m.d.sync += word.eq(buf_read.data)
            m.next = "REPLY_DATA"
        with m.State("REPLY_DATA"):
            m.d.comb += [utx.i_stream.valid.eq(1), utx.i_stream.payload.eq(word[:8])]
            with m.If(utx.i_stream.ready):
                m.d.sync += [total.eq(total + word[:8]), word.eq(word >> 8),
                             index.eq(index + 1)]
                with m.If(index[:2] == 3):
                    m.next = "REPLY_FETCH"
        with m.State("REPLY_CHECKSUM"):
            m.d.comb += [utx.i_stream.valid.eq(1), utx.i_stream.payload.eq(-total)]
            with m.If(utx.i_stream.ready):
                m.next = "SYNC"
