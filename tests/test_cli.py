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


def test_compile_and_run_an_onnx_cnn(tmp_path, capsys):
    """A CNN as a user has it (ONNX, NCHW inputs) through compile and run, the outputs
    equal to the int8 reference of the network the importer built."""
    onnx = pytest.importorskip("onnx")
    import pickle

    from firmware.onnx_io import to_onnx
    from firmware.train import init_cnn

    rng = np.random.default_rng(3)
    network = init_cnn((8, 8, 1), [(3, 16, 1), ("maxpool", 2), (2, 16, 1)], 10, rng)
    onnx.save(to_onnx(network), tmp_path / "cnn.onnx")
    images = rng.uniform(0, 1, (30, 1, 8, 8))                       # NCHW, as ONNX takes them
    np.save(tmp_path / "calib.npy", images)
    np.save(tmp_path / "inputs.npy", images[:7].reshape(7, -1))      # flattened NCHW also works
    compiled, run = tmp_path / "cnn.pkl", tmp_path / "run.json"
    assert main(["compile", str(tmp_path / "cnn.onnx"), "--calibration", str(tmp_path / "calib.npy"),
                 "--prune-blocks", "0.5", "--out", str(compiled)]) == 0
    assert "conv0: 1x1 blocks" in capsys.readouterr().out
    assert main(["run", str(compiled), "--inputs", str(tmp_path / "inputs.npy"), "--out", str(run)]) == 0
    qnet = pickle.loads(compiled.read_bytes())["qnet"]
    expected = qnet.forward(qnet.input.quantize(images[:7].transpose(0, 2, 3, 1)))
    assert json.loads(run.read_text())["outputs_int8"] == expected.tolist()

    np.save(tmp_path / "wrong.npy", images[:, :, :7])
    with pytest.raises(SystemExit):
        main(["run", str(compiled), "--inputs", str(tmp_path / "wrong.npy")])
    assert "must have shape (samples, 1, 8, 8) or (samples, 64), not (30, 1, 7, 8)" in capsys.readouterr().err
