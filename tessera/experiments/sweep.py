"""Design-space sweeps on Dask: every point of configs x block sparsity compiled and run on
the golden model as one task, RTL spot checks as separate tasks; rows to CSV and Parquet,
and the accuracy-energy Pareto front as a plot.

By default the tasks run on an embedded ``distributed.LocalCluster`` (one single-threaded
worker process per core); given a scheduler address they run on that cluster, whose
workers need this package installed and, for RTL checks, Verilator.
"""

import dataclasses
import itertools
import os
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.runtime.report import energy_key
from golden import AccelConfig
from golden.energy import COMPONENTS, DEFAULT_PRESET, OFF_CHIP, PRESETS

# Energy columns: each on-chip component of golden.energy, per inference.
ENERGY_COLUMNS = {component: energy_key(component, "nJ")
                  for component in dict.fromkeys(COMPONENTS.values()) if component != OFF_CHIP}

__all__ = ["SweptNetwork", "SweepData", "SweepPoint", "SweepResult", "sweep_points", "evaluate_point",
           "check_point_on_rtl", "pareto_front", "run_sweep", "dask_client"]

CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(AccelConfig))
SPARSITY_AXIS = "prune_blocks"
NETWORK_AXIS = "network"
CONNECT_TIMEOUT_S = 30          # reaching a --scheduler
INTEGER_COLUMNS = ("point",) + CONFIG_FIELDS + ("samples", "segments", "batch")


@dataclass(frozen=True)
class SweptNetwork:
    """A network of the sweep as the user gave it (float, unpruned), and what goes with it."""
    network: object              # firmware.frontend.network.Network
    given: object = None         # its own quantisation (a QDQ/QOperator ONNX), or None
    head: object = None          # a final Softmax/LogSoftmax/ArgMax left to the host, or None


@dataclass(frozen=True)
class SweepData:
    """What every task shares (scattered to the workers once): the networks by name, how
    their inputs are laid out, the samples, the float models' classes, the energy preset."""
    networks: dict               # name -> SweptNetwork
    layout: str                  # "vector" or "NCHW" (how the models take their inputs)
    calibration: np.ndarray      # float samples: activation ranges and ADC ranges
    inputs: np.ndarray           # float samples every point runs
    labels: object               # int classes of `inputs`, or None
    preset: str                  # golden.energy preset the energies use
    float_predictions: dict      # name -> top-1 classes of the float model (`agreement`)

    @classmethod
    def build(cls, networks, calibration, inputs, labels=None, layout="vector",
              preset=DEFAULT_PRESET):
        """`networks`: a firmware Network, or a dict of name -> Network or SweptNetwork."""
        if not isinstance(networks, dict):
            networks = {"network": networks}
        networks = {name: n if isinstance(n, SweptNetwork) else SweptNetwork(n)
                    for name, n in networks.items()}
        inputs = np.asarray(inputs)
        return cls(networks, layout, np.asarray(calibration), inputs,
                   None if labels is None else np.asarray(labels), preset,
                   {name: n.network.forward(inputs).argmax(1) for name, n in networks.items()})


@dataclass(frozen=True)
class SweepPoint:
    index: int
    network: str                 # a name in SweepData.networks
    config: dict                 # AccelConfig fields
    prune_blocks: float          # fraction of crossbar-aligned weight blocks pruned


@dataclass
class SweepResult:
    rows: list                   # one dict per point, in point order
    rtl_rows: list               # one dict per RTL check
    front: list                  # indices of the Pareto-optimal points
    files: dict                  # what was written: name -> path


def sweep_points(axes, networks, base=None):
    """The cartesian product of `axes` (``network``, an AccelConfig field or ``prune_blocks``
    -> values), in the order given, the last axis varying fastest; every one of `networks`
    unless ``network`` is an axis, unswept fields from `base` (a dict of AccelConfig fields)
    or AccelConfig's defaults. Config values are not checked here: a point whose config is
    invalid becomes a row carrying its error."""
    unknown = [name for name in axes
               if name not in (NETWORK_AXIS,) + CONFIG_FIELDS + (SPARSITY_AXIS,)]
    if unknown:
        raise ValueError(f"unknown sweep axis {unknown[0]!r}; axes are {NETWORK_AXIS}, the "
                         f"AccelConfig fields ({', '.join(CONFIG_FIELDS)}) and {SPARSITY_AXIS}")
    axes = {NETWORK_AXIS: list(networks), **axes}
    missing = [n for n in axes[NETWORK_AXIS] if n not in networks]
    if missing:
        raise ValueError(f"sweep axis network: no network named {missing[0]!r} "
                         f"(networks: {', '.join(networks)})")
    for name, values in axes.items():
        if len(values) == 0:
            raise ValueError(f"sweep axis {name!r} has no values")
    names = list(axes)
    defaults = {field.name: field.default for field in dataclasses.fields(AccelConfig)}
    points = []
    for index, values in enumerate(itertools.product(*(axes[n] for n in names))):
        chosen = dict(zip(names, values))
        config = dict(defaults, **(base or {}))
        config.update({k: v for k, v in chosen.items() if k in CONFIG_FIELDS})
        points.append(SweepPoint(index, chosen[NETWORK_AXIS], config,
                                 float(chosen.get(SPARSITY_AXIS, 0.0))))
    return points


