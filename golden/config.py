"""The accelerator configuration: one source of truth for rtl/, firmware/ and the tests."""

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property

from .interface import ACC_BITS, INPUT_BITS, WEIGHT_BITS, memory_windows  # noqa: F401 (re-exported)
from .isa import FIELDS, MAX_ADC_SHIFT, MAX_TILES

__all__ = ["AccelConfig", "ConfigError"]

# w+ = max(w, 0) <= 127 and w- = max(-w, 0) <= 128: one magnitude bit more than w has.
MAGNITUDE_MAX = 1 << (WEIGHT_BITS - 1)


MEMORY_FIELDS = ("imem_depth", "wmem_depth", "amem_depth", "psum_depth", "qmem_depth")
MAX_MEMORY_DEPTH = 1 << FIELDS["src"][1]      # what an instruction's address field reaches


# amem and psum hold a batch of 32 through a 256-wide layer: enough vectors per weight
# load that programming the tiles costs little beside converting.
DEFAULT_DEPTHS = {"imem_depth": 256, "wmem_depth": 256, "amem_depth": 1024, "psum_depth": 1024,
                  "qmem_depth": 64}


class ConfigError(ValueError):
    """An `AccelConfig` field holds a value the hardware cannot be built with."""


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"AccelConfig.{name} must be a positive integer, not {value!r}")


