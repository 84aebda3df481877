"""Reports: accuracy, cycles, energy breakdown and TOPS/W, per network and per layer."""

import numpy as np

from golden.device import Device
from golden.energy import DEFAULT_PRESET, OFF_CHIP, PRESETS, energy_breakdown, ops_per_run
from golden.host_link import DEFAULT_HOST_LINK, HOST_LINKS

__all__ = ["energy_key", "energy_summary", "host_words_total", "layer_counters", "layer_energy",
           "plot_layer_energy",
           "format_table"]


def energy_key(where, unit="J"):
    """The one name an energy figure has wherever it is shown or saved (summaries, run
    reports, sweep rows, benches): where it is spent (``on_chip``, ``off_chip``, ``total``
    or a component of `golden.energy`), its unit, per inference."""
    return f"{where}_{unit}_per_inference"


def host_words_total(host_words):
    """Words moved either way over the host link, from a run's ``host_words``."""
    return sum(n for counts in (host_words or {}).values() for n in counts.values())


def energy_summary(counters, config, samples, preset=DEFAULT_PRESET, host_words=None,
                   host_link=DEFAULT_HOST_LINK):
    """Energy per inference in joules, on chip, off chip (host transfers), in total and by
    component (keys from `energy_key`; the components under ``energy_key("components")``),
    and TOPS/W of the crossbar work on the on-chip energy; cycles per inference on the
    device and, apart, for the host's words over `host_link` (a `golden.host_link` preset)."""
    link = HOST_LINKS[host_link]
    table = PRESETS[preset]
    events = dict(counters, host_bits=32 * host_words_total(host_words))
    breakdown = energy_breakdown(events, table, config)
    on_chip = breakdown["total"] - breakdown.get(OFF_CHIP, 0.0)
    ops = ops_per_run(counters, config)
    return {energy_key("components"): {k: v / samples for k, v in breakdown.items()
                                       if k != "total"},
            energy_key("total"): breakdown["total"] / samples,
            energy_key("on_chip"): on_chip / samples,
            energy_key("off_chip"): breakdown.get(OFF_CHIP, 0.0) / samples,
            "tops_per_watt": ops / on_chip / 1e12 if on_chip else 0.0,
            "cycles_per_inference": counters["cycles"] / samples,
            "host_words_per_inference": host_words_total(host_words) / samples,
            "host_cycles_per_inference": link.cycles(host_words_total(host_words)) / samples,
            "host_link": link.describe(),
            "preset": table.name}


def layer_counters(exe, batch=None):
    """Device counters of one batch split by layer, from the golden model's per-instruction
    trace of each segment's program (counters do not depend on the data; tile programming
    of a resident network, done once, is left out)."""
    batch = batch or exe.batch
    layers = {}
    for run, count in exe.distinct_runs(batch):         # equal sub-batches: traced once
        device = Device(exe.config)
        device.load_program(run.program)
        trace = device.run(trace=True).trace
        for name, (start, stop) in run.layer_pcs.items():
            total = layers.setdefault(name, {})
            for pc, deltas in trace:
                if start <= pc < stop:
                    for key, value in deltas.items():
                        total[key] = total.get(key, 0) + count * value
    return layers


def layer_energy(exe, preset):
    """Joules per inference of each layer by component: one full batch's counters per
    layer (`layer_counters`) through the preset's table, divided by its samples."""
    return {layer: {component: joules / exe.batch for component, joules
                    in energy_breakdown(counters, PRESETS[preset], exe.config).items()}
            for layer, counters in layer_counters(exe).items()}


def plot_layer_energy(per_layer, path, title):
    """A stacked bar per layer of energy per inference by component (joules in, nJ shown;
    matplotlib, written as PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_layer)
    components = sorted({c for breakdown in per_layer.values() for c in breakdown
                         if c not in ("total", OFF_CHIP)})          # on chip: the device's own
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(names), 4))
    bottom = np.zeros(len(names))
    for component in components:
        values = np.array([per_layer[n].get(component, 0.0) * 1e9 for n in names])
        ax.bar(names, values, bottom=bottom, label=component)
        bottom += values
    ax.set_ylabel("energy per inference (nJ)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(rows, columns):
    """Plain-text table; `columns` is a list of (header, key, format)."""
    cells = [[header for header, _, _ in columns]]
    cells += [[fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in columns]
              for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
