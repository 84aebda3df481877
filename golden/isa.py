"""The instruction set: encoding, constructors and the error codes the sequencer reports.

An instruction is 128 bits, stored as four little-endian 32-bit words:

======  ============================================================================
word 0  opcode [3:0], flags [7:4] (bit 4: accumulate), tile [15:8], count [31:16]
word 1  src [15:0], src_stride [31:16]
word 2  dst [15:0], dst_stride [31:16]
word 3  aux [15:0], aux2 [31:16]
======  ============================================================================

HALT
    Stop; the status register reads done.
PROGRAM tile, src
    Write weight-staging rows ``src .. src+rows-1`` into tile ``tile``. ``src`` must be
    a multiple of ``rows``.
MVM tiles, count, src, src_stride, dst, dst_stride, tile_stride, accumulate
    ``tile`` is a mask. For each vector ``i < count`` the activation entry
    ``src + i*src_stride`` goes to every selected tile at once; the tile of rank ``j``
    (``j``-th set bit) writes partial-sum entry ``dst + i*dst_stride + j*tile_stride``
    (``aux`` holds ``tile_stride``), adding to it when ``accumulate`` is set (int32, wrapping).
REQUANT count, src, src_stride, dst, dst_stride, qentry, lane_block
    For each ``i < count``: requantise partial-sum entry ``src + i*src_stride`` with the
    ``cols`` channels of quantisation parameters in qmem entry ``qentry`` (``aux``), all
    lanes at once, and write the ``cols`` int8 results to lanes ``lane_block*cols ..``
    of activation entry ``dst + i*dst_stride`` (``aux2`` holds ``lane_block``).
MAX count, src, src_stride, other, other_stride, dst, dst_stride
    For each ``i < count``: activation entry ``dst + i*dst_stride`` becomes the lane-wise
    maximum (int8) of entries ``src + i*src_stride`` and ``other + i*other_stride``
    (``aux`` and ``aux2`` hold ``other`` and ``other_stride``), entry by entry. Max pooling
    is a chain of these.
"""

import enum
from dataclasses import dataclass

__all__ = ["Opcode", "ErrorCode", "Instruction", "FIELDS", "WORDS_PER_INSTRUCTION",
           "halt", "program", "mvm", "requant", "vmax", "encode", "decode", "encode_program",
           "FLAG_ACCUMULATE"]

WORDS_PER_INSTRUCTION = 4
FLAG_ACCUMULATE = 1

# name: (lsb, width) in the 128-bit instruction; rtl/ builds its decoder from this table.
FIELDS = {
    "opcode": (0, 4), "flags": (4, 4), "tile": (8, 8), "count": (16, 16),
    "src": (32, 16), "src_stride": (48, 16),
    "dst": (64, 16), "dst_stride": (80, 16),
    "aux": (96, 16), "aux2": (112, 16),
}


class Opcode(enum.IntEnum):
    HALT = 0
    PROGRAM = 1
    MVM = 2
    REQUANT = 3
    MAX = 4


class ErrorCode(enum.IntEnum):
    """What stopped the sequencer; read from STATUS[15:8]."""
    NONE = 0
    ILLEGAL_OPCODE = 1
    BAD_TILE = 2        # PROGRAM tile >= tiles; MVM mask empty or naming absent tiles
    BAD_ADDRESS = 3     # a run reaches past the end of a memory
    MISALIGNED = 4      # PROGRAM src not a multiple of rows; REQUANT lane block >= rows/cols
    PC_OVERFLOW = 5     # ran off the end of the instruction memory without HALT


@dataclass(frozen=True)
class Instruction:
    opcode: int
    flags: int = 0
    tile: int = 0
    count: int = 0
    src: int = 0
    src_stride: int = 0
    dst: int = 0
    dst_stride: int = 0
    aux: int = 0
    aux2: int = 0

    def __post_init__(self):
        for name, (_, width) in FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << width:
                raise ValueError(f"instruction field {name} must be an integer in "
                                 f"0..{(1 << width) - 1}, not {value!r}")

    @property
    def accumulate(self):
        return bool(self.flags & FLAG_ACCUMULATE)

    def __str__(self):
        try:
            op = Opcode(self.opcode).name
        except ValueError:
            op = f"OPCODE_{self.opcode}"
        fields = ", ".join(f"{n}={getattr(self, n)}" for n in FIELDS if n != "opcode" and getattr(self, n))
        return f"{op}({fields})"


def halt():
    return Instruction(Opcode.HALT)


def program(tile, src):
    return Instruction(Opcode.PROGRAM, tile=tile, src=src)


def mvm(tiles, count, src, dst, src_stride=1, dst_stride=1, tile_stride=0, accumulate=False):
    """`tiles` is an iterable of tile indices or a mask."""
    mask = tiles if isinstance(tiles, int) else sum(1 << t for t in set(tiles))
    return Instruction(Opcode.MVM, flags=FLAG_ACCUMULATE if accumulate else 0, tile=mask,
                       count=count, src=src, src_stride=src_stride, dst=dst,
                       dst_stride=dst_stride, aux=tile_stride)


def requant(count, src, dst, qentry, lane_block=0, src_stride=1, dst_stride=1):
    return Instruction(Opcode.REQUANT, count=count, src=src, src_stride=src_stride, dst=dst,
                       dst_stride=dst_stride, aux=qentry, aux2=lane_block)


def vmax(count, src, other, dst, src_stride=1, other_stride=1, dst_stride=1):
    return Instruction(Opcode.MAX, count=count, src=src, src_stride=src_stride, dst=dst,
                       dst_stride=dst_stride, aux=other, aux2=other_stride)


def encode(instruction):
    """The four 32-bit words of `instruction`, word 0 first."""
    value = 0
    for name, (lsb, _) in FIELDS.items():
        value |= getattr(instruction, name) << lsb
    return [(value >> (32 * i)) & 0xFFFF_FFFF for i in range(WORDS_PER_INSTRUCTION)]


def decode(words):
    value = sum((int(w) & 0xFFFF_FFFF) << (32 * i) for i, w in enumerate(words))
    return Instruction(**{name: (value >> lsb) & ((1 << width) - 1)
                          for name, (lsb, width) in FIELDS.items()})


def encode_program(instructions):
    """A flat list of words for the instruction memory."""
    return [word for instruction in instructions for word in encode(instruction)]
