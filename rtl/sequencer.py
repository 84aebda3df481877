"""The sequencer: fetches instructions, drives the tiles and the requantiser, and reports
every counted event. It owns the tiles; the memories belong to the top, which shares
their ports with the host while the sequencer is idle."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import ACC_BITS, INPUT_BITS, WEIGHT_BITS
from golden.isa import FIELDS, ErrorCode, Opcode
from golden.regmap import COUNTERS

from .crossbar_tile import CrossbarTile
from .requantizer import Requantizer

__all__ = ["Sequencer", "instruction_layout", "quant_layout"]


def instruction_layout():
    """The 128-bit instruction as a Struct, built from golden.isa.FIELDS."""
    fields, position = {}, 0
    for name, (lsb, width) in sorted(FIELDS.items(), key=lambda item: item[1][0]):
        if lsb != position:
            raise AssertionError(f"gap before instruction field {name}")
        fields[name] = unsigned(width)
        position = lsb + width
    return data.StructLayout(fields)


def quant_layout():
    """A qmem entry, as golden.device.pack_quant_params packs it."""
    return data.StructLayout({
        "bias": signed(32), "multiplier": unsigned(32), "shift": unsigned(8),
        "zero_point": signed(8), "clamp_min": signed(8), "clamp_max": signed(8),
        "reserved": unsigned(32)})


def _bits(depth):
    return max(1, (depth - 1).bit_length())


class Sequencer(wiring.Component):
    """Runs a program per the timing contract of :mod:`golden.device`.

    Attributes
    ----------
    start : In(1)
        Run from pc 0 (ignored while running). A soft reset is the top's
        ``ResetInserter`` around this component, tiles included.
    running, done, error : Out(1)
    error_code : Out(8)
    error_pc : Out(16)
    <mem>_addr, <mem>_en, <mem>_data :
        Read ports of imem, wmem, amem, psum, qmem (data arrives a cycle after en).
    amem_waddr, amem_wen (one bit per lane), amem_wdata; psum_waddr, psum_wen, psum_wdata :
        Write ports.
    events : Out(StructLayout(counter name -> increment))
        What happened this cycle, one field per performance counter.
    """

    def __init__(self, config):
        self.config = c = config
        event_bits = {name: 32 for name in COUNTERS}
        super().__init__({
            "start": In(1),
            "running": Out(1), "done": Out(1), "error": Out(1),
            "error_code": Out(8), "error_pc": Out(16),
            "imem_addr": Out(_bits(c.imem_depth)), "imem_en": Out(1), "imem_data": In(128),
            "wmem_addr": Out(_bits(c.wmem_depth)), "wmem_en": Out(1),
            "wmem_data": In(c.cols * WEIGHT_BITS),
            "amem_addr": Out(_bits(c.amem_depth)), "amem_en": Out(1),
            "amem_data": In(c.rows * INPUT_BITS),
            "psum_addr": Out(_bits(c.psum_depth)), "psum_en": Out(1),
            "psum_data": In(c.cols * ACC_BITS),
            "qmem_addr": Out(_bits(c.qmem_depth)), "qmem_en": Out(1),
            "qmem_data": In(c.cols * 128),
            "amem_waddr": Out(_bits(c.amem_depth)), "amem_wen": Out(c.rows),
            "amem_wdata": Out(c.rows * INPUT_BITS),
            "psum_waddr": Out(_bits(c.psum_depth)), "psum_wen": Out(1),
            "psum_wdata": Out(c.cols * ACC_BITS),
            "events": Out(data.StructLayout({n: unsigned(w) for n, w in event_bits.items()})),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()

        tiles = [CrossbarTile(c) for _ in range(c.tiles)]
        for t, tile in enumerate(tiles):
            m.submodules[f"tile{t}"] = tile
        requantizers = [Requantizer() for _ in range(c.cols)]
        for k, requantizer in enumerate(requantizers):
            m.submodules[f"requantizer{k}"] = requantizer

        ins = Signal(instruction_layout())
        pc = Signal(range(c.imem_depth + 1))
        # Run addresses need only the memories' address bits: CHECK has proved every
        # address of the run in range (the increment after the last one may wrap).
        address_bits = _bits(max(c.wmem_depth, c.amem_depth, c.psum_depth))
        count = Signal(16)                    # vectors or entries still to go
        src = Signal(address_bits)
        dst = Signal(address_bits)
        tile_addr = Signal(address_bits)       # psum entry of the current tile rank
        remaining = Signal(c.tiles)            # MVM: selected tiles not yet written back
        step = Signal(range(c.rows + 1))          # PROGRAM row
        to_read = Signal(16)                   # REQUANT entries not yet read
        in_flight = Signal(1 + Requantizer.latency)   # REQUANT: an entry at each stage
        other = Signal(address_bits)           # MAX: the second operand's entry
        first_operand = Signal(c.rows * INPUT_BITS)

        # Run ends: DECODE registers them, CHECK compares (golden.device, in order).
        # Multiplying only the bits an in-range run can have keeps the products small.
        word = data.View(instruction_layout(), self.imem_data)
        bits = _bits(max(c.imem_depth, c.wmem_depth, c.amem_depth, c.psum_depth, c.qmem_depth))
        ends_width = 2 * bits + 2
        selected = sum(word.tile[t] for t in range(c.tiles))

        def run_end(base, stride, count):
            """base + stride * (count - 1), or all ones when that is past any memory."""
            span = (count - 1)[:16]
            beyond = ((((stride >> bits) != 0) & (span != 0))
                      | (((span >> bits) != 0) & (stride != 0)) | ((base >> bits) != 0))
            end = base[:bits] + stride[:bits] * span[:bits]
            return Mux(beyond, (1 << ends_width) - 1, end)

        src_end = Signal(ends_width)
        other_end = Signal(ends_width)         # MAX: aux + aux2 * (count - 1)
        dst_end = Signal(ends_width)
        rank_span = Signal(ends_width)         # MVM: psum offset of the last tile rank
        decode_ends = [src_end.eq(run_end(word.src, word.src_stride, word.count)),
                       other_end.eq(run_end(word.aux, word.aux2, word.count)),
                       dst_end.eq(run_end(word.dst, word.dst_stride, word.count)),
                       rank_span.eq(run_end(Const(0, 16), word.aux, selected))]

        def past(end, depth):
            return (ins.count != 0) & (end >= depth)

        bad_tile_program = ins.tile >= c.tiles
        bad_tile_mvm = (ins.tile[:c.tiles] == 0) | (ins.tile >> c.tiles != 0)
        misaligned_program = (ins.src % c.rows) != 0
        bad_addr_program = ins.src + c.rows - 1 >= c.wmem_depth
        bad_addr_mvm = past(src_end, c.amem_depth) | past(dst_end + rank_span, c.psum_depth)
        misaligned_requant = ins.aux2 >= c.rows // c.cols
        bad_addr_requant = (past(src_end, c.psum_depth) | past(dst_end, c.amem_depth)
                            | (ins.aux >= c.qmem_depth))
        bad_addr_max = (past(src_end, c.amem_depth) | past(other_end, c.amem_depth)
                        | past(dst_end, c.amem_depth))

        # The tile of the lowest remaining rank, one-hot.
        current = Signal(c.tiles)
        m.d.comb += current.eq(remaining & (~remaining + 1))
        current_result = Signal(c.cols * ACC_BITS)
        for t, tile in enumerate(tiles):
            with m.If(current[t]):
                m.d.comb += current_result.eq(tile.o_stream.payload)

        # One requantiser per lane, on the partial-sum and parameter entries just read.
        for k, rq in enumerate(requantizers):
            params = data.View(quant_layout(), self.qmem_data[k * 128:(k + 1) * 128])
            m.d.comb += [rq.acc.eq(self.psum_data[k * ACC_BITS:(k + 1) * ACC_BITS]),
                         rq.bias.eq(params.bias), rq.multiplier.eq(params.multiplier),
                         rq.shift.eq(params.shift[:5]), rq.zero_point.eq(params.zero_point),
                         rq.clamp_min.eq(params.clamp_min), rq.clamp_max.eq(params.clamp_max)]
        lane_bytes = Cat(rq.result for rq in requantizers)

        # Events measured from the datapath, not from the instruction stream.
        ev = self.events
        busy = [tile.busy for tile in tiles]
        converting = [tile.converting for tile in tiles]
        step_starts = [tile.step_start for tile in tiles]
        cell_writes = [tile.w_stream.valid & tile.w_stream.ready for tile in tiles]
        products = [tile.i_stream.valid & tile.i_stream.ready for tile in tiles]
        m.d.comb += [
            ev.cycles.eq(self.running),
            ev.tile_busy_cycles.eq(sum(busy)),
            ev.mvm_products.eq(sum(products)),
            ev.dac_conversions.eq(sum(step_starts) * c.rows),
            ev.adc_conversions.eq(sum(converting) * (c.adc_groups * c.slices)),
            ev.cell_reads.eq(sum(converting) * (2 * c.rows * c.adc_groups * c.slices)),
            ev.cell_writes.eq(sum(cell_writes) * (2 * c.cols * c.slices)),
            ev.imem_reads.eq(self.imem_en), ev.wmem_reads.eq(self.wmem_en),
            ev.amem_reads.eq(self.amem_en), ev.amem_writes.eq(self.amem_wen.any()),
            ev.psum_reads.eq(self.psum_en), ev.psum_writes.eq(self.psum_wen),
            ev.qmem_reads.eq(self.qmem_en),
        ]

        def stop(code):
            m.d.sync += [self.running.eq(0), self.error.eq(1), self.error_code.eq(code),
                         self.error_pc.eq(pc)]
            m.next = "IDLE"

        def next_instruction():
            m.d.sync += pc.eq(pc + 1)
            m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), self.running.eq(1), self.done.eq(0),
                                 self.error.eq(0), self.error_code.eq(0), self.error_pc.eq(0)]
                    m.next = "FETCH"

            with m.State("FETCH"):
                with m.If(pc >= c.imem_depth):
                    stop(ErrorCode.PC_OVERFLOW)
                with m.Else():
                    m.d.comb += [self.imem_en.eq(1), self.imem_addr.eq(pc)]
                    m.next = "DECODE"

            with m.State("DECODE"):
                m.d.sync += [ins.eq(word), decode_ends]
                m.next = "CHECK"

            with m.State("CHECK"):
                m.d.sync += [count.eq(ins.count), to_read.eq(ins.count), src.eq(ins.src),
                             other.eq(ins.aux),
                             dst.eq(ins.dst), tile_addr.eq(ins.dst), step.eq(0),
                             remaining.eq(ins.tile[:c.tiles]), in_flight.eq(0)]
                valid = Signal()

                def dispatch(checks, state, skip_empty_run=True):
                    """Stop on the first failed check (golden.device checks in this order),
                    else go to `state`, or straight on when the run is empty."""
                    for i, (failed, code) in enumerate(checks):
                        with (m.If if i == 0 else m.Elif)(failed):
                            stop(code)
                    with m.Else():
                        m.d.comb += valid.eq(1)
                        if skip_empty_run:
                            with m.If(ins.count == 0):
                                next_instruction()
                            with m.Else():
                                m.next = state
                        else:
                            m.next = state

                with m.Switch(ins.opcode):
                    with m.Case(Opcode.HALT):
                        m.d.comb += valid.eq(1)
                        m.d.sync += [self.running.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Case(Opcode.PROGRAM):
                        dispatch([(bad_tile_program, ErrorCode.BAD_TILE),
                                  (misaligned_program, ErrorCode.MISALIGNED),
                                  (bad_addr_program, ErrorCode.BAD_ADDRESS)],
                                 "PROGRAM", skip_empty_run=False)
                        m.d.comb += ev.tile_programs.eq(valid)
                    with m.Case(Opcode.MVM):
                        dispatch([(bad_tile_mvm, ErrorCode.BAD_TILE),
                                  (bad_addr_mvm, ErrorCode.BAD_ADDRESS)], "MVM_READ")
                    with m.Case(Opcode.REQUANT):
                        dispatch([(misaligned_requant, ErrorCode.MISALIGNED),
                                  (bad_addr_requant, ErrorCode.BAD_ADDRESS)], "REQUANT")
                    with m.Case(Opcode.MAX):
                        dispatch([(bad_addr_max, ErrorCode.BAD_ADDRESS)], "MAX_READ_FIRST")
                    with m.Default():
                        stop(ErrorCode.ILLEGAL_OPCODE)
                m.d.comb += ev.instructions.eq(valid)

            # PROGRAM: rows + 1 cycles; row k is read at cycle k and written at k + 1.
            with m.State("PROGRAM"):
                with m.If(step < c.rows):
                    m.d.comb += [self.wmem_en.eq(1), self.wmem_addr.eq(src + step)]
                with m.If(step != 0):
                    for t, tile in enumerate(tiles):
                        m.d.comb += [tile.w_stream.valid.eq(ins.tile == t),
                                     tile.w_stream.payload.row.eq(step - 1),
                                     tile.w_stream.payload.weights.eq(self.wmem_data)]
                m.d.sync += step.eq(step + 1)
                with m.If(step == c.rows):
                    next_instruction()

            # MVM, per vector: read, feed, convert, then read/write psum per tile rank.
            with m.State("MVM_READ"):
                m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(src)]
                m.d.sync += [src.eq(src + ins.src_stride), tile_addr.eq(dst),
                             remaining.eq(ins.tile[:c.tiles])]
                m.next = "MVM_FEED"
            with m.State("MVM_FEED"):
                for t, tile in enumerate(tiles):
                    m.d.comb += [tile.i_stream.valid.eq(remaining[t]),
                                 tile.i_stream.payload.eq(self.amem_data)]
                m.next = "MVM_WAIT"
            with m.State("MVM_WAIT"):
                result_valid = Cat(tile.o_stream.valid & current[t]
                                   for t, tile in enumerate(tiles)).any()
                with m.If(result_valid):
                    m.d.comb += [self.psum_en.eq(ins.flags[0]), self.psum_addr.eq(tile_addr)]
                    m.next = "MVM_WRITE"
            with m.State("MVM_PSUM_READ"):
                m.d.comb += [self.psum_en.eq(ins.flags[0]), self.psum_addr.eq(tile_addr)]
                m.next = "MVM_WRITE"
            with m.State("MVM_WRITE"):
                accumulate = ins.flags[0]
                lanes = []
                for k in range(c.cols):
                    old = self.psum_data[k * ACC_BITS:(k + 1) * ACC_BITS]
                    new = current_result[k * ACC_BITS:(k + 1) * ACC_BITS]
                    lanes.append((new + (old & accumulate.replicate(ACC_BITS)))[:ACC_BITS])
                m.d.comb += [self.psum_wen.eq(1), self.psum_waddr.eq(tile_addr),
                             self.psum_wdata.eq(Cat(lanes))]
                for t, tile in enumerate(tiles):
                    m.d.comb += tile.o_stream.ready.eq(current[t])
                m.d.sync += [remaining.eq(remaining & ~current),
                             tile_addr.eq(tile_addr + ins.aux)]
                with m.If((remaining & ~current) != 0):
                    m.next = "MVM_PSUM_READ"
                with m.Else():
                    m.d.sync += [count.eq(count - 1), dst.eq(dst + ins.dst_stride)]
                    with m.If(count == 1):
                        next_instruction()
                    with m.Else():
                        m.next = "MVM_READ"

            # REQUANT: one entry read a cycle; each is written Requantizer.latency + 1 later.
            with m.State("REQUANT"):
                reading = to_read != 0
                with m.If(reading):
                    m.d.comb += [self.psum_en.eq(1), self.psum_addr.eq(src),
                                 self.qmem_en.eq(1), self.qmem_addr.eq(ins.aux)]
                    m.d.sync += [src.eq(src + ins.src_stride), to_read.eq(to_read - 1)]
                m.d.sync += in_flight.eq(Cat(reading, in_flight[:-1]))
                with m.If(in_flight[-1]):
                    blocks = c.rows // c.cols
                    m.d.comb += [self.amem_waddr.eq(dst),
                                 self.amem_wdata.eq(lane_bytes.replicate(blocks)),
                                 ev.requantizations.eq(c.cols)]
                    for b in range(blocks):
                        with m.If(ins.aux2 == b):
                            m.d.comb += self.amem_wen.eq(((1 << c.cols) - 1) << (b * c.cols))
                    m.d.sync += [count.eq(count - 1), dst.eq(dst + ins.dst_stride)]
                    with m.If(count == 1):
                        next_instruction()

            # MAX, per entry: read one operand, read the other, write the lane-wise maximum.
            with m.State("MAX_READ_FIRST"):
                m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(src)]
                m.next = "MAX_READ_OTHER"
            with m.State("MAX_READ_OTHER"):
                m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(other)]
                m.d.sync += first_operand.eq(self.amem_data)
                m.next = "MAX_WRITE"
            with m.State("MAX_WRITE"):
                lanes = []
                for r in range(c.rows):
                    a = first_operand[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                    b = self.amem_data[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                    lanes.append(Mux(a > b, a, b))
                m.d.comb += [self.amem_waddr.eq(dst), self.amem_wdata.eq(Cat(lanes)),
                             self.amem_wen.eq((1 << c.rows) - 1)]
                m.d.sync += [src.eq(src + ins.src_stride), other.eq(other + ins.aux2),
                             dst.eq(dst + ins.dst_stride), count.eq(count - 1)]
                with m.If(count == 1):
                    next_instruction()
                with m.Else():
                    m.next = "MAX_READ_FIRST"

        return m
