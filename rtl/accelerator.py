"""The accelerator top: memories, sequencer (with the tiles), CSRs, counters, AXI4-Lite."""

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden import regmap

from .layouts import status_layout
from .axi_lite import AXI4LiteSignature, AXI4LiteTarget
from .crossbar_tile import CrossbarTile
from .sequencer import Sequencer

__all__ = ["Accelerator"]

WINDOW_SHIFT = (regmap.WINDOW_SPAN - 1).bit_length()


def _write_through(m, name, read, write, granularity, forward=None):
    """The read port's data, with the lanes written at its address in the cycle of the
    read replaced by what was written. The sequencer reads amem and psum in the cycle it
    writes them (pipelined MAX and MVM writes); this makes the run behave entry by entry,
    as golden.device does. (Done here rather than as a transparent port: Yosys's ECP5
    memory mapping asserts on a transparent port with byte lanes.) `forward` (psum's, with
    requantizing MVMs) loads the write data of its cycle as the read data without a read
    or a write: an MVM hands its sums to the requantisers this way, on wires that are
    there anyway; the read data is then held, as the port's own is, until the next read
    or forward."""
    hit = Signal(name=f"{name}_write_hit")
    written = Signal.like(write.data, name=f"{name}_written")
    lanes = Signal.like(write.en, name=f"{name}_written_lanes")
    if forward is None:             # registers that load every cycle (no enable to route)
        m.d.sync += [hit.eq(read.en & write.en.any() & (read.addr == write.addr)),
                     written.eq(write.data), lanes.eq(write.en)]
    else:
        with m.If(read.en | forward):
            m.d.sync += [hit.eq(forward | (write.en.any() & (read.addr == write.addr))),
                         written.eq(write.data),
                         lanes.eq(Mux(forward, Const(-1, len(write.en)), write.en))]
    return Cat(Mux(hit & lanes[i], written[i * granularity:(i + 1) * granularity],
                   read.data[i * granularity:(i + 1) * granularity])
               for i in range(len(write.en)))


