import json

import pytest

from golden import AccelConfig, ConfigError


@pytest.mark.parametrize("fields, message", [
    (dict(rows=0), "AccelConfig.rows must be a positive integer, not 0"),
    (dict(cols=-4), "AccelConfig.cols must be a positive integer, not -4"),
    (dict(tiles=2.0), "AccelConfig.tiles must be a positive integer, not 2.0"),
    (dict(tiles=True), "AccelConfig.tiles must be a positive integer, not True"),
    (dict(cell_bits=3), "AccelConfig.cell_bits must divide the weight width (8), one of [1, 2, 4, 8], not 3"),
    (dict(dac_bits=5), "AccelConfig.dac_bits must divide the input width (8)"),
    (dict(adc_bits=40), "AccelConfig.adc_bits must be an integer in 2..32, not 40"),
    (dict(adc_bits=1), "AccelConfig.adc_bits must be an integer in 2..32, not 1"),
    (dict(adc_share=3), "AccelConfig.adc_share must divide cols (16)"),
    (dict(rows=8192), "AccelConfig.rows must be at most 4096, not 8192"),
    (dict(rows=16, cols=12), "AccelConfig.cols must divide rows (16)"),
    (dict(tiles=257), "AccelConfig.tiles must be at most 256 (an instruction's tile field), not 257"),
    (dict(psum_depth=0), "AccelConfig.psum_depth must be a positive integer, not 0"),
    (dict(imem_depth=5000), "AccelConfig.imem_depth must be at most 4096, not 5000"),
    (dict(tiles=1, rows=4096, cols=1, cell_bits=8, dac_bits=8, adc_bits=32, amem_depth=128),
     "AccelConfig.adc_bits=32 can produce tile results up to 2147483648, beyond int32"),
    # 64 rows x level 255 x |G+ - G-| 128 = 2,088,960: 22 bits lossless, 17 above 5 bits,
    # where an MVM's 4-bit shift field reaches 15
    (dict(rows=64, cols=16, cell_bits=8, dac_bits=8, adc_bits=5),
     "AccelConfig.adc_bits must be at least 7 for this crossbar (lossless 22 bits; an MVM's "
     "ADC shift reaches 15), not 5"),
])
def test_bad_config_names_the_field(fields, message):
    with pytest.raises(ConfigError) as info:
        AccelConfig(**fields)
    assert message in str(info.value)


def test_defaults_match_design():
    config = AccelConfig()
    assert (config.tiles, config.rows, config.cols) == (4, 16, 16)
    assert (config.cell_bits, config.dac_bits, config.adc_share) == (2, 1, 1)
    assert (config.slices, config.steps) == (4, 8)
    # 16 rows x level 1 x |G+ - G-| <= 3 = 48: a signed count needs 7 bits.
    assert config.max_column_count == 48
    assert config.adc_bits == config.lossless_adc_bits == 7
    assert config.is_lossless


def test_lossless_width_follows_the_array():
    # One 8-bit step: a level up to 255 (offset-binary inputs), |G+ - G-| up to 128.
    assert AccelConfig(rows=128, cell_bits=8, dac_bits=8).max_column_count == 128 * 255 * 128
    # 4,177,920 < 2**22: 22 magnitude bits and a sign.
    assert AccelConfig(rows=128, cell_bits=8, dac_bits=8).lossless_adc_bits == 23
    assert AccelConfig(dac_bits=2, cell_bits=4).max_column_count == 16 * 3 * 15
    assert not AccelConfig(adc_bits=5).is_lossless


def test_json_round_trip_and_unknown_fields():
    config = AccelConfig(rows=32, adc_bits=6, adc_share=4)
    assert AccelConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match=r"no field\(s\) \['banks'\]"):
        AccelConfig.from_dict({**json.loads(config.to_json()), "banks": 2})


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        AccelConfig().rows = 8


def test_the_widest_adc_range_fits_the_shift_field():
    at_limit = AccelConfig(rows=64, cols=16, cell_bits=8, dac_bits=8, adc_bits=7)
    assert at_limit.lossless_adc_bits == 22 and at_limit.max_adc_shift == 15


def test_at_the_largest_shift_only_the_top_counts_saturate_by_one_code():
    """What `AccelConfig.max_adc_shift` documents, over every count of 340 lossy configs: the
    codes cover the counts except at the top, where rounding to the nearest step goes one
    code past the top and saturates back to it (so "no count saturates" would be wrong)."""
    import itertools

    import numpy as np

    from golden.crossbar import adc_convert

    saturating = 0
    for rows, cell_bits, dac_bits in itertools.product([4, 16, 64], [1, 2, 4, 8], [1, 2, 8]):
        lossless = AccelConfig(rows=rows, cols=4, cell_bits=cell_bits, dac_bits=dac_bits)
        for bits in range(max(2, lossless.lossless_adc_bits - 15), lossless.lossless_adc_bits):
            config = AccelConfig(rows=rows, cols=4, cell_bits=cell_bits, dac_bits=dac_bits,
                                 adc_bits=bits)
            shift, top = config.max_adc_shift, config.max_column_count
            counts = np.arange(-top, top + 1)
            ideal = np.floor(counts / 2 ** shift + 0.5).astype(np.int64)   # nearest, ties up
            codes = adc_convert(config, counts, shift)
            clipped = codes != ideal
            assert np.all(counts[clipped] > 0) and np.all(ideal[clipped] - codes[clipped] == 1)
            saturating += bool(clipped.any())
    assert saturating > 0
