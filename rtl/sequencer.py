"""The sequencer: fetches instructions, drives the tiles and the requantiser, and reports
every counted event. It owns the tiles; the memories belong to the top, which shares
their ports with the host while the sequencer is idle."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import ACC_BITS, INPUT_BITS, WEIGHT_BITS
from golden.isa import (FIELDS, FLAG_ACCUMULATE, FLAG_OFFSET_INPUTS, WORDS_PER_INSTRUCTION,
                        ErrorCode, Opcode)
from golden.regmap import COUNTERS

from .crossbar_tile import CrossbarTile, tree_sum
from .requantizer import Requantizer

__all__ = ["Sequencer", "instruction_layout", "quant_layout"]


def instruction_layout():
    """The 128-bit instruction as a Struct, built from golden.isa.FIELDS (bits no field
    names are `unused`)."""
    fields, position = {}, 0
    for name, (lsb, width) in sorted(FIELDS.items(), key=lambda item: item[1][0]):
        if lsb != position:
            raise AssertionError(f"gap before instruction field {name}")
        fields[name] = unsigned(width)
        position = lsb + width
    fields["unused"] = unsigned(32 * WORDS_PER_INSTRUCTION - position)
    return data.StructLayout(fields)


def quant_layout():
    """A qmem entry, as golden.device.pack_quant_params packs it."""
    return data.StructLayout({
        "bias": signed(32), "multiplier": unsigned(32), "shift": unsigned(8),
        "zero_point": signed(8), "clamp_min": signed(8), "clamp_max": signed(8),
        "reserved": unsigned(32)})


def mux_tree(select, values):
    """``values[select]`` as a balanced tree of 2:1 multiplexers, one level per select bit
    (shallow paths, where a chain of cases would be as deep as `values` is long)."""
    level, bit = list(values), 0
    while len(level) > 1:
        level = [Mux(select[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        bit += 1
    return level[0]


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
        Read ports of imem, wmem, amem, psum, qmem (data arrives a cycle after en; the amem
        and psum ports see a write of the same cycle). A wmem entry is a row for every tile.
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
            "wmem_data": In(c.tiles * c.cols * WEIGHT_BITS),
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
        count = Signal(16)                    # entries (REQUANT, MAX) or vectors (MVM feeds) to go
        src = Signal(address_bits)
        dst = Signal(address_bits)
        step = Signal(range(c.rows + 1))          # PROGRAM row
        program_phase = Signal(range(c.adc_share))  # PROGRAM: the tiles' write phase
        to_read = Signal(16)                   # REQUANT entries not yet read
        in_flight = Signal(1 + Requantizer.latency)   # REQUANT: an entry at each stage
        other = Signal(address_bits)           # MAX: the second operand's entry
        first_operand = Signal(c.rows * INPUT_BITS)
        max_pending = Signal()                 # MAX: an entry's maximum is due for writing

        # Run ends: DECODE registers them, CHECK compares (golden.device, in order).
        # Multiplying only the bits an in-range run can have keeps the products small.
        word = data.View(instruction_layout(), self.imem_data)
        bits = _bits(max(c.imem_depth, c.wmem_depth, c.amem_depth, c.psum_depth, c.qmem_depth))
        ends_width = 2 * bits + 2

        def run_end(base, stride, count):
            """base + stride * (count - 1), or all ones when that is past any memory."""
            span = (count - 1)[:16]
            beyond = ((((stride >> bits) != 0) & (span != 0))
                      | (((span >> bits) != 0) & (stride != 0)) | ((base >> bits) != 0))
            end = base[:bits] + stride[:bits] * span[:bits]
            return Mux(beyond, (1 << ends_width) - 1, end)

        tile_bits = _bits(c.tiles) + 1          # a tile index, or a count of tiles
        legal_log = _bits(tile_bits + 1)        # bits of the log2 of a legal tile count

        def lane_span(stride, log2):
            """stride * (2**log2 - 1), or all ones when that is past any memory. Only a
            range of at most `tiles` tiles matters (CHECK refuses the rest first)."""
            small = log2[:legal_log]
            beyond = ((stride >> bits) != 0) & (small != 0)
            return Mux(beyond, (1 << ends_width) - 1, (stride[:bits] << small) - stride[:bits])
        log_bits = len(word.ktiles_log2) + 2
        mvm_log = Signal(log_bits)             # log2 of the tiles an MVM uses
        src_end = Signal(ends_width)
        other_end = Signal(ends_width)         # MAX: aux + aux2 * (count - 1)
        dst_end = Signal(ends_width)
        k_span = Signal(ends_width)            # MVM: aux * (ktiles - 1)
        n_span = Signal(ends_width)            # MVM: aux2 * (ngroups - 1)
        decode_ends = [src_end.eq(run_end(word.src, word.src_stride, word.count)),
                       other_end.eq(run_end(word.aux, word.aux2, word.count)),
                       dst_end.eq(run_end(word.dst, word.dst_stride, word.count)),
                       k_span.eq(lane_span(word.aux, word.ktiles_log2)),
                       n_span.eq(lane_span(word.aux2, word.ngroups_log2)),
                       mvm_log.eq(word.ktiles_log2 + word.ngroups_log2 + word.replicas_log2)]

        def past(end, depth):
            return (ins.count != 0) & (end >= depth)

        bad_tile_program = (ins.count == 0) | (ins.tile + ins.count > c.tiles)
        misaligned_tile = (ins.tile & ((Const(1, 9) << ins.ktiles_log2[:4]) - 1)[:8]) != 0
        bad_tile_mvm = (misaligned_tile | (mvm_log >= tile_bits)
                        | (ins.tile + (Const(1, tile_bits + 1) << mvm_log[:legal_log])
                           > c.tiles))
        bad_shift = ins.adc_shift > c.max_adc_shift
        misaligned_program = (ins.src % c.rows) != 0
        bad_addr_program = ins.src + c.rows - 1 >= c.wmem_depth
        bad_addr_mvm = past(src_end + k_span, c.amem_depth) | past(dst_end + n_span, c.psum_depth)
        misaligned_requant = ins.aux2 >= c.rows // c.cols
        bad_addr_requant = (past(src_end, c.psum_depth) | past(dst_end, c.amem_depth)
                            | (ins.aux >= c.qmem_depth))
        bad_addr_max = (past(src_end, c.amem_depth) | past(other_end, c.amem_depth)
                        | past(dst_end, c.amem_depth))

        # MVM shape, fixed at CHECK: each tile's place in the range (golden.isa: tile
        # first + (r * ngroups + n) * ktiles + k), and the round's feeds, writes and period.
        klog, nlog, rlog = ins.ktiles_log2, ins.ngroups_log2, ins.replicas_log2
        n_conv = c.steps * c.adc_share
        # Widths from the config: a legal MVM's E and G are at most `tiles`.
        round_bits = (2 * c.tiles + n_conv + 4).bit_length()
        feeds = Signal(tile_bits + 1)          # E = replicas * ktiles
        writes = Signal(tile_bits + 1)         # G = replicas * ngroups
        period = Signal(round_bits)            # P = max(N, E + 2, G + 1)
        k_last = Signal(tile_bits)             # ktiles - 1
        n_last = Signal(tile_bits)             # ngroups - 1
        round_vectors = Signal(tile_bits + 1)  # replicas
        in_mvm = Signal(c.tiles)               # tiles of the range
        slot = [Signal(tile_bits, name=f"slot_t{t}") for t in range(c.tiles)]     # r * K + k
        replica = [Signal(tile_bits, name=f"replica_t{t}") for t in range(c.tiles)]
        check_shape = []
        for t in range(c.tiles):
            offset = (Const(t, tile_bits + 1) - ins.tile)[:tile_bits]
            k = offset & ((Const(1, tile_bits) << klog) - 1)
            r = offset >> (klog + nlog)
            check_shape += [in_mvm[t].eq((t >= ins.tile) & (r < (Const(1, tile_bits + 1) << rlog))),
                            slot[t].eq((r << klog) | k), replica[t].eq(r)]
        # Only a legal shape matters (CHECK refuses the rest): log2 E, log2 G < tile_bits.
        e_value = (Const(1, tile_bits + 1) << (rlog + klog)[:legal_log])[:tile_bits + 1]
        g_value = (Const(1, tile_bits + 1) << (rlog + nlog)[:legal_log])[:tile_bits + 1]
        longest = Mux(e_value + 2 > g_value + 1, e_value + 2, g_value + 1)
        one = Const(1, tile_bits + 1)
        check_shape += [feeds.eq(e_value), writes.eq(g_value),
                        period.eq(Mux(longest > n_conv, longest, n_conv)),
                        k_last.eq((one << klog[:legal_log]) - 1),
                        n_last.eq((one << nlog[:legal_log]) - 1),
                        round_vectors.eq(one << rlog[:legal_log])]

        # Round engines of an MVM (golden.device's timing contract). `cycle` counts from
        # the last start (from 1 on entry); feeds run at cycles 1..E of it, a start at E + 2
        # for the first round and at P after, the writes from the cycle the tiles are done.
        cycle = Signal(round_bits)
        started_any = Signal()
        # A round's vectors (at most `replicas`) and whether it is the run's last pass from
        # the feed to the start to the writes; only the feed counts what is left.
        feed_round_vectors = Signal(tile_bits + 1)
        start_pending = Signal()               # a fed round waits for its start
        start_vectors = Signal(tile_bits + 1)
        start_last = Signal()
        conv_vectors = Signal(tile_bits + 1)   # the round converting
        conv_last = Signal()
        feed_index = Signal(tile_bits + 1)     # slot of the next feed (r * K + k)
        feed_k = Signal(tile_bits)
        feed_r = Signal(tile_bits + 1)
        # After a round's last vector, the vector's entry is the next round's first.
        feed_vector = Signal(address_bits)     # entry of (vector v, K block 0)
        feed_addr = Signal(address_bits)
        latch_valid = Signal()                 # the entry read last cycle goes to ...
        latch_slot = Signal(tile_bits + 1)     # ... the tiles of this slot
        wb_vectors = Signal(tile_bits + 1)     # the round being written
        wb_last = Signal()
        wb_active = Signal()
        wb_index = Signal(tile_bits + 1)       # group of the next psum read (r * G + n)
        wb_n = Signal(tile_bits)
        wb_r = Signal(tile_bits + 1)
        wb_vector = Signal(address_bits)       # entry of (vector v, output block 0)
        wb_addr = Signal(address_bits)
        write_valid = Signal()                 # a psum write this cycle, of ...
        write_enable = Signal()                # ... a vector of the run (not past count)
        write_group = Signal(tile_bits + 1)
        write_addr = Signal(address_bits)
        write_last = Signal()                  # the run's last write
        tree_base = Signal(range(2 * (1 << (c.tiles - 1).bit_length()) + 1))

        # The adder tree: level L sums tiles i * 2**L .. (i + 1) * 2**L - 1 (int32, wrapping);
        # group g of an MVM is node (log2 ktiles, first / ktiles + g), aligned by CHECK.
        width = 1 << (c.tiles - 1).bit_length()
        level = [Cat(tile.result[k].as_signed()[:ACC_BITS] for k in range(c.cols))
                 for tile in tiles] + [Const(0, c.cols * ACC_BITS)] * (width - c.tiles)
        nodes, offsets = [], []
        while True:
            offsets.append(len(nodes))
            nodes += level
            if len(level) == 1:
                break
            sums = []
            for i, (a, b) in enumerate(zip(level[0::2], level[1::2])):
                # A wire per node: an expression used twice (by the mux and the next
                # level) would be written out twice, and its inputs again, level by level.
                node = Signal(c.cols * ACC_BITS, name=f"tree_l{len(offsets)}_{i}")
                m.d.comb += node.eq(Cat((a[k * ACC_BITS:(k + 1) * ACC_BITS]
                                         + b[k * ACC_BITS:(k + 1) * ACC_BITS])[:ACC_BITS]
                                        for k in range(c.cols)))
                sums.append(node)
            level = sums
        node_select = Signal(range(len(nodes) + 1))
        group_sum = Signal(c.cols * ACC_BITS)
        m.d.comb += group_sum.eq(mux_tree(node_select, nodes))
        level_offset = Array(Const(offsets[min(L, len(offsets) - 1)], len(tree_base))
                             for L in range(1 << len(klog)))
        check_shape.append(tree_base.eq(level_offset[klog] + (ins.tile >> klog)))

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
        converting = [tile.converting for tile in tiles]
        step_starts = [tile.step_start for tile in tiles]
        cell_writes = [tile.w_stream.valid & tile.w_stream.ready for tile in tiles]
        # Balanced sums: a chain of `tiles` adders is a path Amaranth's netlist checks walk
        # from every node (elaboration grew with the square of the tiles).
        tiles_converting = Signal(range(c.tiles + 1))
        tiles_written = Signal(range(c.tiles + 1))
        m.d.comb += [tiles_converting.eq(tree_sum(converting)), tiles_written.eq(tree_sum(cell_writes))]
        m.d.comb += [
            ev.cycles.eq(self.running),
            ev.tile_busy_cycles.eq(tiles_converting),
            ev.dac_conversions.eq(tree_sum(step_starts) * c.rows),
            ev.adc_conversions.eq(tiles_converting * (c.adc_groups * c.slices)),
            ev.cell_reads.eq(tiles_converting * (2 * c.rows * c.adc_groups * c.slices)),
            ev.cell_writes.eq(tiles_written * (2 * c.cols * c.slices)),
            ev.tile_programs.eq(0),
            ev.imem_reads.eq(self.imem_en), ev.wmem_reads.eq(tiles_written),
            ev.amem_reads.eq(self.amem_en), ev.amem_writes.eq(self.amem_wen.any()),
            ev.psum_reads.eq(self.psum_en), ev.psum_writes.eq(self.psum_wen),
            ev.qmem_reads.eq(self.qmem_en),
        ]
        tile_starts = Signal(c.tiles)
        for t, tile in enumerate(tiles):
            m.d.comb += [tile.start.eq(tile_starts[t]), tile.adc_shift.eq(ins.adc_shift),
                         tile.offset_inputs.eq((ins.flags & FLAG_OFFSET_INPUTS).any())]
        m.d.comb += ev.mvm_products.eq(tree_sum(tile_starts[t] for t in range(c.tiles)))

        def walk(lane, lane_last, replica, vector, addr, vector_stride, lane_stride):
            """One step of a round's walk over (replica, lane) entries, lanes inner: the
            next lane's entry, or the next replica's vector's first."""
            with m.If(lane == lane_last):
                m.d.sync += [lane.eq(0), replica.eq(replica + 1),
                             vector.eq(vector + vector_stride), addr.eq(vector + vector_stride)]
            with m.Else():
                m.d.sync += [lane.eq(lane + 1), addr.eq(addr + lane_stride)]

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
                             other.eq(ins.aux), dst.eq(ins.dst), step.eq(0), program_phase.eq(0),
                             in_flight.eq(0),
                             max_pending.eq(0), check_shape,
                             cycle.eq(1), started_any.eq(0), start_pending.eq(0),
                             feed_index.eq(0), feed_k.eq(0),
                             feed_r.eq(0), feed_vector.eq(ins.src), feed_addr.eq(ins.src),
                             latch_valid.eq(0),
                             wb_active.eq(0), wb_index.eq(0),
                             wb_n.eq(0), wb_r.eq(0), wb_vector.eq(ins.dst), wb_addr.eq(ins.dst),
                             write_valid.eq(0)]
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
                    with m.Case(Opcode.MVM):
                        dispatch([(bad_tile_mvm, ErrorCode.BAD_TILE),
                                  (bad_shift, ErrorCode.BAD_SHIFT),
                                  (bad_addr_mvm, ErrorCode.BAD_ADDRESS)], "MVM")
                    with m.Case(Opcode.REQUANT):
                        dispatch([(misaligned_requant, ErrorCode.MISALIGNED),
                                  (bad_addr_requant, ErrorCode.BAD_ADDRESS)], "REQUANT")
                    with m.Case(Opcode.MAX):
                        dispatch([(bad_addr_max, ErrorCode.BAD_ADDRESS)], "MAX_FIRST")
                    with m.Default():
                        stop(ErrorCode.ILLEGAL_OPCODE)
                m.d.comb += ev.instructions.eq(valid)

            # PROGRAM: rows * adc_share + 1 cycles; row k is read at cycle k * adc_share and
            # offered in the adc_share cycles after (the read port holds it), to every tile
            # of the range from its own lane.
            with m.State("PROGRAM"):
                # Cycle step * adc_share + program_phase: row `step` is read at phase 0;
                # the row offered is the one read before.
                offering = (program_phase != 0) | (step != 0)
                row = Mux(program_phase == 0, step - 1, step)
                first_offer = ((step == 1) if c.adc_share == 1
                               else (step == 0) & (program_phase == 1))
                with m.If((step < c.rows) & (program_phase == 0)):
                    m.d.comb += [self.wmem_en.eq(1), self.wmem_addr.eq(src + step)]
                with m.If(program_phase == c.adc_share - 1):
                    m.d.sync += [step.eq(step + 1), program_phase.eq(0)]
                with m.Else():
                    m.d.sync += program_phase.eq(program_phase + 1)
                with m.If(first_offer):                      # each tile's first row
                    m.d.comb += ev.tile_programs.eq(tree_sum(tile.w_stream.valid for tile in tiles))
                with m.If(offering):
                    lane_bits = c.cols * WEIGHT_BITS
                    lane = lambda k: self.wmem_data[k * lane_bits:(k + 1) * lane_bits]
                    for t, tile in enumerate(tiles):
                        # its own lane, or lane t mod 2**j when aux = j + 1 (isa.program_lanes)
                        weights = lane(t)
                        for j in range(c.tiles.bit_length()):
                            if t % (1 << j) != t:
                                weights = Mux(ins.aux == j + 1, lane(t % (1 << j)), weights)
                        m.d.comb += [tile.w_stream.valid.eq((t >= ins.tile)
                                                            & (t < ins.tile + ins.count)),
                                     tile.w_stream.payload.row.eq(row),
                                     tile.w_stream.payload.weights.eq(weights)]
                with m.If((step == c.rows) & (program_phase == 0)):
                    next_instruction()

            # MVM: three engines over rounds of `replicas` vectors (feed, start, write).
            with m.State("MVM"):
                m.d.sync += cycle.eq(cycle + 1)
                # Feed: slot e = r * K + k of the next round reads entry
                # src + v * src_stride + k * k_stride (v = round * R + r), if v < count.
                feeding = (cycle >= 1) & (cycle <= feeds) & (count != 0)
                m.d.comb += feed_round_vectors.eq(Mux(count > round_vectors, round_vectors,
                                                      count))
                with m.If(feeding):
                    active = feed_r < feed_round_vectors
                    m.d.comb += [self.amem_en.eq(active), self.amem_addr.eq(feed_addr)]
                    m.d.sync += [latch_valid.eq(active), latch_slot.eq(feed_index),
                                 feed_index.eq(feed_index + 1)]
                    walk(feed_k, k_last, feed_r, feed_vector, feed_addr, ins.src_stride, ins.aux)
                    with m.If(cycle == feeds):               # the round's last feed
                        m.d.sync += [count.eq(count - feed_round_vectors),
                                     start_pending.eq(1), start_vectors.eq(feed_round_vectors),
                                     start_last.eq(count == feed_round_vectors),
                                     feed_index.eq(0), feed_r.eq(0)]
                with m.Else():
                    m.d.sync += latch_valid.eq(0)
                for t, tile in enumerate(tiles):
                    m.d.comb += [tile.i_stream.valid.eq(latch_valid & in_mvm[t]
                                                        & (slot[t] == latch_slot)),
                                 tile.i_stream.payload.eq(self.amem_data)]
                # Start: the round's tiles of vectors below count, all at once.
                start_now = start_pending & Mux(started_any, cycle == period, cycle == feeds + 2)
                with m.If(start_now):
                    m.d.comb += tile_starts.eq(Cat(in_mvm[t] & (replica[t] < start_vectors)
                                                   for t in range(c.tiles)))
                    m.d.sync += [cycle.eq(1), started_any.eq(1), start_pending.eq(0),
                                 conv_vectors.eq(start_vectors), conv_last.eq(start_last)]
                # Write: from the cycle the tiles are done, group g = r * G + n a cycle: its
                # psum entry dst + v * dst_stride + n * n_stride is read, and written the
                # next cycle with the group's sum (added to what was read, accumulating).
                # (The round's facts move on in its last conversion cycle: the next round
                # may start in that very cycle.)
                any_done = Cat(tile.done for tile in tiles).any()
                with m.If(Cat(tile.finishing for tile in tiles).any()):
                    m.d.sync += [wb_vectors.eq(conv_vectors), wb_last.eq(conv_last)]
                reading = Signal()
                m.d.comb += reading.eq(any_done | wb_active)
                with m.If(reading):
                    active = wb_r < wb_vectors
                    m.d.comb += [self.psum_en.eq((ins.flags & FLAG_ACCUMULATE).any() & active),
                                 self.psum_addr.eq(wb_addr)]
                    last_group = wb_index == writes - 1
                    m.d.sync += [write_valid.eq(1), write_enable.eq(active),
                                 write_group.eq(wb_index), write_addr.eq(wb_addr),
                                 write_last.eq(last_group & wb_last),
                                 wb_active.eq(~last_group), wb_index.eq(wb_index + 1)]
                    walk(wb_n, n_last, wb_r, wb_vector, wb_addr, ins.dst_stride, ins.aux2)
                    with m.If(last_group):
                        m.d.sync += [wb_index.eq(0), wb_r.eq(0)]
                with m.Else():
                    m.d.sync += write_valid.eq(0)
                m.d.comb += node_select.eq(tree_base + write_group)
                with m.If(write_valid):
                    accumulate = (ins.flags & FLAG_ACCUMULATE).any()
                    lanes = []
                    for k in range(c.cols):
                        old = self.psum_data[k * ACC_BITS:(k + 1) * ACC_BITS]
                        new = group_sum[k * ACC_BITS:(k + 1) * ACC_BITS]
                        lanes.append((new + (old & accumulate.replicate(ACC_BITS)))[:ACC_BITS])
                    m.d.comb += [self.psum_wen.eq(write_enable), self.psum_waddr.eq(write_addr),
                                 self.psum_wdata.eq(Cat(lanes))]
                    with m.If(write_last):
                        next_instruction()

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

            # MAX, 2 cycles an entry + 1: read one operand; read the other while keeping the
            # first; write the maximum while reading the next entry's first operand (the
            # read sees that write, so a run that reads what it wrote works entry by entry).
            with m.State("MAX_FIRST"):
                with m.If(max_pending):
                    lanes = []
                    for r in range(c.rows):
                        a = first_operand[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                        b = self.amem_data[r * INPUT_BITS:(r + 1) * INPUT_BITS].as_signed()
                        lanes.append(Mux(a > b, a, b))
                    m.d.comb += [self.amem_waddr.eq(dst), self.amem_wdata.eq(Cat(lanes)),
                                 self.amem_wen.eq((1 << c.rows) - 1)]
                    m.d.sync += dst.eq(dst + ins.dst_stride)
                with m.If(count != 0):
                    m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(src)]
                    m.d.sync += [src.eq(src + ins.src_stride), count.eq(count - 1)]
                    m.next = "MAX_OTHER"
                with m.Else():
                    next_instruction()
            with m.State("MAX_OTHER"):
                m.d.comb += [self.amem_en.eq(1), self.amem_addr.eq(other)]
                m.d.sync += [first_operand.eq(self.amem_data), other.eq(other + ins.aux2),
                             max_pending.eq(1)]
                m.next = "MAX_FIRST"

        return m
