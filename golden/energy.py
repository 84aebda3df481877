"""Energy per counted event, from published figures, scaled to the config; energy =
counters x energies.

A preset holds what its sources give (each derived in a comment: the paper's figure and
the rate or width it is divided by) at the source's own widths. `event_energies` scales
them to a config:

- ADC: per conversion, from the preset's resolution model (`AdcModel`) at ``adc_bits``;
- DAC: per row and step, x ``2**(dac_bits - 1)`` (a DAC's switched capacitance doubles
  with each bit: Saberi et al., TCAS-I 2011, the rule Accelergy's ISAAC DAC uses);
- cells: per cell sensed, whatever ``cell_bits`` (the conductance window and the read
  pulse do not change with the levels stored); fewer, wider cells mean fewer slices, so
  ``cell_bits`` scales the count of reads (2 x rows x cols x 8/cell_bits per step);
- shift-add: per conversion, x (its accumulator width / the source's);
- memories: per bit, x the bits of one access (`golden.regmap.memory_windows`).

Estimates for comparing configurations, not sign-off numbers.
"""

from dataclasses import dataclass

from .regmap import memory_windows

__all__ = ["AdcModel", "EnergyPreset", "PRESETS", "DEFAULT_PRESET", "COMPONENTS", "OFF_CHIP", "DRAM_PJ_PER_BIT",
           "event_energies", "energy_breakdown", "ops_per_run", "describe"]

OFF_CHIP = "off-chip"

# Which component each event's energy is booked to. `shift_adds` is not a device counter:
# the tile shift-adds every conversion, so it equals `adc_conversions`.
COMPONENTS = {
    "adc_conversions": "ADC",
    "dac_conversions": "DAC",
    "cell_reads": "crossbar",
    "cell_writes": "crossbar",
    "shift_adds": "shift-add",
    "requantizations": "requantiser",
    "wmem_reads": "SRAM", "amem_reads": "SRAM", "amem_writes": "SRAM",
    "psum_reads": "SRAM", "psum_writes": "SRAM", "qmem_reads": "SRAM", "imem_reads": "SRAM",
    "cycles": "control",                        # sequencer and counters, per clock cycle
    "host_bits": OFF_CHIP,                      # words the host moves, x 32 (not a device counter)
}

# DRAM: 640 pJ per 32-bit access (Horowitz, "Computing's energy problem", ISSCC 2014,
# Fig. 1.1.9, 45 nm, LPDDR) -> 640 / 32 = 20 pJ per bit moved between host memory and
# the accelerator. The same in every preset: it is the memory the host streams from.
DRAM_PJ_PER_BIT = 640.0 / 32


@dataclass(frozen=True)
class AdcModel:
    """Energy per conversion against resolution: published points, and between or beyond
    them the nearest pair's ratio per bit (geometric)."""
    points: tuple              # ((bits, pJ), ...), ascending bits
    source: str

    def pj(self, bits):
        points = dict(self.points)
        if bits in points:
            return points[bits]
        known = sorted(points)
        lo = max([b for b in known if b < bits], default=known[0])
        hi = min([b for b in known if b > bits], default=known[-1])
        if lo == hi:                              # beyond the ends: the end pair's ratio
            lo, hi = (known[0], known[1]) if bits < known[0] else (known[-2], known[-1])
        per_bit = (points[hi] / points[lo]) ** (1 / (hi - lo))
        return points[lo] * per_bit ** (bits - lo)


def walden(fj_per_step, bits_range, source):
    """Walden's figure of merit: E = FoM x 2**bits per conversion."""
    return AdcModel(tuple((b, fj_per_step * 2 ** b / 1000) for b in bits_range), source)


@dataclass(frozen=True)
class EnergyPreset:
    """Picojoules per event at the source's widths (see the module's scaling rules)."""
    name: str
    adc: AdcModel              # per conversion, by resolution
    dac_pj_1bit: float         # per row per step, 1-bit DAC
    cell_read_pj: float        # per cell sensed
    cell_write_pj: float       # per cell programmed
    shift_add_pj: float        # per conversion, at `shift_add_bits`
    shift_add_bits: int
    requant_pj: float          # per output channel requantised
    memory_pj_per_bit: float   # on-chip buffers, per bit read or written
    cycle_pj: float            # control per clock cycle
    host_pj_per_bit: float = DRAM_PJ_PER_BIT


