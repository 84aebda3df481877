"""Amaranth layouts derived from golden's interface tables, so the RTL and the software
read every interface word from one declaration (`golden.interface`, `golden.isa.FIELDS`)."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from golden.interface import QPARAM_BITS, QPARAM_FIELDS, STATUS_FIELDS
from golden.isa import FIELDS, WORDS_PER_INSTRUCTION

__all__ = ["struct_layout", "instruction_layout", "qparam_layout", "status_layout"]


def struct_layout(fields, bits):
    """A StructLayout of `bits` bits with each (lsb, width[, signed]) field in place and
    the bits no field names as ``unused_<lsb>``."""
    members, position = {}, 0
    for name, (lsb, width, *sign) in sorted(fields.items(), key=lambda item: item[1][0]):
        if lsb < position:
            raise ValueError(f"field {name} overlaps the one before it")
        if lsb > position:
            members[f"unused_{position}"] = unsigned(lsb - position)
        members[name] = signed(width) if sign and sign[0] else unsigned(width)
        position = lsb + width
    if position < bits:
        members[f"unused_{position}"] = unsigned(bits - position)
    return data.StructLayout(members)


def instruction_layout():
    return struct_layout(FIELDS, 32 * WORDS_PER_INSTRUCTION)


def qparam_layout():
    return struct_layout(QPARAM_FIELDS, QPARAM_BITS)


def status_layout():
    return struct_layout(STATUS_FIELDS, 32)
