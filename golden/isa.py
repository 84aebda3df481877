"""The instruction set: encoding, constructors and the error codes the sequencer reports.

An instruction is 128 bits, stored as four little-endian 32-bit words; `FIELDS` places
each field (memory addresses and strides are 12 bits: no memory is deeper than 4096).

HALT
    Stop; the status register reads done.
PROGRAM tile, count, src, lanes
    Program the ``count`` tiles ``tile ..`` at once from the weight staging memory (an
    entry holds one ``cols``-wide row for every tile): tile ``t`` takes rows ``src ..
    src+rows-1`` of lane ``t``, or, when ``aux`` holds ``j + 1`` (a period of ``lanes =
    2**j``), of lane ``t mod lanes``: replicas of a job's tiles take their weights from
    the one copy the host staged in lanes ``0 .. lanes-1``. ``src`` must be a multiple of
    ``rows``.
MVM tile, count, src, src_stride, dst, dst_stride, k_stride, n_stride, ktiles, ngroups, replicas,
    adc_shift, offset_inputs, accumulate, requantize, qentry, max
    The ``ktiles * ngroups * replicas`` tiles from ``tile`` on (each factor a power of two,
    held as its log2; ``tile`` a multiple of ``ktiles``). Tile ``tile + (r*ngroups + n)*ktiles
    + k`` is replica ``r``'s tile for K block ``k`` and output block ``n``. Vector ``v <
    count`` runs on replica ``v % replicas``: its K tiles take activation entries ``src +
    v*src_stride + k*k_stride``, an adder tree sums their results, and output block ``n``'s
    sum goes to partial-sum entry ``dst + v*dst_stride + n*n_stride``, added to it when
    ``accumulate`` is set (int32, wrapping). Writes land vector by vector, then by ``n``.
    ``aux`` and ``aux2`` hold ``k_stride`` and ``n_stride``. Every tile's ADCs take the
    range ``adc_shift`` sets (`golden.crossbar.adc_convert`), at most the config's
    ``max_adc_shift``; with ``offset_inputs`` the DACs apply ``x + 128`` (`golden.crossbar.
    input_levels`), so each sum is ``128 * sum(w)`` more. The compiler calibrates both per
    layer. With ``requantize`` (and not ``accumulate``; on a config with a requantiser per
    column, `AccelConfig.requantizing_mvms`) the sums go through the requantisers instead
    of into psum: output block ``n``'s, with the parameters of qmem
    entry ``qentry + n``, becomes lanes ``0 .. cols-1`` of *activation* entry ``dst +
    v*dst_stride + n*n_stride``, which must lie apart from every entry the MVM reads (the
    spans ``src .. last input`` and ``dst .. last output`` may not meet); with ``max``
    as well, the entry becomes the lane-wise maximum of what it held and the result (a
    convolution's max pool, one window offset after another). ``qentry`` has 8 bits.
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

import numpy as np

__all__ = ["Opcode", "ErrorCode", "Instruction", "FIELDS", "MAX_TILES", "MAX_ADC_SHIFT",
           "WORDS_PER_INSTRUCTION",
           "halt", "program", "program_lanes", "mvm", "mvm_tile", "requant", "vmax", "encode", "decode", "encode_program",
           "FLAG_ACCUMULATE", "FLAG_OFFSET_INPUTS", "FLAG_REQUANTIZE", "FLAG_MAX"]

WORDS_PER_INSTRUCTION = 4
FLAG_ACCUMULATE = 1
FLAG_OFFSET_INPUTS = 2        # MVM: inputs applied as offset binary (x + 128)
FLAG_REQUANTIZE = 4           # MVM: sums requantised into amem, not written to psum
FLAG_MAX = 8                  # MVM with FLAG_REQUANTIZE: the maximum with what amem holds

# name: (lsb, width) in the 128-bit instruction; rtl/ builds its decoder from this table.
FIELDS = {
    "opcode": (0, 4), "flags": (4, 4), "tile": (8, 8), "count": (16, 16),
    "src": (32, 12), "src_stride": (44, 12),
    "dst": (56, 12), "dst_stride": (68, 12),
    "aux": (80, 12), "aux2": (92, 12),
    "ktiles_log2": (104, 4), "ngroups_log2": (108, 4), "replicas_log2": (112, 4),
    "adc_shift": (116, 4), "qentry": (120, 8),
}
MAX_TILES = 1 << FIELDS["tile"][1]     # tiles an instruction can name
MAX_ADC_SHIFT = (1 << FIELDS["adc_shift"][1]) - 1     # the largest range an MVM can ask for


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
    BAD_TILE = 2        # a tile range empty or past the last tile; MVM tile not a multiple of ktiles
    BAD_ADDRESS = 3     # a run reaches past the end of a memory
    MISALIGNED = 4      # PROGRAM src not a multiple of rows; REQUANT lane block >= rows/cols
    PC_OVERFLOW = 5     # ran off the end of the instruction memory without HALT
    BAD_SHIFT = 6       # MVM adc_shift beyond the config's max_adc_shift
    BAD_FLAGS = 7       # MVM requantize with accumulate or on a config with fewer
                        # requantisers than columns, or max without requantize
    OVERLAP = 8         # a requantizing MVM writes amem entries within the span it reads


_FIELD_LIMITS = tuple((name, 1 << width) for name, (_, width) in FIELDS.items())


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
    ktiles_log2: int = 0
    ngroups_log2: int = 0
    replicas_log2: int = 0
    adc_shift: int = 0
    qentry: int = 0

    def __post_init__(self):
        for name, limit in _FIELD_LIMITS:
            value = getattr(self, name)
            if type(value) is int and 0 <= value < limit:    # the common case, checked fast
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
                raise ValueError(f"instruction field {name} must be an integer in "
                                 f"0..{limit - 1}, not {value!r}")

    @property
    def ktiles(self):
        return 1 << self.ktiles_log2

    @property
    def ngroups(self):
        return 1 << self.ngroups_log2

    @property
    def replicas(self):
        return 1 << self.replicas_log2

    @property
    def mvm_tiles(self):
        """Tiles an MVM uses: ktiles * ngroups * replicas."""
        return 1 << (self.ktiles_log2 + self.ngroups_log2 + self.replicas_log2)

    @property
    def accumulate(self):
        return bool(self.flags & FLAG_ACCUMULATE)

    @property
    def offset_inputs(self):
        return bool(self.flags & FLAG_OFFSET_INPUTS)

    @property
    def requantize(self):
        return bool(self.flags & FLAG_REQUANTIZE)

    @property
    def max_into(self):
        return bool(self.flags & FLAG_MAX)

    def __str__(self):
        try:
            op = Opcode(self.opcode).name
        except ValueError:
            op = f"OPCODE_{self.opcode}"
        fields = ", ".join(f"{n}={getattr(self, n)}" for n in FIELDS if n != "opcode" and getattr(self, n))
        return f"{op}({fields})"


def halt():
    return Instruction(Opcode.HALT)


def program(tile, src, tiles=1, lanes=None):
    """Program `tiles` tiles from `tile` on from wmem rows `src ..`: each from its own
    lane, or, given `lanes` (a power of two), tile ``t`` from lane ``t mod lanes``."""
    return Instruction(Opcode.PROGRAM, tile=tile, count=tiles, src=src,
                       aux=0 if lanes is None else _log2("lanes", lanes) + 1)


def program_lanes(ins, tiles):
    """The wmem lane each tile of PROGRAM `ins` takes its weights from."""
    lanes = np.arange(ins.tile, ins.tile + ins.count)
    return lanes % (1 << (ins.aux - 1)) if 0 < ins.aux <= tiles.bit_length() else lanes


def _log2(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value & (value - 1):
        raise ValueError(f"MVM {name} must be a power of two, not {value!r}")
    return value.bit_length() - 1


def mvm(tile, count, src, dst, src_stride=1, dst_stride=1, k_stride=0, n_stride=0,
        ktiles=1, ngroups=1, replicas=1, adc_shift=0, offset_inputs=False, accumulate=False,
        qentry=None, max_into=False):
    """An MVM on the ``ktiles * ngroups * replicas`` tiles from `tile` on; given `qentry`,
    requantizing into amem entries ``dst ..`` (the maximum with them, `max_into`)."""
    flags = ((FLAG_ACCUMULATE if accumulate else 0) | (FLAG_OFFSET_INPUTS if offset_inputs else 0)
             | (FLAG_REQUANTIZE if qentry is not None else 0) | (FLAG_MAX if max_into else 0))
    return Instruction(Opcode.MVM, flags=flags, tile=tile,
                       count=count, src=src, src_stride=src_stride, dst=dst,
                       dst_stride=dst_stride, aux=k_stride, aux2=n_stride,
                       ktiles_log2=_log2("ktiles", ktiles), ngroups_log2=_log2("ngroups", ngroups),
                       replicas_log2=_log2("replicas", replicas), adc_shift=adc_shift,
                       qentry=qentry or 0)


def mvm_tile(first, replica, group, k, ktiles, ngroups):
    """The tile of an MVM's range that holds K block `k` of output block `group` for
    `replica`."""
    return first + (replica * ngroups + group) * ktiles + k


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
