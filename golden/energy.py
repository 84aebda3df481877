"""Energy per counted event, with named presets; energy = counters x table.

Each value is an energy per event in picojoules. Sources are the publications named
beside each value; where a paper gives power per component, the per-event energy is
that power divided by the component's event rate, and the comment says so. These are
estimates for comparing configurations, not sign-off numbers.
"""

from dataclasses import dataclass, fields

__all__ = ["EnergyTable", "PRESETS", "energy_breakdown", "COMPONENTS", "ops_per_run",
           "DRAM_PJ_PER_BIT", "OFF_CHIP"]

# Which component each counter's energy is booked to.
COMPONENTS = {
    "adc_conversions": "ADC",
    "dac_conversions": "DAC",
    "cell_reads": "crossbar",
    "cell_writes": "crossbar",
    "mvm_products": "digital periphery",       # shift-add and accumulate per product
    "requantizations": "digital periphery",
    "wmem_reads": "SRAM", "amem_reads": "SRAM", "amem_writes": "SRAM",
    "psum_reads": "SRAM", "psum_writes": "SRAM", "qmem_reads": "SRAM",
    "imem_reads": "control",
    "cycles": "control",                        # sequencer, clock tree, leakage per cycle
    "host_bits": "off-chip",                    # words the host moves, x 32 (not a device counter)
}

# DRAM: 640 pJ per 32-bit access (Horowitz, "Computing's energy problem", ISSCC 2014,
# Fig. 1.1.9, 45 nm, LPDDR) -> 640 / 32 = 20 pJ per bit moved between host memory and
# the accelerator. The same in every preset: it is the memory the host streams from.
DRAM_PJ_PER_BIT = 640.0 / 32
OFF_CHIP = "off-chip"


@dataclass(frozen=True)
class EnergyTable:
    """Picojoules per event; one field per counter that costs energy."""
    name: str
    adc_conversions: float
    dac_conversions: float
    cell_reads: float
    cell_writes: float
    mvm_products: float
    requantizations: float
    wmem_reads: float
    amem_reads: float
    amem_writes: float
    psum_reads: float
    psum_writes: float
    qmem_reads: float
    imem_reads: float
    cycles: float
    host_bits: float = DRAM_PJ_PER_BIT

    def events(self):
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


PRESETS = {
    # ISAAC (Shafiee et al., "ISAAC: A Convolutional Neural Network Accelerator with In-Situ
    # Analog Arithmetic in Crossbars", ISCA 2016, Table 6; 32 nm, 1.2 GHz, 128x128 ReRAM).
    "isaac_reram_32nm": EnergyTable(
        name="ISAAC-like ReRAM crossbar, 32 nm",
        adc_conversions=1.67,    # 8-bit ADC: 16 mW for 8 ADCs at 1.2 GS/s -> 2 mW / 1.2 GHz
        dac_conversions=0.0033,  # 1-bit DAC: 4 mW for 8 x 128 DACs -> 3.9 uW / 1.2 GHz
        cell_reads=0.0018,       # 128x128 array: 0.3 mW per array, one read per 100 ns
                                 # -> 30 pJ / 16,384 cells
        cell_writes=1.0,         # ReRAM SET/RESET: ~1 pJ per cell (Yu & Chen, IEEE
                                 # Nanotechnology Magazine 2016, typical 0.1-10 pJ)
        mvm_products=0.55,       # shift-and-add: 0.2 mW for 4 units, 128 columns a product
        requantizations=0.4,     # int32 multiply-shift: ~0.4 pJ at 32 nm (Horowitz, ISSCC
                                 # 2014, 32-bit multiply 3.1 pJ at 45 nm, scaled and halved)
        wmem_reads=1.6,          # eDRAM buffer 64 KB: 20.7 mW, 256-bit access a cycle
        amem_reads=1.6,
        amem_writes=1.6,
        psum_reads=3.2,          # output register 3 KB: 1.68 mW, wider (int32) entries
        psum_writes=3.2,
        qmem_reads=0.8,
        imem_reads=0.8,
        cycles=0.35,             # control, clock and leakage per cycle (tile-level share
                                 # of ISAAC's 40.9 mW IMA budget not itemised above)
    ),
    # Charge-domain SRAM IMC (Valavi et al., "A 64-Tile 2.4-Mb In-Memory-Computing CNN
    # Accelerator Employing Charge-Domain Compute", JSSC 2019; 65 nm) and the bit-scalable
    # macro of Jia et al., JSSC 2020. Per-event splits estimated from their breakdowns.
    "sram_imc_65nm": EnergyTable(
        name="charge-domain SRAM IMC, 65 nm",
        adc_conversions=0.9,     # 8-bit SAR ADC per column conversion (Jia 2020: ~0.9 pJ)
        dac_conversions=0.01,    # bit-serial word-line drive per row and step
        cell_reads=0.0011,       # 1-b cell MAC in the charge domain: 866 TOPS/W (Valavi 2019)
                                 # -> ~1.15 fJ per 1-b operation
        cell_writes=0.05,        # SRAM bit write, 65 nm
        mvm_products=1.2,        # near-memory shift-add and accumulate per product, 65 nm
        requantizations=1.5,     # int32 multiply-shift at 65 nm (Horowitz 2014, scaled)
        wmem_reads=5.0,          # 64-128-bit SRAM access at 65 nm (Horowitz 2014: ~10 pJ
                                 # per 64-bit access of an 8 KB SRAM at 45 nm, halved for
                                 # the smaller buffers here)
        amem_reads=5.0,
        amem_writes=5.0,
        psum_reads=10.0,
        psum_writes=10.0,
        qmem_reads=2.5,
        imem_reads=2.5,
        cycles=0.8,              # control and clock per cycle at 65 nm
    ),
}


def energy_breakdown(counters, table):
    """Joules per component from a counter dict (with ``host_bits`` when the host moved
    data), plus the total."""
    picojoules = {}
    for event, energy in table.events().items():
        component = COMPONENTS[event]
        picojoules[component] = picojoules.get(component, 0.0) + counters.get(event, 0) * energy
    breakdown = {component: pj * 1e-12 for component, pj in picojoules.items()}
    breakdown["total"] = sum(breakdown.values())
    return breakdown


def ops_per_run(counters, config):
    """Operations the crossbars performed: 2 per int8 multiply-accumulate (rows x cols
    MACs a product), the convention of TOPS/W figures."""
    return 2 * counters.get("mvm_products", 0) * config.rows * config.cols
