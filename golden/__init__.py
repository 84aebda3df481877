"""The executable specification of Tessera: arithmetic, timing (and, later, ISA and energy).

Imports NumPy only.
"""

from .config import AccelConfig, ConfigError
from .crossbar import (adc_convert, column_counts, crossbar_mvm, input_levels,
                       reference_mvm, weight_slices)
from .nonideal import NonIdealities
from .requant import (quantize_multiplier, requantize, requantize_float,
                      requantize_gemmlowp)
from .timing import tile_mvm_cycles, tile_mvm_interval, tile_program_cycles

__all__ = [
    "AccelConfig", "ConfigError",
    "adc_convert", "column_counts", "crossbar_mvm", "input_levels", "reference_mvm",
    "weight_slices", "NonIdealities",
    "quantize_multiplier", "requantize", "requantize_float", "requantize_gemmlowp",
    "tile_mvm_cycles", "tile_mvm_interval", "tile_program_cycles",
]