def _row_head(point):
    row = {"point": point.index, NETWORK_AXIS: point.network}
    row.update({name: point.config.get(name) for name in CONFIG_FIELDS})
    row[SPARSITY_AXIS] = point.prune_blocks
    return row


def _compile_point(point, data):
    """(config, Executable, achieved weight sparsity) of a point: prune, quantise, compile."""
    from firmware.compiler.build import build_executable
    from firmware.compiler.pipeline import LossyAdcWarning
    from firmware.compiler.prune import prune_blocks

    config = AccelConfig(**point.config)
    swept = data.networks[point.network]
    network, _ = prune_blocks(swept.network, point.prune_blocks, config.rows, config.cols)
    matrices = [layer.matrix for layer in network.layers if hasattr(layer, "matrix")]
    sparsity = sum(int((m == 0).sum()) for m in matrices) / sum(m.size for m in matrices)
    with warnings.catch_warnings():
        # Calibration data is always given, so a lossy ADC is calibrated, never warned of.
        warnings.simplefilter("ignore", LossyAdcWarning)
        build = build_executable(network, config, data.calibration, given=swept.given,
                                 input_layout=data.layout, head=swept.head,
                                 adc_calibration=data.calibration)
    return config, build.executable, sparsity


def evaluate_point(point, data):
    """One sweep point on the golden model: its row. Any failure (an invalid config, a
    network that does not map) becomes the row's `error`; the sweep goes on."""
    from firmware.runtime.report import energy_summary
    from firmware.runtime.targets import GoldenTarget

    started = time.perf_counter()
    row = _row_head(point)
    try:
        config, exe, sparsity = _compile_point(point, data)
        x_q = exe.input.quantize(data.inputs)
        run = GoldenTarget().run(exe, x_q)
        summary = energy_summary(run.counters, config, len(x_q), data.preset, run.host_words)
        predictions = run.outputs.argmax(1)
        counters = run.counters
        row.update({
            "config": config.name, "adc_bits": config.adc_bits,
            "weight_sparsity": sparsity, "samples": len(x_q),
            "accuracy": (float(np.mean(predictions == data.labels))
                         if data.labels is not None else None),
            "agreement": float(np.mean(predictions == data.float_predictions[point.network])),
            "cycles_per_inference": summary["cycles_per_inference"],
            energy_key("on_chip", "nJ"): summary[energy_key("on_chip")] * 1e9,
            energy_key("off_chip", "nJ"): summary[energy_key("off_chip")] * 1e9,
        })
        for component, column in ENERGY_COLUMNS.items():
            row[column] = summary[energy_key("components")].get(component, 0.0) * 1e9
        row.update({
            "tops_per_watt": summary["tops_per_watt"],
            "tile_utilisation": counters["tile_busy_cycles"] / (counters["cycles"] * config.tiles),
            "segments": len(exe.segments), "batch": exe.batch, "preset": data.preset,
            "error": None})
    except Exception as error:              # a row, never a crashed sweep
        row["error"] = f"{type(error).__name__}: {error}"
    row["seconds"] = time.perf_counter() - started
    return row


def check_point_on_rtl(point, data, sample_indices):
    """A point's executable run on its config's RTL (Verilator) and on the golden model for
    the samples `sample_indices`: whether the runs are the same (`compare_runs`: outputs,
    every counter, the host words), and how they differ."""
    from firmware.runtime.run import compare_runs
    from firmware.runtime.targets import GoldenTarget
    from sim.network import RTLTarget

    started = time.perf_counter()
    row = {"point": point.index, "samples": len(sample_indices)}
    try:
        config, exe, _ = _compile_point(point, data)
        row["config"] = config.name
        x_q = exe.input.quantize(data.inputs[np.asarray(sample_indices)])
        differences = compare_runs(GoldenTarget().run(exe, x_q),
                                   RTLTarget(log=lambda *_: None).run(exe, x_q))
        row.update({"rtl_equals_golden": not differences,
                    "differences": "; ".join(differences) or None, "error": None})
    except Exception as error:
        row.update({"rtl_equals_golden": False, "error": f"{type(error).__name__}: {error}"})
    row["seconds"] = time.perf_counter() - started
    return row