# ISAAC (Shafiee et al., ISCA 2016), Table 6, 32 nm, 1.2 GHz; per IMA: 8 crossbars of
# 128x128 2-bit cells read every 100 ns, 8 ADCs of 8 bits at 1.28 GS/s (one per crossbar,
# shared by its 128 columns), 8 x 128 1-bit DACs, 4 shift-add units. The derivations follow
# Accelergy's ISAAC component library (hwcomponents-library, isaac.py).
ISAAC_ADC = AdcModel(
    # 8 ADCs: 16 mW at 1.2 GS/s each -> 16e-3 / (8 x 1.2e9) = 1.67 pJ per 8-bit conversion;
    # other resolutions scaled by Saberi et al. (TCAS-I 2011) as Accelergy tabulates them.
    ((4, 0.79), (5, 0.99), (6, 1.20), (7, 1.42), (8, 1.67), (9, 1.97), (10, 2.38)),
    "ISAAC Table 6 (16 mW / 8 ADCs / 1.2 GS/s at 8 bits), scaled per bit by Saberi et al. "
    "2011 as in Accelergy's ISAAC library")

ISAAC = EnergyPreset(
    name="ISAAC ReRAM crossbar, 32 nm (ISCA 2016, Table 6)",
    adc=ISAAC_ADC,
    # 8 x 128 DACs: 4 mW -> 3.9 uW each, driving its row for the whole 100 ns read:
    # 4e-3 / 1024 x 100e-9 = 0.39 pJ per row per step.
    dac_pj_1bit=4e-3 / 1024 * 100e-9 * 1e12,
    # One 128x128 crossbar: 2.4 mW / 8 = 0.3 mW, read every 100 ns -> 30 pJ / 16,384 cells.
    cell_read_pj=0.3e-3 * 100e-9 * 1e12 / (128 * 128),
    # ReRAM SET/RESET ~1 pJ a cell (Wong et al., "Metal-oxide RRAM", Proc. IEEE 2012,
    # reported 0.1-10 pJ): ISAAC programs once and gives none.
    cell_write_pj=1.0,
    # 4 shift-add units: 0.2 mW for the 8 ADCs' 9.6 GS/s -> 0.2e-3 / 9.6e9 = 0.021 pJ per
    # conversion, 16 bits wide.
    shift_add_pj=0.2e-3 / (8 * 1.2e9) * 1e12, shift_add_bits=16,
    # ISAAC has no requantiser (it keeps 16-bit values). A 32-bit multiply and add: 3.1 + 0.1
    # pJ at 45 nm (Horowitz, ISSCC 2014), x 32/45 for 32 nm (switched capacitance with the
    # feature size at the same voltage).
    requant_pj=(3.1 + 0.1) * 32 / 45,
    # eDRAM buffer, 64 KB: 20.45 pJ per 256-bit access (Accelergy's derivation from Table 6:
    # 20.7 mW / 12 IMAs over the time to consume the buffer, per access) -> 0.080 pJ a bit.
    memory_pj_per_bit=20.45 / 256,
    # Sequencer and 17 32-bit counters: ~850 flip-flops clocked each cycle at ~1.6 fJ
    # (2 fF clock load x 0.9 V^2, 32 nm) -> 1.4 pJ per cycle. An estimate: ISAAC has no
    # sequencer of this kind.
    cycle_pj=850 * 2e-15 * 0.9 ** 2 * 1e12,
)

