"""Design-space sweeps on a Dask LocalCluster: the rows of a 2x2 sweep, checked against
the int8 reference model and by hand; failed points; reproducibility on a second client of
the same cluster (the --scheduler path)."""

import numpy as np
import pandas as pd
import pytest

from firmware.frontend.network import Dense, Network
from firmware.compiler.prune import prune_blocks
from firmware.compiler.quantize import quantize
from golden import AccelConfig
from golden.energy import COMPONENTS, OFF_CHIP
from tessera.cli import main
from tessera.experiments.sweep import SweepData, dask_client, pareto_front, run_sweep

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, as `tessera sweep --workers 2` makes them."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(5)
    network = Network((Dense("hidden", rng.normal(0, 0.3, (40, 24)), rng.normal(0, 0.1, 24)),
                       Dense("out", rng.normal(0, 0.3, (24, 10)), np.zeros(10), relu=False)))
    calibration = rng.uniform(0, 1, (80, 40))
    inputs = rng.uniform(0, 1, (30, 40))
    labels = rng.integers(0, 10, 30)
    return network, calibration, inputs, labels


def test_a_2x2_sweep_gives_checked_rows(cluster, mlp, tmp_path):
    """adc_bits {5, lossless 7} x prune_blocks {0, 0.5} on a LocalCluster: four rows, each
    lossless one equal to the int8 reference model of its (pruned) network, the energy
    columns adding up, pruning costing fewer cells."""
    network, calibration, inputs, labels = mlp
    data = SweepData.build(network, calibration, inputs, labels)
    axes = {"adc_bits": [5, 7], "prune_blocks": [0.0, 0.5]}
    with distributed.Client(cluster) as client:
        result = run_sweep(data, axes, tmp_path, client=client, progress=False, log=lambda *_: None)
    rows = pd.read_csv(tmp_path / "sweep.csv")
    assert rows.equals(pd.read_parquet(tmp_path / "sweep.parquet").astype(rows.dtypes))
    assert list(rows["adc_bits"]) == [5, 5, 7, 7] and set(rows["network"]) == {"network"}
    assert list(rows["prune_blocks"]) == [0.0, 0.5, 0.0, 0.5]
    assert rows["error"].isna().all()
    assert (tmp_path / "pareto.png").stat().st_size > 0

    for row in result.rows:
        pruned, masks = prune_blocks(network, row["prune_blocks"], 16, 16)
        # Achieved sparsity, by hand: zero weights over all weights of the pruned matrices.
        zeros = sum(int((layer.matrix == 0).sum()) for layer in pruned.layers)
        assert row["weight_sparsity"] == pytest.approx(zeros / (40 * 24 + 24 * 10))
        if row["adc_bits"] == 7:            # lossless: the int8 reference model's classes
            qnet = quantize(pruned, calibration)
            reference = qnet.forward(qnet.input.quantize(inputs)).argmax(1)
            assert row["accuracy"] == pytest.approx(np.mean(reference == labels))
        floats = network.forward(inputs).argmax(1)
        assert 0 <= row["agreement"] <= 1
        if row["prune_blocks"] == 0 and row["adc_bits"] == 7:
            # int8 against float: the same network, so they mostly agree
            assert row["agreement"] == pytest.approx(np.mean(reference == floats))
        parts = sum(row[f"{c}_nJ_per_inference"] for c in set(COMPONENTS.values()) if c != OFF_CHIP)
        assert parts == pytest.approx(row["on_chip_nJ_per_inference"])
        assert 0 < row["tile_utilisation"] <= 1 and row["segments"] >= 1
    by = {(r["adc_bits"], r["prune_blocks"]): r for r in result.rows}
    for bits in (5, 7):
        assert by[bits, 0.5]["crossbar_nJ_per_inference"] < by[bits, 0.0]["crossbar_nJ_per_inference"]
        assert by[bits, 0.5]["weight_sparsity"] > 0.3
    # Fewer ADC bits cost less ADC energy on the same work.
    assert by[5, 0.0]["ADC_nJ_per_inference"] < by[7, 0.0]["ADC_nJ_per_inference"]


def test_failures_are_rows_and_results_repeat(cluster, mlp, tmp_path):
    """A bad config and a bad sparsity become rows with their errors, on a client that
    reaches the cluster by its address (as --scheduler does); the same sweep run twice
    gives the same rows."""
    network, calibration, inputs, _ = mlp
    data = SweepData.build(network, calibration, inputs)
    axes = {"adc_share": [1, 3], "prune_blocks": [0.25, 1.5]}
    runs = []
    for attempt in range(2):
        with dask_client(scheduler=cluster.scheduler_address) as client:
            runs.append(run_sweep(data, axes, tmp_path / str(attempt), client=client,
                                  progress=False, log=lambda *_: None))
    rows = runs[0].rows
    assert rows[0]["error"] is None
    assert "adc_share must divide cols (16)" in rows[2]["error"]
    assert "ValueError" in rows[1]["error"] and "1.5" in rows[1]["error"]
    assert [r["point"] for r in rows] == [0, 1, 2, 3]
    assert runs[0].front == [0] and rows[0]["accuracy"] is None      # no labels given
    first, second = (pd.read_csv(tmp_path / str(a) / "sweep.csv").drop(columns="seconds")
                     for a in range(2))
    pd.testing.assert_frame_equal(first, second)


