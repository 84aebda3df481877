"""The small accelerator configs the RTL checks run on: each stresses a different corner
of the design (shared and lossy ADCs, narrow cells, many tiles, narrow memory entries)."""

from golden import AccelConfig

__all__ = ["SMALL_MEMORIES", "CONFIGS", "DEEP_LOSSY"]

SMALL_MEMORIES = dict(imem_depth=16, wmem_depth=64, amem_depth=32, psum_depth=32, qmem_depth=32)
CONFIGS = {
    "default_tiles": AccelConfig(**SMALL_MEMORIES),
    # and 2 requantisers for its 8 columns: a REQUANT entry in 4 passes
    "lossy_shared_adc": AccelConfig(tiles=2, rows=16, cols=8, cell_bits=4, dac_bits=2,
                                    adc_bits=AccelConfig(rows=16, cols=8, cell_bits=4,
                                                         dac_bits=2).lossless_adc_bits - 2,
                                    adc_share=2, requant_lanes=2, **SMALL_MEMORIES),
    "narrow_cells_shifted_adc": AccelConfig(tiles=3, rows=8, cols=4, cell_bits=1, dac_bits=4,
                                            adc_bits=5, adc_share=4, **SMALL_MEMORIES),
    # More than 8 tiles, and a one-step DAC: rounds set by the feeds and writes, not N.
    "twelve_tiles_one_step": AccelConfig(tiles=12, rows=8, cols=4, cell_bits=8, dac_bits=8,
                                         **SMALL_MEMORIES),
    # A wmem entry (2 tiles x 1 column) narrower than a bus word: the host writes its low
    # bits (the iCEBreaker's config found the RTL writing zeros there).
    "narrow_weight_entries": AccelConfig(tiles=2, rows=4, cols=1, **SMALL_MEMORIES),
}

# 16x16 tiles with a 4-bit ADC (7 lossless) and memories deep enough for a small CNN: the
# network tests' lossy config, on which the random programs run too.
DEEP_LOSSY = AccelConfig(adc_bits=4, imem_depth=64, wmem_depth=256, amem_depth=128,
                         psum_depth=64, qmem_depth=8)