def _check_divides(name, value, total, what):
    if total % value != 0:
        allowed = [d for d in range(1, total + 1) if total % d == 0]
        raise ConfigError(f"AccelConfig.{name} must divide {what} ({total}), "
                          f"one of {allowed}, not {value!r}")


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of the tiled crossbar accelerator.

    Parameters
    ----------
    tiles : int
        Crossbar tiles (T).
    rows : int
        Word lines per tile (R): inputs of one matrix-vector product.
    cols : int
        Logical output columns per tile (C). Each holds every weight slice as
        a differential pair of bit lines.
    cell_bits : int
        Bits stored per cell; a weight magnitude spans ``8 // cell_bits`` slices.
    dac_bits : int
        Input bits applied per step; an int8 input takes ``8 // dac_bits`` steps.
    adc_bits : int or None
        ADC resolution in bits (signed code). ``None`` picks the lossless width,
        :attr:`lossless_adc_bits`. Below it, each MVM instruction chooses the ADC's
        range: with ``adc_shift`` (0 .. :attr:`max_adc_shift`) the ADC's step is
        ``2**adc_shift`` counts, a column count is rounded to the nearest step (ties up,
        `golden.crossbar.adc_round`) and the code saturates at both ends; the shift-add
        scales it back. At most :data:`golden.isa.MAX_ADC_SHIFT` bits below lossless (the
        MVM's shift field).
    adc_share : int
        Logical columns that share one set of ADCs (one per slice); a step then
        takes ``adc_share`` conversion cycles.
    imem_depth, wmem_depth, amem_depth, psum_depth, qmem_depth : int
        Entries of the instruction memory (128-bit instructions), weight staging
        (one ``cols``-wide int8 row for every tile, a lane per tile), activations (one ``rows``-wide int8 vector
        each), partial sums (one ``cols``-wide int32 vector each) and quantisation
        parameters (``cols`` output channels each).
    requant_lanes : int
        Requantisers, each one output channel a cycle: a REQUANT entry's ``cols``
        channels take ``cols / requant_lanes`` cycles (:attr:`requant_passes`). ``None``
        is one per column (an entry a cycle); fewer save logic on small FPGAs.
    """

    tiles: int = 4
    rows: int = 16
    cols: int = 16
    cell_bits: int = 2
    dac_bits: int = 1
    adc_bits: "int | None" = None
    adc_share: int = 1
    imem_depth: int = 256
    wmem_depth: int = 256
    amem_depth: int = 1024
    psum_depth: int = 1024
    qmem_depth: int = 64
    requant_lanes: "int | None" = None

    def __post_init__(self):
        for name in ("tiles", "rows", "cols", "cell_bits", "dac_bits", "adc_share"):
            _check_positive_int(name, getattr(self, name))
        _check_divides("cell_bits", self.cell_bits, WEIGHT_BITS, "the weight width")
        _check_divides("dac_bits", self.dac_bits, INPUT_BITS, "the input width")
        _check_divides("adc_share", self.adc_share, self.cols, "cols")
        if self.rows % self.cols != 0:
            raise ConfigError(f"AccelConfig.cols must divide rows ({self.rows}), so that "
                              f"requantised outputs pack into input vectors, not {self.cols!r}")
        if self.tiles > MAX_TILES:
            raise ConfigError(f"AccelConfig.tiles must be at most {MAX_TILES} (an instruction's "
                              f"tile field), not {self.tiles!r}")
        for name in MEMORY_FIELDS:
            _check_positive_int(name, getattr(self, name))
            if getattr(self, name) > MAX_MEMORY_DEPTH:
                raise ConfigError(f"AccelConfig.{name} must be at most {MAX_MEMORY_DEPTH}, "
                                  f"not {getattr(self, name)!r}")
        if self.requant_lanes is None:
            object.__setattr__(self, "requant_lanes", self.cols)
        _check_positive_int("requant_lanes", self.requant_lanes)
        _check_divides("requant_lanes", self.requant_lanes, self.cols, "cols")
        if self.rows > 4096:
            raise ConfigError(f"AccelConfig.rows must be at most 4096, not {self.rows!r}")
        if self.adc_bits is None:
            object.__setattr__(self, "adc_bits", self.lossless_adc_bits)
        if isinstance(self.adc_bits, bool) or not isinstance(self.adc_bits, int) \
                or not 2 <= self.adc_bits <= 32:
            raise ConfigError(f"AccelConfig.adc_bits must be an integer in 2..32, "
                              f"not {self.adc_bits!r}")
        if self.max_adc_shift > MAX_ADC_SHIFT:
            raise ConfigError(
                f"AccelConfig.adc_bits must be at least {self.lossless_adc_bits - MAX_ADC_SHIFT}"
                f" for this crossbar (lossless {self.lossless_adc_bits} bits; an MVM's ADC "
                f"shift reaches {MAX_ADC_SHIFT}), not {self.adc_bits!r}")
        for window in memory_windows(self).values():
            if not window.fits:
                raise ConfigError(f"AccelConfig.{window.name}_depth={window.depth} entries of "
                                  f"{window.entry_stride} bytes overflow the 1 MiB {window.name} window")
        if self.result_bound >= 1 << (ACC_BITS - 1):
            raise ConfigError(
                f"AccelConfig.adc_bits={self.adc_bits} can produce tile results up to "
                f"{self.result_bound}, beyond int32")

    # Derived quantities -----------------------------------------------------------------

    @cached_property
    def requant_passes(self):
        """Cycles a REQUANT entry spends in the requantisers: ``cols / requant_lanes``."""
        return self.cols // self.requant_lanes

    @property
    def requantizing_mvms(self):
        """Whether an MVM may requantise as it writes (`golden.isa.FLAG_REQUANTIZE`): only
        with a requantiser per column. Fewer (a board's area saving) would stretch every
        round; such a config requantises by REQUANT alone, and its logic is what it was."""
        return self.requant_passes == 1

    @cached_property
    def slices(self):
        """Cell slices per weight magnitude."""
        return WEIGHT_BITS // self.cell_bits

    @cached_property
    def steps(self):
        """Bit-serial input steps per matrix-vector product."""
        return INPUT_BITS // self.dac_bits

    @cached_property
    def adc_groups(self):
        """Logical columns converted in one cycle (ADCs per slice)."""
        return self.cols // self.adc_share

    @cached_property
    def max_level(self):
        """Largest input level magnitude a DAC step applies, in either input encoding (see
        `golden.crossbar.input_levels`): an unsigned chunk's."""
        return (1 << self.dac_bits) - 1

    @cached_property
    def max_cell_difference(self):
        """Largest |G+ - G-| of one slice pair."""
        return min((1 << self.cell_bits) - 1, MAGNITUDE_MAX)

    @cached_property
    def max_column_count(self):
        """Largest magnitude of one signed column count (one step, one slice)."""
        return self.rows * self.max_level * self.max_cell_difference

    @cached_property
    def count_bits(self):
        """Bits of a signed column count."""
        return self.max_column_count.bit_length() + 1

    @cached_property
    def lossless_adc_bits(self):
        """The smallest ADC width that never saturates (with an MVM shift of 0): every
        count is its own code."""
        return self.count_bits

    @cached_property
    def is_lossless(self):
        return self.adc_bits >= self.lossless_adc_bits

    @cached_property
    def max_adc_shift(self):
        """The largest ADC shift an MVM may ask for (0 when the ADC is lossless: nothing
        to range). Its steps span every count, and a larger shift would only drop bits;
        but rounding is to the nearest step, so the largest positive counts round up to
        one code past the top and saturate back to it: at most one step of error beyond
        the rounding's half step, and only at the top (the bottom code is one lower)."""
        return max(0, self.lossless_adc_bits - self.adc_bits)

    @cached_property
    def result_bits(self):
        """Bits of a signed register that holds any tile result and every partial sum of
        its shift-add (each is a sum of some of the terms :attr:`result_bound` adds)."""
        return self.result_bound.bit_length() + 1

    @cached_property
    def result_bound(self):
        """An upper bound of |tile result|: every code at full scale, at the largest shift."""
        max_code = 1 << (self.adc_bits - 1)
        weight_sum = sum(1 << (k * self.dac_bits + s * self.cell_bits + self.max_adc_shift)
                         for k in range(self.steps) for s in range(self.slices))
        return max_code * weight_sum

    # Interchange ------------------------------------------------------------------------

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, fields):
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"AccelConfig has no field(s) {sorted(unknown)}")
        return cls(**fields)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    @cached_property
    def name(self):
        """A short tag, unique per config, for build directories and reports."""
        name = (f"t{self.tiles}_r{self.rows}_c{self.cols}_cb{self.cell_bits}"
                f"_d{self.dac_bits}_a{self.adc_bits}_sh{self.adc_share}")
        depths = [getattr(self, f) for f in MEMORY_FIELDS]
        if depths != [DEFAULT_DEPTHS[f] for f in MEMORY_FIELDS]:
            name += "_m" + "-".join(map(str, depths))
        if self.requant_lanes != self.cols:
            name += f"_rq{self.requant_lanes}"
        return name
