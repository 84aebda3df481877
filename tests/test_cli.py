"""The command line on the golden backend: compile, run, report, and its error messages."""

import json

import numpy as np
import pytest

from tessera.cli import main


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mlp.npz", w0=rng.normal(0, 0.3, (40, 24)), b0=np.zeros(24),
             w1=rng.normal(0, 0.3, (24, 10)), b1=np.zeros(10))
    np.save(tmp_path / "calib.npy", rng.uniform(0, 1, (100, 40)))
    np.save(tmp_path / "inputs.npy", rng.uniform(0, 1, (50, 40)))
    return tmp_path


def test_compile_run_report(files, capsys):
    compiled, run = files / "net.pkl", files / "run.json"
    assert main(["compile", str(files / "mlp.npz"), "--calibration", str(files / "calib.npy"),
                 "--prune-blocks", "0.5", "--out", str(compiled)]) == 0
    assert "dense0: 3x2 blocks, 3 stored (50%)" in capsys.readouterr().out
    assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--out", str(run)]) == 0
    record = json.loads(run.read_text())
    assert record["samples"] == 50 and len(record["predictions"]) == 50
    assert record["counters"]["mvm_products"] > 0
    assert main(["report", str(run)]) == 0
    assert "TOPS/W" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["compile", "missing.npz", "--calibration", "calib.npy"], "network file missing.npz does not exist"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--rows", "0"],
     "AccelConfig.rows must be a positive integer, not 0"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--prune-blocks", "0.5",
      "--prune-layers", "conv9"], "no layer 'conv9'"),
    (["report", "{d}/nothing.json"], "run file"),
])
def test_errors_name_what_is_wrong(files, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main([a.format(d=files) for a in argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
