"""Reports: accuracy, cycles, energy breakdown and TOPS/W, per network and per layer."""

import numpy as np

from golden import isa
from golden.device import Device
from golden.energy import PRESETS, energy_breakdown, ops_per_run

__all__ = ["energy_summary", "layer_counters", "plot_layer_energy", "format_table"]


def energy_summary(counters, config, samples, preset="isaac_reram_32nm"):
    """Energy per inference by component (J), total, and TOPS/W of the crossbar work."""
    table = PRESETS[preset]
    breakdown = energy_breakdown(counters, table)
    ops = ops_per_run(counters, config)
    return {"per_inference": {k: v / samples for k, v in breakdown.items()},
            "tops_per_watt": ops / breakdown["total"] / 1e12 if breakdown["total"] else 0.0,
            "cycles_per_inference": counters["cycles"] / samples,
            "preset": table.name}


def layer_counters(program, config):
    """Counters of one inference batch split by layer, from the golden model's
    per-instruction trace of the compiled program (its totals are what the RTL counts)."""
    device = Device(config)
    device.load_program(isa.encode_program(program.inference))
    result = device.run(trace=True)
    layers = {}
    for name, pcs in program.layer_pcs.items():
        total = {}
        for pc, deltas in result.trace:
            if pc in pcs:
                for key, value in deltas.items():
                    total[key] = total.get(key, 0) + value
        layers[name] = total
    return layers


def plot_layer_energy(per_layer, path, title):
    """A stacked bar per layer of energy by component (matplotlib, written as PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_layer)
    components = sorted({c for breakdown in per_layer.values() for c in breakdown if c != "total"})
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(names), 4))
    bottom = np.zeros(len(names))
    for component in components:
        values = np.array([per_layer[n].get(component, 0.0) * 1e9 for n in names])
        ax.bar(names, values, bottom=bottom, label=component)
        bottom += values
    ax.set_ylabel("energy per batch (nJ)")
    ax.set_title(title)
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