SRAM_IMC = EnergyPreset(
    name="charge-domain SRAM IMC, 65 nm",
    # Walden FoM of 5 fJ per conversion step: a point under the frontier of SAR ADCs below
    # 100 MS/s in Murmann's ADC Performance Survey (1997-2024) -> 8 bits: 1.28 pJ.
    adc=walden(5.0, range(1, 17), "Walden FoM 5 fJ/conversion-step (Murmann's ADC survey)"),
    # Word-line driver per row per step, an estimate (no source itemises it): a row of
    # ~256 cells at 65 nm, ~250 um of wire at ~0.08 fF/um, C_wl ~ 20 fF, x 1.0 V^2 / 2 =
    # 0.01 pJ.
    dac_pj_1bit=20e-15 * 1.0 ** 2 / 2 * 1e12,
    # Valavi et al., "A 64-tile 2.4-Mb in-memory-computing CNN accelerator employing
    # charge-domain compute", JSSC 2019: 866 1b-TOPS/W -> 1 / 866e12 = 1.15 fJ per 1-b
    # operation, one cell sensed each (its ADC share included: an overestimate here).
    cell_read_pj=1e12 / 866e12,
    # SRAM bit write, 65 nm, an estimate: Horowitz 2014's 45 nm 8 KB SRAM, 10 pJ per 64-bit
    # access = 0.16 pJ a bit, x 65/45 = 0.23 pJ, of which the bit cell's own flip is taken
    # as ~1/5 (the rest is decode and the bit lines a row write shares): ~0.05 pJ.
    cell_write_pj=0.05,
    # Near-memory shift-add: a 16-bit add, 0.05 pJ at 45 nm (Horowitz 2014: 32-bit add 0.1
    # pJ, halved) x 65/45 -> 0.072 pJ per conversion.
    shift_add_pj=0.05 * 65 / 45, shift_add_bits=16,
    # 32-bit multiply and add: (3.1 + 0.1) pJ at 45 nm (Horowitz 2014) x 65/45.
    requant_pj=(3.1 + 0.1) * 65 / 45,
    # SRAM: 10 pJ per 64-bit access of an 8 KB SRAM at 45 nm (Horowitz 2014) -> 0.156 pJ a
    # bit, x 65/45 -> 0.23 pJ a bit.
    memory_pj_per_bit=10 / 64 * 65 / 45,
    # The same ~850 flip-flops as ISAAC's estimate at 65 nm: ~3 fF x 1.0 V^2 -> 2.6 pJ.
    cycle_pj=850 * 3e-15 * 1.0 ** 2 * 1e12,
)


def _hung_2021():
    """TSMC's 22 nm ReRAM macro (Hung et al., "A four-megabit compute-in-memory macro with
    eight-bit precision based on CMOS and resistive random-access memory for AI edge
    devices", Nature Electronics 4, 921-930, 2021): 15.6 TOPS/W at 8-bit inputs and 8-bit
    weights -> 2 / 15.6e12 J = 128 fJ per 8b x 8b MAC, macro total (cells, input drivers,
    readout, shift-add). The paper does not itemise it; the split here is ISAAC's IMA split
    (ADC 16 : DAC 4 : array 2.4 : shift-add 0.2 mW), made per event at this project's 16x16,
    1-bit cell, 1-bit DAC, 8-bit ADC shape (binary cells as in the macro): per 8b x 8b MAC
    that shape makes 8 x 8 / 16 conversions and shift-adds, 8 / 16 DAC steps and 2 x 8 x 8
    cell reads."""
    mac_pj = 2 / 15.6e12 * 1e12
    share = {"adc": 16, "dac": 4, "cells": 2.4, "shift_add": 0.2}
    total = sum(share.values())
    conversions, dac_steps, cell_reads = 8 * 8 / 16, 8 / 16, 2 * 8 * 8
    adc8 = mac_pj * share["adc"] / total / conversions
    return EnergyPreset(
        name="TSMC 22 nm ReRAM CIM macro (Hung et al., Nature Electronics 2021)",
        # ADC per resolution: ISAAC's per-bit scaling, anchored at this macro's 8-bit share.
        adc=AdcModel(tuple((b, adc8 * pj / ISAAC_ADC.pj(8)) for b, pj in ISAAC_ADC.points),
                     "Hung et al. 2021 (15.6 TOPS/W at 8b x 8b), ISAAC's split, Saberi scaling"),
        dac_pj_1bit=mac_pj * share["dac"] / total / dac_steps,
        cell_read_pj=mac_pj * share["cells"] / total / cell_reads,
        cell_write_pj=1.0,                    # as ISAAC's (Wong et al. 2012)
        shift_add_pj=mac_pj * share["shift_add"] / total / conversions, shift_add_bits=16,
        requant_pj=(3.1 + 0.1) * 22 / 45,     # Horowitz 2014, x 22/45
        memory_pj_per_bit=10 / 64 * 22 / 45,  # Horowitz 2014's SRAM, x 22/45: 0.076 pJ a bit
        cycle_pj=850 * 1e-15 * 0.8 ** 2 * 1e12,   # ~1 fF x 0.8 V^2 per flip-flop
    )


