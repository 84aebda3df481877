"""Packing of lane arrays into the flat bit vectors Amaranth layouts become in Verilog."""

__all__ = ["pack_ints", "unpack_ints"]


def pack_ints(values, width):
    """Lane 0 in the least significant bits; negative values in two's complement."""
    mask = (1 << width) - 1
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack_ints(word, width, count, signed=True):
    mask, sign = (1 << width) - 1, 1 << (width - 1)
    lanes = [(word >> (i * width)) & mask for i in range(count)]
    return [v - (1 << width) if signed and v & sign else v for v in lanes]