def quality_metric(rows):
    """The column the front maximises: accuracy with labels, else agreement."""
    return "accuracy" if any(r.get("accuracy") is not None for r in rows) else "agreement"


def pareto_front(rows, metric=None):
    """Indices of the successful points no other beats on both counts: a higher `metric`
    (accuracy or agreement) at no more on-chip energy per inference, or less energy at no
    lower `metric`. Sorted by energy."""
    metric = metric or quality_metric(rows)
    ok = [r for r in rows if r.get("error") is None]
    front = []
    for r in ok:
        dominated = any(
            o is not r
            and o[metric] >= r[metric] and o["on_chip_nJ_per_inference"] <= r["on_chip_nJ_per_inference"]
            and (o[metric] > r[metric] or o["on_chip_nJ_per_inference"] < r["on_chip_nJ_per_inference"])
            for o in ok)
        if not dominated:
            front.append(r)
    return [r["point"] for r in sorted(front, key=lambda r: r["on_chip_nJ_per_inference"])]


@contextmanager
def dask_client(scheduler=None, workers=None):
    """A distributed.Client: on the cluster at `scheduler` (``tcp://host:8786``), or on an
    embedded LocalCluster of `workers` single-threaded processes (default: one per core)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as error:
            raise ConnectionError(f"no Dask scheduler answered at {scheduler} within "
                                  f"{CONNECT_TIMEOUT_S} s ({error})") from None
        with client:
            yield client
        return
    workers = workers or os.cpu_count() or 1
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _short_label(row, swept):
    parts = [f"{row[name]}" if name == NETWORK_AXIS else f"{name}={row[name]}"
             for name in swept if name in (NETWORK_AXIS,) + CONFIG_FIELDS]
    if SPARSITY_AXIS in swept:
        parts.append(f"pruned {row[SPARSITY_AXIS]:.0%}")
    return ", ".join(parts) or row["config"]


def plot_pareto(rows, front, swept, path, title):
    """Accuracy (or agreement) against on-chip energy per inference, every point, the
    front joined and labelled (matplotlib, PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = quality_metric(rows)
    ok = [r for r in rows if r.get("error") is None]
    by_point = {r["point"]: r for r in ok}
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter([r["on_chip_nJ_per_inference"] for r in ok], [100 * r[metric] for r in ok],
               s=14, color="lightgrey", label=f"{len(ok)} points")
    on_front = [by_point[i] for i in front]
    ax.plot([r["on_chip_nJ_per_inference"] for r in on_front], [100 * r[metric] for r in on_front],
            "o-", color="tab:blue", label="Pareto front")
    for r in on_front:
        ax.annotate(_short_label(r, swept), (r["on_chip_nJ_per_inference"], 100 * r[metric]),
                    fontsize=6, textcoords="offset points", xytext=(4, -3))
    ax.set_xscale("log")
    energies = [r["on_chip_nJ_per_inference"] for r in ok]
    ax.set_xlim(min(energies) / 1.15, max(energies) * 1.8)     # room for the labels
    ax.set_xlabel("on-chip energy per inference (nJ, log scale)")
    ax.set_ylabel("top-1 accuracy (%)" if metric == "accuracy"
                  else "top-1 agreement with the unpruned float model (%)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _write_rows(rows, stem):
    """`stem`.csv and `stem`.parquet (pandas, pyarrow); integer columns stay integers
    where a failed point leaves a gap."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in INTEGER_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    frame.to_parquet(stem.with_suffix(".parquet"), index=False)
    return {stem.name + ".csv": stem.with_suffix(".csv"),
            stem.name + ".parquet": stem.with_suffix(".parquet")}


def _gather(futures, progress, timeout_s, log):
    """Results of `futures` in order; a task that raised anyway (a worker lost) or had not
    finished when `timeout_s` ran out (then cancelled) as an exception. On a terminal,
    Dask's progress bar; in a log, a line every 10 % done."""
    import sys
    import threading
    from distributed import as_completed, progress as progress_bar, wait

    deadline = time.monotonic() + timeout_s
    if progress and sys.stdout.isatty():
        # Dask's console bar blocks until every task ends: on a thread, so the wait below
        # keeps its timeout.
        bar = threading.Thread(target=progress_bar, args=(futures,), kwargs={"notebook": False},
                               daemon=True)
        bar.start()
    elif progress:
        step = max(1, len(futures) // 10)
        try:
            for done, _ in enumerate(as_completed(futures, timeout=timeout_s), 1):
                if done % step == 0 or done == len(futures):
                    log(f"  {done}/{len(futures)} done")
        except TimeoutError:
            pass
    try:
        wait(futures, timeout=max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        pass
    if progress and sys.stdout.isatty():
        bar.join(timeout=1)
        print()
    late = TimeoutError(f"not finished within the sweep's {timeout_s / 60:.0f} min")
    results = [f.result() if f.status == "finished" else f.exception() if f.status == "error"
               else late for f in futures]
    for f in futures:
        if f.status not in ("finished", "error"):
            f.cancel()
    return results


def run_sweep(data, axes, out_dir, base=None, client=None, scheduler=None, workers=None,
              rtl_check=0, rtl_samples=4, seed=0, progress=True, timeout_s=24 * 3600, log=print):
    """Run every point of `axes` (see `sweep_points`) on the golden model as a Dask task,
    then `rtl_check` of the successful points on the RTL for `rtl_samples` samples each
    (chosen with `seed`). Writes to `out_dir`: sweep.csv/.parquet (one row per point),
    rtl_checks.csv/.parquet, pareto.png. Uses `client`, else a cluster at `scheduler`,
    else a LocalCluster of `workers` processes."""
    if data.preset not in PRESETS:
        raise ValueError(f"unknown energy preset {data.preset!r}; presets are {sorted(PRESETS)}")
    points = sweep_points(axes, data.networks, base)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if client is None:
        with dask_client(scheduler, workers) as own:
            return run_sweep(data, axes, out_dir, base, own, rtl_check=rtl_check,
                             rtl_samples=rtl_samples, seed=seed, progress=progress,
                             timeout_s=timeout_s, log=log)
    token = uuid.uuid4().hex[:8]             # task keys unique on a shared cluster
    log(f"sweep: {len(points)} points on {len(client.scheduler_info()['workers'])} Dask "
        f"worker(s), {len(data.inputs)} samples each, golden model; results in {out_dir}")
    shared = client.scatter(data, broadcast=True, hash=False)
    futures = [client.submit(evaluate_point, p, shared, key=f"sweep-point-{p.index}-{token}",
                             pure=False) for p in points]
    rows = []
    for point, result in zip(points, _gather(futures, progress, timeout_s, log)):
        if isinstance(result, BaseException):
            result = dict(_row_head(point), error=f"{type(result).__name__}: {result}")
        rows.append(result)

    rtl_rows = []
    ok = [p for p, r in zip(points, rows) if r["error"] is None]
    if rtl_check and ok:
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(len(ok), size=min(rtl_check, len(ok)), replace=False))
        samples = min(rtl_samples, len(data.inputs))
        log(f"RTL checks: {len(chosen)} point(s), {samples} samples each (Verilator builds "
            f"take minutes per new config) ...")
        futures = []
        for i in chosen:
            indices = sorted(rng.choice(len(data.inputs), size=samples, replace=False).tolist())
            futures.append(client.submit(check_point_on_rtl, ok[i], shared, indices,
                                         key=f"rtl-check-{ok[i].index}-{token}", pure=False))
        for i, result in zip(chosen, _gather(futures, progress, timeout_s, log)):
            if isinstance(result, BaseException):
                result = {"point": ok[i].index, "rtl_equals_golden": False,
                          "error": f"{type(result).__name__}: {result}"}
            rtl_rows.append(result)

    front = pareto_front(rows)
    files = _write_rows(rows, out_dir / "sweep")
    if rtl_rows:
        files.update(_write_rows(rtl_rows, out_dir / "rtl_checks"))
    swept = [name for name, values in dict({NETWORK_AXIS: data.networks}, **axes).items()
             if len(values) > 1]
    if front:
        samples_basis = (f"{len(data.inputs)} samples" + ("" if data.labels is not None
                                                          else ", no labels"))
        files["pareto.png"] = plot_pareto(
            rows, front, swept, out_dir / "pareto.png",
            f"{len(rows)} points, golden model, {samples_basis}; energy per inference, "
            f"{PRESETS[data.preset].name}\nswept: {', '.join(swept) or 'nothing'}")
    return SweepResult(rows, rtl_rows, front, files)
