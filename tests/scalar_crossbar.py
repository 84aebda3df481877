"""The crossbar's arithmetic stated element by element, deliberately naive: the
independent reference the golden model's vectorised crossbar is tested against."""

__all__ = ["scalar_crossbar"]


def scalar_crossbar(config, x, w, adc_shift=0, offset_inputs=False):
    """A deliberately naive, element-by-element statement of docs/architecture.md's arithmetic (one vector)."""
    result = [0] * config.cols
    lo, hi = -(1 << (config.adc_bits - 1)), (1 << (config.adc_bits - 1)) - 1
    for c in range(config.cols):
        for k in range(config.steps):
            for s in range(config.slices):
                count = 0
                for r in range(config.rows):
                    byte = (int(x[r]) + (128 if offset_inputs else 0)) & 0xFF
                    chunk = (byte >> (k * config.dac_bits)) & ((1 << config.dac_bits) - 1)
                    if (not offset_inputs and k == config.steps - 1
                            and chunk >= 1 << (config.dac_bits - 1)):
                        chunk -= 1 << config.dac_bits      # the sign-carrying step
                    cell_mask = (1 << config.cell_bits) - 1
                    pos = (max(int(w[r, c]), 0) >> (s * config.cell_bits)) & cell_mask
                    neg = (max(-int(w[r, c]), 0) >> (s * config.cell_bits)) & cell_mask
                    count += chunk * (pos - neg)
                # to the nearest step of 2**adc_shift counts, ties up
                code = min(max((count + ((1 << adc_shift) >> 1)) >> adc_shift, lo), hi)
                result[c] += code << (k * config.dac_bits + s * config.cell_bits + adc_shift)
    return result
