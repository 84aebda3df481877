"""The memory ports the sequencer and its units drive, sized once for a config.

A unit drives its ports only while it runs (zero otherwise), so the sequencer merges its
units' ports with an OR."""

from amaranth.hdl import unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from golden.config import ACC_BITS, INPUT_BITS, WEIGHT_BITS
from golden.isa import FIELDS, WORDS_PER_INSTRUCTION

__all__ = ["address_width", "memory_ports", "instruction_layout", "QPARAM_BITS"]

QPARAM_BITS = 128             # a qmem lane: golden.device.pack_quant_params's four words


def address_width(depth):
    return max(1, (depth - 1).bit_length())


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


def memory_ports(config, *names):
    """Signature members of the named ports: a read port `mem` (``mem_addr``, ``mem_en``
    out, ``mem_data`` in a cycle after) or a write port `mem_write` (``mem_waddr``,
    ``mem_wen`` (a bit per lane for amem), ``mem_wdata``)."""
    c = config
    entry_bits = {"imem": 32 * WORDS_PER_INSTRUCTION, "wmem": c.tiles * c.cols * WEIGHT_BITS,
                  "amem": c.rows * INPUT_BITS, "psum": c.cols * ACC_BITS,
                  "qmem": c.cols * QPARAM_BITS}
    members = {}
    for name in names:
        memory = name.removesuffix("_write")
        addr = address_width(getattr(c, f"{memory}_depth"))
        if name.endswith("_write"):
            members.update({f"{memory}_waddr": Out(addr),
                            f"{memory}_wen": Out(c.rows if memory == "amem" else 1),
                            f"{memory}_wdata": Out(entry_bits[memory])})
        else:
            members.update({f"{memory}_addr": Out(addr), f"{memory}_en": Out(1),
                            f"{memory}_data": In(entry_bits[memory])})
    return members