class Accelerator(wiring.Component):
    """The whole device, as the host sees it through :mod:`golden.regmap`.

    Attributes
    ----------
    axi : In(AXI4LiteSignature(23))
        CSRs and memory windows. Unmapped addresses, writes to read-only registers and
        memory accesses while a program runs answer SLVERR.
    done : Out(1)
        Interrupt: the last run ended (HALT or error); cleared by start or soft reset.
    stuck : In(tiles * CrossbarTile.stuck_bits), only with ``fault_injection``
        Stuck cells for simulation (`golden.faults.FaultMap.port_value`, tile 0 lowest); a
        bitstream is built without it.
    """

    def __init__(self, config, fault_injection=False):
        self.config, self.fault_injection = config, fault_injection
        self.windows = regmap.memory_windows(config)
        stuck = ({"stuck": In(config.tiles * CrossbarTile.stuck_bits(config))}
                 if fault_injection else {})
        super().__init__({"axi": In(AXI4LiteSignature(regmap.ADDRESS_BITS)), "done": Out(1),
                          **stuck})

    def elaborate(self, platform):
        m = Module()
        m.submodules.axi = target = AXI4LiteTarget(regmap.ADDRESS_BITS)
        wiring.connect(m, wiring.flipped(self.axi), target.axi)
        bus = target.bus

        start, soft_reset = Signal(), Signal()
        seq = Sequencer(self.config, self.fault_injection)
        m.submodules.sequencer = ResetInserter(soft_reset)(seq)
        if self.fault_injection:
            m.d.comb += seq.stuck.eq(self.stuck)
        m.d.comb += [seq.start.eq(start), self.done.eq(seq.done | seq.error)]

        ports, second_ports = self._memories(m, seq)
        host = self._host_decode(bus)
        host_may_access = ~seq.running
        memory_hit = Cat(host["hits"].values()).any()
        self._share_ports(m, seq, ports, second_ports, bus, host)
        read_csr, read_csr_hit = self._csr_reads(m, seq, host, start | soft_reset)
        self._read_response(m, bus, ports, host, read_csr, read_csr_hit, memory_hit,
                            host_may_access)

        # Writes: CONTROL is the only writable CSR.
        control_hit = host["csr_hit"] & (host["offset"] == regmap.CSR["CONTROL"])
        with m.If(bus.w_en):
            with m.If(control_hit):
                m.d.comb += [start.eq(bus.w_data[0] & ~seq.running & ~bus.w_data[1]),
                             soft_reset.eq(bus.w_data[1])]
            with m.Elif(~(memory_hit & host_may_access)):
                m.d.comb += bus.w_err.eq(1)
        return m

    def _memories(self, m, seq):
        """One read and one write port per memory, an entry as its window lays it out, and
        a second read port, the sequencer's alone, for each memory it has one for
        (``<mem>2_*``: amem, where MAX reads both operands at once; on an FPGA, a second
        copy of the block RAM)."""
        ports, second = {}, {}
        for name, window in self.windows.items():
            memory = Memory(shape=unsigned(window.lanes * window.lane_bits), depth=window.depth,
                            init=[])
            m.submodules[name] = memory
            ports[name] = (memory.read_port(), memory.write_port(granularity=window.lane_bits),
                           window.lane_bits)
            if f"{name}2_addr" in seq.signature.members:
                second[name] = memory.read_port()
        return ports, second

    def _host_decode(self, bus):
        """The host request's window, entry and word (the cycle of the request)."""
        window_index = bus.addr[WINDOW_SHIFT:]
        offset = bus.addr[:WINDOW_SHIFT]
        host = {"window_index": window_index, "offset": offset, "csr_hit": window_index == 0,
                "hits": {}, "words": {}, "entries": {}}
        for name, window in self.windows.items():
            stride_bits = (window.entry_stride - 1).bit_length()
            entry, word = offset[stride_bits:], offset[2:stride_bits]
            host["hits"][name] = ((window_index == window.base >> WINDOW_SHIFT)
                                  & (entry < window.depth) & (word < window.entry_words)
                                  & (offset[:2] == 0))
            host["words"][name], host["entries"][name] = word, entry
        return host

    def _share_ports(self, m, seq, ports, second_ports, bus, host):
        """Each memory's ports: the sequencer's while it runs, the host's otherwise; a
        second read port, the sequencer's always."""
        for name, read in second_ports.items():
            port = lambda suffix: getattr(seq, f"{name}2_{suffix}")
            write, granularity = ports[name][1:]
            m.d.comb += [port("data").eq(_write_through(m, f"{name}2", read, write, granularity)),
                         read.addr.eq(port("addr")), read.en.eq(port("en"))]
        for name, (read, write, granularity) in ports.items():
            port = lambda suffix: getattr(seq, f"{name}_{suffix}")
            if name in ("amem", "psum"):
                forward = getattr(seq, f"{name}_forward", None)
                m.d.comb += port("data").eq(_write_through(m, name, read, write, granularity,
                                                           forward))
            else:
                m.d.comb += port("data").eq(read.data)
            with m.If(seq.running):
                m.d.comb += [read.addr.eq(port("addr")), read.en.eq(port("en"))]
                if hasattr(seq, f"{name}_wen"):
                    wen = port("wen")
                    if len(wen) == 1:       # whole-entry write enable to every granule
                        wen = wen.replicate(len(write.en))
                    m.d.comb += [write.addr.eq(port("waddr")), write.en.eq(wen),
                                 write.data.eq(port("wdata"))]
            with m.Else():
                hit, entry = host["hits"][name], host["entries"][name]
                m.d.comb += [read.addr.eq(entry), read.en.eq(bus.r_en & hit),
                             write.addr.eq(entry),
                             # every word of the entry sees the bus word; an entry narrower
                             # than a word (a wmem of 1 tile x 1 col) takes its low bits
                             write.data.eq(bus.w_data.replicate(-(-len(write.data) // 32))
                                           [:len(write.data)])]
                with m.If(bus.w_en & hit):
                    lanes_per_word = 32 // granularity
                    strobes = (bus.w_strb if granularity == 8 else bus.w_strb.any())
                    m.d.comb += write.en.eq(strobes << (host["words"][name] * lanes_per_word))

    def _csr_reads(self, m, seq, host, clear):
        """The CSR at the request's offset, and whether there is one. The counters sum the
        sequencer's events; `clear` (start or soft reset) zeroes them."""
        counters = {name: Signal(32, name=f"counter_{name}") for name in regmap.COUNTERS}
        for name, counter in counters.items():
            with m.If(clear):
                m.d.sync += counter.eq(0)
            with m.Else():
                m.d.sync += counter.eq(counter + getattr(seq.events, name))

        status = Signal(status_layout())
        m.d.comb += [status.busy.eq(seq.running), status.done.eq(seq.done),
                     status.error.eq(seq.error), status.error_code.eq(seq.error_code),
                     status.error_pc.eq(seq.error_pc)]
        csr_values = {regmap.CSR["ID"]: regmap.ID_VALUE, regmap.CSR["VERSION"]: regmap.VERSION,
                      regmap.CSR["CONTROL"]: 0, regmap.CSR["STATUS"]: status.as_value()}
        for field, address in regmap.CAPABILITIES.items():
            csr_values[address] = getattr(self.config, field)
        for name in regmap.COUNTERS:
            csr_values[regmap.counter_address(name)] = counters[name]

        read_csr, read_csr_hit = Signal(32), Signal()
        with m.Switch(host["offset"]):
            for address, value in csr_values.items():
                with m.Case(address):
                    m.d.comb += [read_csr.eq(value), read_csr_hit.eq(host["csr_hit"])]
        return read_csr, read_csr_hit

    def _read_response(self, m, bus, ports, host, read_csr, read_csr_hit, memory_hit,
                       host_may_access):
        """The read response, one cycle after r_en (registered with the request, like the
        memories' data); SLVERR for no CSR and no memory the host may read now."""
        last_value, last_err = Signal(32), Signal()
        last_memory = {name: Signal(name=f"read_{name}") for name in ports}
        # wide enough for the widest entry (a qmem entry is 4 x cols words: 512 at 128 cols)
        last_word = Signal(range(max(w.entry_words for w in self.windows.values())))
        with m.If(bus.r_en):
            m.d.sync += [last_value.eq(read_csr),
                         last_err.eq(~read_csr_hit & ~(memory_hit & host_may_access))]
            for name in ports:
                m.d.sync += last_memory[name].eq(host["hits"][name] & host_may_access)
            with m.Switch(host["window_index"]):
                for name, window in self.windows.items():
                    with m.Case(window.base >> WINDOW_SHIFT):
                        m.d.sync += last_word.eq(host["words"][name])
        m.d.comb += [bus.r_err.eq(last_err), bus.r_data.eq(last_value)]
        for name, (read, _, _) in ports.items():
            words = [read.data[32 * i:32 * (i + 1)] for i in range(self.windows[name].entry_words)]
            with m.If(last_memory[name]):
                with m.Switch(last_word):
                    for i, w in enumerate(words):
                        with m.Case(i):
                            m.d.comb += bus.r_data.eq(w)