def test_pareto_front_by_hand():
    rows = [{"point": 0, "agreement": 0.9, "on_chip_nJ_per_inference": 10.0, "error": None},
            {"point": 1, "agreement": 0.8, "on_chip_nJ_per_inference": 5.0, "error": None},
            {"point": 2, "agreement": 0.8, "on_chip_nJ_per_inference": 6.0, "error": None},
            {"point": 3, "agreement": 0.95, "on_chip_nJ_per_inference": 10.0, "error": None},
            {"point": 4, "error": "ConfigError: ..."}]
    # 2 is beaten by 1 (same agreement, less energy), 0 by 3 (same energy, more agreement)
    assert pareto_front(rows) == [1, 3]


def test_cli_sweep_and_its_errors(cluster, tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mlp.npz", w0=rng.normal(0, 0.3, (40, 24)), b0=np.zeros(24),
             w1=rng.normal(0, 0.3, (24, 10)), b1=np.zeros(10))
    np.save(tmp_path / "calib.npy", rng.uniform(0, 1, (60, 40)))
    np.save(tmp_path / "inputs.npy", rng.uniform(0, 1, (20, 40)))
    np.save(tmp_path / "labels.npy", rng.integers(0, 10, 20))
    args = ["sweep", str(tmp_path / "mlp.npz"), "--calibration", str(tmp_path / "calib.npy"),
            "--inputs", str(tmp_path / "inputs.npy"), "--scheduler", cluster.scheduler_address]
    assert main(args + ["--labels", str(tmp_path / "labels.npy"), "--cell-bits", "2", "4",
                        "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 points ran" in out and "Pareto front (top-1 accuracy on 20 labelled" in out
    assert len(pd.read_csv(tmp_path / "out" / "sweep.csv")) == 2

    np.save(tmp_path / "short.npy", rng.integers(0, 10, 5))
    with pytest.raises(SystemExit):
        main(args + ["--labels", str(tmp_path / "short.npy")])
    assert "has 5 labels for 20 samples" in capsys.readouterr().err
    monkeypatch.setattr("tessera.experiments.sweep.CONNECT_TIMEOUT_S", 2)
    with pytest.raises(SystemExit):
        main(args[:-2] + ["--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "x")])
    assert "no Dask scheduler answered at tcp://127.0.0.1:1" in capsys.readouterr().err


def test_the_documented_python_sweep_runs(tmp_path):
    """docs/results.md's Python sweep, as written, in a fresh interpreter."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "docs" / "results.md").read_text()
    script, = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "run_sweep" in b]
    (tmp_path / "example.py").write_text(script)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(tmp_path / "build" / "sweep_api" / "sweep.csv")
    assert len(rows) == 4 and rows["error"].isna().all()
    assert "Pareto front: [" in done.stdout


def test_a_sweep_out_of_time_keeps_its_rows(cluster, mlp, tmp_path):
    network, calibration, inputs, _ = mlp
    data = SweepData.build(network, calibration, inputs)
    with distributed.Client(cluster) as client:
        result = run_sweep(data, {"adc_bits": [4, 5, 6, 7]}, tmp_path, client=client,
                           progress=False, timeout_s=1e-3, log=lambda *_: None)
    unfinished = [r for r in result.rows if r["error"] is not None]
    assert unfinished and all("not finished within" in r["error"] for r in unfinished)
    assert len(pd.read_csv(tmp_path / "sweep.csv")) == 4


def test_a_point_checked_on_the_rtl_equals_golden(mlp):
    """`--rtl-check`'s task, on one point (half its blocks pruned) and 3 samples, on the
    config tests/test_network_rtl.py builds (one Verilator build for both): the RTL's run
    equals golden's, and a row records it."""
    from tessera.experiments.sweep import SweepPoint, check_point_on_rtl

    network, calibration, inputs, _ = mlp
    data = SweepData.build(network, calibration, inputs)
    config = AccelConfig(imem_depth=16, wmem_depth=48, amem_depth=32, psum_depth=32,
                         qmem_depth=8)
    point = SweepPoint(0, "network", config.to_dict(), 0.5)
    row = check_point_on_rtl(point, data, [0, 3, 5])
    assert row["error"] is None, row["error"]
    assert row["rtl_equals_golden"] and row["differences"] is None
    assert (row["config"], row["samples"]) == (config.name, 3)
