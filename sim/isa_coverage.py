"""Functional coverage of the instruction set, with cocotb-coverage: which opcodes, field
classes, tile-range shapes, ADC shifts, input encodings and error codes the accelerator's
testbenches ran. `AcceleratorBench.run_program` samples every program it runs (each
instruction up to where the run stopped, and how it stopped).

The bins are classes, not values: a count of one or several; a stride of 0, 1 or more; an
MVM's K-reduction, N-split and replicas each one or several; the ADC shift 0, between, or
the config's largest. `isa_coverage()` returns ``{point: {bin: hits}}`` for the results.
"""

from cocotb_coverage.coverage import CoverPoint, coverage_db, coverage_section

from golden.isa import ErrorCode, Opcode

__all__ = ["sample_run", "isa_coverage"]

ONE_OR_MORE = ["one", "several"]
STRIDES = ["0", "1", "more"]


def _several(value):
    return "one" if value <= 1 else "several"


def _stride(value):
    return str(value) if value <= 1 else "more"


def _shift(ins, config):
    if ins.adc_shift == 0:
        return "0"
    return "largest" if ins.adc_shift == config.max_adc_shift else "between"


def _on(opcode, classify):
    """A point's `xf`: `classify(ins, config)` for instructions of `opcode`, else None
    (in no bin)."""
    return lambda ins, config: classify(ins, config) if ins.opcode == opcode else None


def _shape(ins, config):
    return "K {} x N {} x replicas {}".format(_several(1 << ins.ktiles_log2),
                                              _several(1 << ins.ngroups_log2),
                                              _several(1 << ins.replicas_log2))


MVM_WRITES = ("overwrite", "accumulate", "requantize", "requantize into max")


def _flags(ins, config):
    sums = ("requantize into max" if ins.max_into else "requantize" if ins.requantize
            else "accumulate" if ins.accumulate else "overwrite")
    encoding = "offset binary" if ins.offset_inputs else "two's complement"
    return f"{sums}, {encoding}"


_instruction_section = coverage_section(
    CoverPoint("isa.opcode", xf=lambda ins, config: Opcode(ins.opcode).name,
               bins=[op.name for op in Opcode]),
    CoverPoint("isa.program.tiles", xf=_on(Opcode.PROGRAM, lambda i, c: _several(i.count)),
               bins=ONE_OR_MORE),
    CoverPoint("isa.program.lanes", xf=_on(Opcode.PROGRAM, lambda i, c: (
        "lane period" if i.aux else "own lanes")), bins=["own lanes", "lane period"]),
    CoverPoint("isa.mvm.shape", xf=_on(Opcode.MVM, _shape),
               bins=[f"K {k} x N {n} x replicas {r}" for k in ONE_OR_MORE
                     for n in ONE_OR_MORE for r in ONE_OR_MORE]),
    CoverPoint("isa.mvm.vectors", xf=_on(Opcode.MVM, lambda i, c: _several(i.count)),
               bins=ONE_OR_MORE),
    CoverPoint("isa.mvm.flags", xf=_on(Opcode.MVM, _flags),
               bins=[f"{a}, {e}" for a in MVM_WRITES
                     for e in ("two's complement", "offset binary")]),
    CoverPoint("isa.mvm.src_stride", xf=_on(Opcode.MVM, lambda i, c: _stride(i.src_stride)),
               bins=STRIDES),
    CoverPoint("isa.requant.entries", xf=_on(Opcode.REQUANT, lambda i, c: _several(i.count)),
               bins=ONE_OR_MORE),
    CoverPoint("isa.requant.lane_block", xf=_on(Opcode.REQUANT, lambda i, c: (
        "first" if i.aux2 == 0 else "later")), bins=["first", "later"]),
    CoverPoint("isa.max.entries", xf=_on(Opcode.MAX, lambda i, c: _several(i.count)),
               bins=ONE_OR_MORE),
    CoverPoint("isa.max.strides", xf=_on(Opcode.MAX, lambda i, c: (
        f"src {_stride(i.src_stride)}, other {_stride(i.aux2)}")),
        bins=[f"src {a}, other {b}" for a in STRIDES for b in STRIDES]),
)


@_instruction_section
def _sample_instruction(ins, config):
    pass


def _adc_shift_bins(config):
    return ["0"] if config.max_adc_shift == 0 else (
        ["0", "largest"] if config.max_adc_shift == 1 else ["0", "between", "largest"])


@coverage_section(CoverPoint("isa.error", xf=lambda error: error.name,
                             bins=[e.name for e in ErrorCode]))
def _sample_error(error):
    pass


def sample_run(instructions, status, config):
    """Sample the instructions a run executed (up to the one its error refused, or to
    HALT) and how it ended."""
    end = status.error_pc if status.error != ErrorCode.NONE else len(instructions)
    for ins in instructions[:end]:            # not the instruction refused
        _sample_instruction(ins, config)
        if ins.opcode == Opcode.MVM:
            _sample_shift(_shift(ins, config), config)
    _sample_error(status.error)


_shift_point = []          # made at the first MVM: its bins depend on the config


def _sample_shift(value, config):
    """The MVM's ADC shift class (a lossless config has shift 0 only)."""
    if not _shift_point:
        _shift_point.append(coverage_section(
            CoverPoint("isa.mvm.adc_shift", xf=lambda value: value,
                       bins=_adc_shift_bins(config)))(lambda value: None))
    _shift_point[0](value)


def isa_coverage():
    """{point: {bin: hits}} of everything sampled in this simulation."""
    return {name: {str(b): int(hits) for b, hits in item.detailed_coverage.items()}
            for name, item in coverage_db.items() if isinstance(item, CoverPoint)}
