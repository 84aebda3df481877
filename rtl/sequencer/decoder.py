"""The instruction decoder: registers an instruction and finds the error it ends with."""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.device import check_instruction
from golden.isa import FLAG_ACCUMULATE, FLAG_MAX, FLAG_REQUANTIZE, ErrorCode, Opcode

from .ports import address_width, instruction_layout, tile_widths

__all__ = ["InstructionDecoder"]


class InstructionDecoder(wiring.Component):
    """``load`` registers ``word`` as ``instruction``, with the ends of its runs; the
    cycle after (the sequencer's CHECK), ``error`` is the `ErrorCode` that
    :func:`golden.device.check_instruction` gives it (``NONE`` when it runs).

    The run ends are products (``base + stride * (count - 1)``): computing them in the
    load cycle keeps the multiplications off the path of the comparisons. Only the bits
    an in-range run can have are multiplied, which keeps the products small.

    Attributes
    ----------
    word : In(128)
    load : In(1)
    instruction : Out(instruction layout), registered
    error : Out(8), an `ErrorCode`, ``delay`` cycles after ``load``
    """

    model = staticmethod(check_instruction)    # model(golden.isa.decode(words), config)
    delay = 1

    def __init__(self, config):
        self.config = config
        super().__init__({"word": In(128), "load": In(1),
                          "instruction": Out(instruction_layout()), "error": Out(8)})

    def elaborate(self, platform):
        m = Module()
        ends = self._run_ends(m)
        failures = self._checks(self.instruction, ends)
        with m.Switch(self.instruction.opcode):
            with m.Case(Opcode.HALT):
                m.d.comb += self.error.eq(ErrorCode.NONE)
            for opcode, checks in failures.items():
                with m.Case(opcode):
                    # the first failed check, in golden.device's order
                    for i, (failed, code) in enumerate(checks):
                        with (m.If if i == 0 else m.Elif)(failed):
                            m.d.comb += self.error.eq(code)
            with m.Default():
                m.d.comb += self.error.eq(ErrorCode.ILLEGAL_OPCODE)
        return m

    def _widths(self):
        c = self.config
        bits = address_width(max(c.imem_depth, c.wmem_depth, c.amem_depth, c.psum_depth,
                                 c.qmem_depth))
        return bits, 2 * bits + 2

    def _run_ends(self, m):
        """Registers, loaded with the word: the last entry of each run and the MVM's tile
        count (log2), all ones when past any memory."""
        c = self.config
        word = data.View(instruction_layout(), self.word)
        bits, ends_width = self._widths()
        tile_bits, legal_log = tile_widths(c)
        beyond_all = (1 << ends_width) - 1

        def run_end(base, stride, count):
            span = (count - 1)[:16]
            beyond = ((((stride >> bits) != 0) & (span != 0))
                      | (((span >> bits) != 0) & (stride != 0)) | ((base >> bits) != 0))
            return Mux(beyond, beyond_all, base[:bits] + stride[:bits] * span[:bits])

        def lane_span(stride, log2):
            """stride * (2**log2 - 1); only a range of at most `tiles` tiles matters (the
            tile check refuses the rest first)."""
            small = log2[:legal_log]
            beyond = ((stride >> bits) != 0) & (small != 0)
            return Mux(beyond, beyond_all, (stride[:bits] << small) - stride[:bits])

        ends = {name: Signal(ends_width, name=name)
                for name in ("src_end", "other_end", "dst_end", "k_span", "n_span")}
        ends["mvm_log"] = Signal(len(word.ktiles_log2) + 2, name="mvm_log")
        with m.If(self.load):
            m.d.sync += [self.instruction.eq(word),
                         ends["src_end"].eq(run_end(word.src, word.src_stride, word.count)),
                         ends["other_end"].eq(run_end(word.aux, word.aux2, word.count)),
                         ends["dst_end"].eq(run_end(word.dst, word.dst_stride, word.count)),
                         ends["k_span"].eq(lane_span(word.aux, word.ktiles_log2)),
                         ends["n_span"].eq(lane_span(word.aux2, word.ngroups_log2)),
                         ends["mvm_log"].eq(word.ktiles_log2 + word.ngroups_log2
                                            + word.replicas_log2)]
        return ends

    def _checks(self, ins, ends):
        """Per opcode, (failed, code) in golden.device.check_instruction's order."""
        c = self.config
        tile_bits, legal_log = tile_widths(c)

        def past(end, depth):
            return (ins.count != 0) & (end >= depth)

        misaligned_tile = (ins.tile & ((Const(1, 9) << ins.ktiles_log2[:4]) - 1)[:8]) != 0
        mvm_log = ends["mvm_log"]
        input_end = ends["src_end"] + ends["k_span"]
        output_end = ends["dst_end"] + ends["n_span"]
        bad_address = past(input_end, c.amem_depth) | past(output_end, c.psum_depth)
        overlap = []
        if c.requantizing_mvms:
            requantize = (ins.flags & FLAG_REQUANTIZE).any()
            bad_flags = ((requantize & (ins.flags & FLAG_ACCUMULATE).any())
                         | ((ins.flags & FLAG_MAX).any() & ~requantize))
            groups = Const(1, tile_bits + 1) << ins.ngroups_log2[:legal_log]
            bad_address = past(input_end, c.amem_depth) | Mux(
                requantize, past(output_end, c.amem_depth) | (ins.qentry + groups > c.qmem_depth),
                past(output_end, c.psum_depth))
            overlap = [(requantize & (ins.count != 0)
                        & ~((input_end < ins.dst) | (output_end < ins.src)), ErrorCode.OVERLAP)]
        else:                 # without requantizing MVMs, their flags are refused
            bad_flags = (ins.flags & (FLAG_REQUANTIZE | FLAG_MAX)).any()
        bad_tile_mvm = (misaligned_tile | (mvm_log >= tile_bits)
                        | (ins.tile + (Const(1, tile_bits + 1) << mvm_log[:legal_log])
                           > c.tiles))
        return {
            Opcode.PROGRAM: [
                ((ins.count == 0) | (ins.tile + ins.count > c.tiles), ErrorCode.BAD_TILE),
                ((ins.src % c.rows) != 0, ErrorCode.MISALIGNED),
                (ins.src + c.rows - 1 >= c.wmem_depth, ErrorCode.BAD_ADDRESS)],
            Opcode.MVM: [
                (bad_tile_mvm, ErrorCode.BAD_TILE),
                (ins.adc_shift > c.max_adc_shift, ErrorCode.BAD_SHIFT),
                (bad_flags, ErrorCode.BAD_FLAGS),
                (bad_address, ErrorCode.BAD_ADDRESS),
                *overlap],
            Opcode.REQUANT: [
                (ins.aux2 >= c.rows // c.cols, ErrorCode.MISALIGNED),
                (past(ends["src_end"], c.psum_depth) | past(ends["dst_end"], c.amem_depth)
                 | (ins.aux >= c.qmem_depth), ErrorCode.BAD_ADDRESS)],
            Opcode.MAX: [
                (past(ends["src_end"], c.amem_depth) | past(ends["other_end"], c.amem_depth)
                 | past(ends["dst_end"], c.amem_depth), ErrorCode.BAD_ADDRESS)],
        }