DEFAULT_PRESET = "isaac_reram_32nm"     # the table every command uses unless told
PRESETS = {
    DEFAULT_PRESET: ISAAC,
    "sram_imc_65nm": SRAM_IMC,
    "reram_macro_22nm": _hung_2021(),
}


def _access_bits(config):
    """Bits one counted access of each memory moves (a wmem read is one tile's lane)."""
    windows = memory_windows(config)
    bits = {name: w.lane_bits * w.lanes for name, w in windows.items()}
    bits["wmem"] //= config.tiles
    return bits


def event_energies(preset, config):
    """Picojoules per event for `config`: ``{event: pJ}`` (see the scaling rules above)."""
    bits = _access_bits(config)
    memory = {f"{name}_{way}": preset.memory_pj_per_bit * bits[name]
              for name in bits for way in ("reads", "writes")}
    return {
        "adc_conversions": preset.adc.pj(config.adc_bits),
        "dac_conversions": preset.dac_pj_1bit * 2 ** (config.dac_bits - 1),
        "cell_reads": preset.cell_read_pj,
        "cell_writes": preset.cell_write_pj,
        "shift_adds": preset.shift_add_pj * config.result_bits / preset.shift_add_bits,
        "requantizations": preset.requant_pj,
        **{event: memory[event] for event in COMPONENTS if event in memory},
        "cycles": preset.cycle_pj,
        "host_bits": preset.host_pj_per_bit,
    }


def energy_breakdown(counters, preset, config):
    """Joules per component from a counter dict (with ``host_bits`` when the host moved
    data), plus the total."""
    events = dict(counters, shift_adds=counters.get("adc_conversions", 0))
    picojoules = {}
    for event, energy in event_energies(preset, config).items():
        component = COMPONENTS[event]
        picojoules[component] = picojoules.get(component, 0.0) + events.get(event, 0) * energy
    breakdown = {component: pj * 1e-12 for component, pj in picojoules.items()}
    breakdown["total"] = sum(breakdown.values())
    return breakdown


def describe(preset, config):
    """Lines naming each event's energy for `config` and its basis."""
    energies = event_energies(preset, config)
    bits = _access_bits(config)
    basis = {
        "adc_conversions": f"{config.adc_bits}-bit ADC; {preset.adc.source}",
        "dac_conversions": f"{config.dac_bits}-bit DAC, a row for one step",
        "cell_reads": f"one cell sensed ({config.cell_bits}-bit cells)",
        "cell_writes": "one cell programmed",
        "shift_adds": f"one conversion shift-added into {config.result_bits} bits",
        "requantizations": "one output channel",
        "cycles": "sequencer and counters, one clock cycle",
        "host_bits": "one bit between host DRAM and the device",
    }
    for name, width in bits.items():
        for way in ("reads", "writes"):
            basis[f"{name}_{way}"] = f"one {width}-bit {name} entry"
    return [f"{event:16s} {pj:10.4f} pJ  {basis[event]}" for event, pj in energies.items()]


def ops_per_run(counters, config):
    """Operations the crossbars performed: 2 per int8 multiply-accumulate (rows x cols
    MACs a product), the convention of TOPS/W figures."""
    return 2 * counters.get("mvm_products", 0) * config.rows * config.cols
