"""The command line on the golden backend: compile, run, report, and its one-line errors."""

import csv
import json
import pickle

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
    (tmp_path / "notes.txt").write_text("0.1 0.2 0.3\n")
    return tmp_path


def compile_mlp(files, *extra):
    compiled = files / "net.tessera"
    assert main(["compile", str(files / "mlp.npz"), "--calibration", str(files / "calib.npy"),
                 "--out", str(compiled), *map(str, extra)]) == 0
    return compiled


def test_compile_run_report(files, capsys, monkeypatch):
    import tessera.options
    monkeypatch.setattr(tessera.options, "PROGRESS_AFTER_SECONDS", 0.0)    # show it at once
    compiled, run = compile_mlp(files, "--prune-blocks", "0.5"), files / "run.json"
    printed = capsys.readouterr()
    assert "dense0: 3x2 blocks, 3 stored (50%)" in printed.out
    # progress on stderr: every step mapped (2 Dense layers), every segment generated
    assert "compiling: 2/2 steps mapped" in printed.err
    assert "segments generated" in printed.err
    assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--out", str(run)]) == 0
    record = json.loads(run.read_text())
    assert record["samples"] == 50 and len(record["predictions"]) == 50
    assert record["counters"]["mvm_products"] > 0
    # 50 samples in the compiled batch and powers of two; the inputs (40 -> 3 entries of
    # 4 words) written once per sample.
    assert sum(record["batches"]) == 50 and record["host_words"]["written"]["amem"] == 50 * 3 * 4
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "TOPS/W (on chip)" in out and "off-chip" in out


def test_report_json_is_counters_times_the_preset(files, capsys):
    """By hand from the preset's table: the ADC's joules per inference are the run's ADC
    conversions x pJ per conversion / samples (the default 7-bit ADC: 2**7 x the Walden
    FoM of 5 fJ); on and off chip add up to the total."""
    from golden.energy import PRESETS

    compiled, run = compile_mlp(files), files / "run.json"
    assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--preset", "sram_imc_65nm", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counters, table = report["counters_whole_run"], PRESETS["sram_imc_65nm"]
    assert report["preset"] == table.name and report["samples"] == 50
    assert report["components_J_per_inference"]["ADC"] == pytest.approx(
        counters["adc_conversions"] * 5e-15 * 2 ** 7 / 50)
    assert report["on_chip_J_per_inference"] + report["off_chip_J_per_inference"] \
        == pytest.approx(report["total_J_per_inference"])
    assert sum(report["components_J_per_inference"].values()) \
        == pytest.approx(report["total_J_per_inference"])
    assert report["cycles_per_inference"] == counters["cycles"] / 50
    assert report["tops_per_watt_on_chip"] > 0


def test_labels_give_top1_accuracy(files, capsys):
    compiled, run = compile_mlp(files), files / "run.json"
    assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--out", str(run)]) == 0
    predictions = np.array(json.loads(run.read_text())["predictions"])
    labels = predictions.copy()
    labels[:10] = (labels[:10] + 1) % 10                # 10 of 50 wrong, by construction
    np.save(files / "labels.npy", labels)
    assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--labels",
                 str(files / "labels.npy"), "--out", str(run)]) == 0
    assert "top-1 accuracy             0.8000 (50 labels)" in capsys.readouterr().out
    assert json.loads(run.read_text())["accuracy"] == 0.8


def expect_error(capsys, argv, message):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1, err                    # one line, no traceback


@pytest.mark.parametrize("argv, message", [
    (["compile", "missing.npz", "--calibration", "calib.npy"], "network file missing.npz does not exist"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--rows", "0"],
     "AccelConfig.rows must be a positive integer, not 0"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--prune-blocks", "0.5",
      "--prune-layers", "conv9"], "no layer 'conv9'"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--batch", "0"],
     "argument --batch: must be a positive integer, not '0'"),
    (["report", "{d}/nothing.json"], "run file {d}/nothing.json does not exist"),
    (["report", "{d}"], "is a folder, not a file"),
    (["run", "/dev/zero", "--inputs", "{d}/calib.npy"], "/dev/zero is not a regular file"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--prune-blocks", "0.5",
      "--prune-layers"], "argument --prune-layers: expected at least one argument"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--prune-layers", "dense0"],
     "--prune-layers names the layers --prune-blocks prunes"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--prune-blocks", "1.5"],
     "argument --prune-blocks: must be a fraction of blocks in [0, 1), not '1.5'"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--finetune-epochs", "0"],
     "argument --finetune-epochs: must be a positive integer, not '0'"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--finetune-epochs", "-1"],
     "argument --finetune-epochs: must be a positive integer, not '-1'"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--out", "{d}/mlp.npz"],
     "--out {d}/mlp.npz is the network file: writing would replace it"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--out", "{d}/calib.npy"],
     "is the --calibration file"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--out", "{d}"],
     "is a folder; give a file path"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/notes.txt"],
     "notes.txt is not an .npy array: it looks like a text file"),
    (["build", "--board", "ulx3s", "--timeout", "inf"],
     "argument --timeout: must be a positive, finite number of minutes, not 'inf'"),
    (["build", "--board", "ulx3s", "--baud", "0"], "argument --baud: must be a positive integer"),
    (["compile", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--percentile", "40"],
     "argument --percentile: must be a percentile in (50, 100], not '40'"),
    (["tile-check", "--seed", "-1"], "argument --seed: must be an integer, 0 or more, not '-1'"),
    (["sweep", "{d}/mlp.npz", "--calibration", "{d}/calib.npy", "--inputs", "{d}/calib.npy",
      "--timeout", "nan"], "argument --timeout: must be a positive, finite number"),
])
def test_errors_name_what_is_wrong(files, capsys, argv, message):
    expect_error(capsys, [a.format(d=files) for a in argv], message.format(d=files))


@pytest.mark.parametrize("bad, message", [
    (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 85, np.nan, a),
     "holds nan at index (2, 5): inputs must be finite"),
    (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 41, np.inf, a),
     "holds inf at index (1, 1): inputs must be finite"),
    (lambda a: a[:0], "holds no samples (shape (0, 40))"),
    (lambda a: a.astype(str), "holds <U32 values, not numbers"),
])
@pytest.mark.parametrize("which", ["inputs", "calibration"])
def test_bad_arrays_are_refused_naming_file_and_index(files, capsys, bad, message, which):
    compiled = compile_mlp(files)
    array = bad(np.load(files / "inputs.npy"))
    np.save(files / "bad.npy", array)
    if which == "inputs":
        argv = ["run", compiled, "--inputs", files / "bad.npy"]
    else:
        argv = ["compile", files / "mlp.npz", "--calibration", files / "bad.npy"]
    expect_error(capsys, argv, f"{files / 'bad.npy'} {message}")


def test_limits_npz_inputs_relu_and_pickles_are_refused(files, capsys):
    compiled = compile_mlp(files)
    inputs = files / "inputs.npy"
    for limit in ("-5", "0"):
        expect_error(capsys, ["run", compiled, "--inputs", inputs, "--limit", limit],
                     f"--limit: must be a positive integer, not '{limit}'")
    np.savez(files / "inputs.npz", x=np.load(inputs))
    expect_error(capsys, ["run", compiled, "--inputs", files / "inputs.npz"],
                 "is an .npz archive; give one .npy array")
    arrays = dict(np.load(files / "mlp.npz"))
    np.savez(files / "relu3.npz", relu=np.array([True, False, True]), **arrays)
    expect_error(capsys, ["compile", files / "relu3.npz", "--calibration", files / "calib.npy"],
                 "relu has 3 entries, the network has 2 layers (w0..w1)")
    (files / "old.pkl").write_bytes(pickle.dumps({"config": {}, "qnet": None}))
    expect_error(capsys, ["run", files / "old.pkl", "--inputs", inputs],
                 "not a Tessera executable: it looks like a Python pickle (never loaded")
    np.save(files / "labels.npy", np.arange(10))
    expect_error(capsys, ["run", compiled, "--inputs", inputs, "--labels", files / "labels.npy"],
                 "has 10 labels for 50 samples")


@pytest.fixture
def run_file(files):
    compiled, run = compile_mlp(files), files / "run.json"
    assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("damage, message", [
    (lambda r: r["counters"].pop("adc_conversions"), "counter 'adc_conversions' is missing"),
    (lambda r: r["counters"].update(cycles=-3), "counter 'cycles' must be a non-negative integer, not -3"),
    (lambda r: r["counters"].update(cell_reads="many"),
     "counter 'cell_reads' must be a non-negative integer, not 'many'"),
    (lambda r: r.update(samples=0), "samples must be a positive integer, not 0"),
    (lambda r: r.update(samples=2.5), "samples must be a positive integer, not 2.5"),
    (lambda r: r["host_words"]["read"].update(amem=-1), "host_words['read'] must map memories"),
])
def test_report_refuses_damaged_run_files(run_file, capsys, damage, message):
    """Edited after `run` wrote it: refused as edited; edited and its digest recomputed
    (a run file another tool wrote): the fields are still checked."""
    from firmware.data_files import record_digest

    record = json.loads(run_file.read_text())
    damage(record)
    run_file.write_text(json.dumps(record))
    expect_error(capsys, ["report", run_file], "run_sha256 does not match its fields: the "
                                               "file was edited or damaged")
    record["run_sha256"] = record_digest(record, "run_sha256")
    run_file.write_text(json.dumps(record))
    expect_error(capsys, ["report", run_file], message)


@pytest.mark.parametrize("edit", [
    lambda r: r["config"].update(rows=128, cols=128),          # 18.9 TOPS/W before
    lambda r: r.update(samples=2 * r["samples"]),               # half the energy before
    lambda r: r["counters"].update(adc_conversions=0),          # 1.625 TOPS/W before
    lambda r: r["counters"].update(cycles=10 ** 30),            # 4.6e22 nJ before
    lambda r: r.pop("run_sha256"),
])
def test_report_refuses_edited_run_files(run_file, capsys, edit):
    record = json.loads(run_file.read_text())
    edit(record)
    run_file.write_text(json.dumps(record))
    expect_error(capsys, ["report", run_file], "run_sha256")


def test_compile_and_run_an_onnx_cnn(tmp_path, capsys):
    """A CNN as a user has it (ONNX, NCHW inputs) through compile and run, the outputs
    equal to the int8 reference of the network the importer builds, quantised apart."""
    onnx = pytest.importorskip("onnx")

    from firmware.frontend.onnx_io import load_onnx, to_onnx
    from firmware.compiler.quantize import quantize
    from firmware.frontend.train import init_cnn

    rng = np.random.default_rng(3)
    network = init_cnn((8, 8, 1), [(3, 16, 1), ("maxpool", 2), (2, 16, 1)], 10, rng)
    onnx.save(to_onnx(network), tmp_path / "cnn.onnx")
    images = rng.uniform(0, 1, (30, 1, 8, 8))                       # NCHW, as ONNX takes them
    np.save(tmp_path / "calib.npy", images)
    np.save(tmp_path / "inputs.npy", images[:7].reshape(7, -1))      # flattened NCHW also works
    compiled, run = tmp_path / "cnn.tessera", tmp_path / "run.json"
    assert main(["compile", str(tmp_path / "cnn.onnx"), "--calibration", str(tmp_path / "calib.npy"),
                 "--out", str(compiled)]) == 0
    assert "conv0: 1x1 blocks" in capsys.readouterr().out
    assert main(["run", str(compiled), "--inputs", str(tmp_path / "inputs.npy"), "--out", str(run)]) == 0
    qnet = quantize(load_onnx(tmp_path / "cnn.onnx"), images.transpose(0, 2, 3, 1))
    expected = qnet.forward(qnet.input.quantize(images[:7].transpose(0, 2, 3, 1)))
    assert json.loads(run.read_text())["outputs_int8"] == expected.tolist()

    np.save(tmp_path / "wrong.npy", images[:, :, :7])
    expect_error(capsys, ["run", compiled, "--inputs", tmp_path / "wrong.npy"],
                 "must have shape (samples, 1, 8, 8) or (samples, 64), not (30, 1, 7, 8)")


def test_pruning_measures_warns_and_fine_tunes(files, capsys):
    """Without training data, compile says how far the pruned model is from the unpruned
    one on the calibration set and warns; with it, it fine-tunes the pruned model first."""
    calibration = np.load(files / "calib.npy")
    np.save(files / "train.npy", calibration)
    # labels the unpruned float model gives: fine-tuning can learn them back
    from tessera.loaders import load_network
    network = load_network(files / "mlp.npz")[0]
    np.save(files / "labels.npy", network.forward(calibration).argmax(1))
    compile_mlp(files, "--prune-blocks", "0.5")
    captured = capsys.readouterr()
    # the agreement it should report, from the pruning API and the float models
    from firmware.compiler.prune import prune_blocks
    from golden import AccelConfig
    pruned, _ = prune_blocks(network, 0.5, AccelConfig().rows, AccelConfig().cols)
    agreement = np.mean(pruned.forward(calibration).argmax(1) == network.forward(calibration).argmax(1))
    assert agreement < 0.95                             # 74.0 % for this seed
    assert (f"pruned 50% of the blocks: top-1 agreement with the unpruned model "
            f"{agreement:.1%}") in captured.out
    assert "on the 100 calibration samples" in captured.out
    assert "below 95%): fine-tune with --train X.npy --labels Y.npy" in captured.err
    compile_mlp(files, "--prune-blocks", "0.5", "--train", files / "train.npy", "--labels",
                files / "labels.npy", "--finetune-epochs", "30")
    captured = capsys.readouterr()
    assert "pruned 50% of the blocks and fine-tuned: top-1 agreement" in captured.out
    assert "warning" not in captured.err        # it warns below 95 % (97.0 % measured)
    expect_error(capsys, ["compile", files / "mlp.npz", "--calibration", files / "calib.npy",
                          "--prune-blocks", "0.5", "--train", files / "train.npy"],
                 "fine-tuning needs both --train (inputs) and --labels")


def test_lossy_adc_is_calibrated_or_warned(files, capsys):
    """A 4-bit ADC (7 lossless): with --calibration each layer's range is reported; with
    --no-adc-calibration compile warns on stderr that every layer converts at shift 0."""
    compile_mlp(files, "--adc-bits", "4")
    captured = capsys.readouterr()
    assert ("ADC: 4 bits, 7 lossless; shifts 0..3 and two input encodings, calibrated per "
            "layer on 100 samples") in captured.out
    assert "dense0: two's-complement inputs, shift" in captured.out and "SQNR" in captured.out
    assert not captured.err
    compile_mlp(files, "--adc-bits", "4", "--no-adc-calibration")
    captured = capsys.readouterr()
    assert "not calibrated: every layer at shift 0" in captured.out
    assert captured.err.startswith("warning: the 4-bit ADC is below the lossless 7 bits")


def test_adc_trade_tabulates_and_plots(tmp_path, capsys):
    """The digits CNN at a 4-bit ADC (calibrated and not) and the lossless 7: a row each,
    the plots written, and ADC energy per inference in the ratio of ISAAC's ADC table
    (4 bits 0.79 pJ, 7 bits 1.42 pJ a conversion; the conversions do not change)."""
    assert main(["adc-trade", "--dataset", "digits", "--adc-bits", "4", "7",
                 "--test-samples", "60", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    with open(tmp_path / "digits_adc_trade.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["ADC bits"], r["ADC range"]) for r in rows] == [
        ("4", "calibrated"), ("4", "uncalibrated"), ("7", "lossless")]
    adc_nj = {r["ADC range"]: float(r["ADC nJ/inf"]) for r in rows}
    assert adc_nj["calibrated"] / adc_nj["lossless"] == pytest.approx(0.79 / 1.42, rel=0.01)
    assert (tmp_path / "digits_adc_trade.txt").read_text().strip() in printed
    assert (tmp_path / "digits_adc_trade.png").stat().st_size > 0
    assert (tmp_path / "digits_layers_adc4.png").stat().st_size > 0     # 5 bits not swept
    assert (tmp_path / "digits_adc_trade.txt").read_text().count("\n") == 6   # title, head, rule, 3


def test_relu_must_be_booleans(files, capsys):
    arrays = dict(np.load(files / "mlp.npz"))
    np.savez(files / "relu_text.npz", relu=np.array(["yes", "no"]), **arrays)
    expect_error(capsys, ["compile", files / "relu_text.npz", "--calibration", files / "calib.npy"],
                 "relu must hold booleans (or 0 and 1), one per layer, not <U3 ['yes', 'no']")


def test_output_into_a_closed_pipe_is_not_an_error(files):
    """`tessera compile ... | head`: the reader leaves first, the command still exits 0 and
    says nothing."""
    import subprocess
    import sys
    command = (f"{sys.executable} -m tessera.cli compile {files / 'mlp.npz'} --calibration "
               f"{files / 'calib.npy'} --out {files / 'piped.tessera'} | true")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_run_reports_clipped_inputs_and_warns_when_many(files, capsys):
    compiled, run = compile_mlp(files), files / "run.json"
    capsys.readouterr()
    assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--out", str(run)]) == 0
    out, err = capsys.readouterr()
    # calibration and inputs are both uniform on [0, 1): few if any values outside
    assert "inputs clipped" in out and "warning" not in err
    assert json.loads(run.read_text())["inputs_clipped_fraction"] < 0.01
    raw = np.load(files / "inputs.npy") * 127                  # pixels 0..127, not 0..1
    np.save(files / "raw.npy", raw)
    assert main(["run", str(compiled), "--inputs", str(files / "raw.npy"), "--out", str(run)]) == 0
    out, err = capsys.readouterr()
    calibration = np.load(files / "calib.npy")
    expected = np.mean(raw > calibration.max() + 0.5 * calibration.max() / 255)   # past the top code
    recorded = json.loads(run.read_text())["inputs_clipped_fraction"]
    assert abs(recorded - expected) < 0.01 and recorded > 0.9
    assert "warning:" in err and "outside the range the network was calibrated on" in err


@pytest.mark.parametrize("calibration, problem", [
    (np.full((20, 40), 0.5), "every sample the same"),
    (np.random.default_rng(1).uniform(0, 1, (1, 40)), "a single sample"),
    (np.full((20, 40), 1e30), "every sample the same"),
])
def test_compile_warns_on_degenerate_calibration(files, capsys, calibration, problem):
    np.save(files / "degenerate.npy", calibration)
    capsys.readouterr()
    assert main(["compile", str(files / "mlp.npz"), "--calibration", str(files / "degenerate.npy"),
                 "--out", str(files / "d.tessera")]) == 0
    err = capsys.readouterr().err
    assert "warning: degenerate calibration data" in err and problem in err, err


@pytest.mark.parametrize("link, cycles_per_word", [("axi-dma", 1.0),
                                                   ("uart-ulx3s", 25e6 / 115_200 * 10 * 1032 / 255)])
def test_report_puts_host_words_into_cycles_apart(run_file, capsys, link, cycles_per_word):
    capsys.readouterr()
    assert main(["report", str(run_file), "--json", "--host-link", link]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["host_cycles_per_inference"] == pytest.approx(
        report["host_words_per_inference"] * cycles_per_word)
    assert report["host_link"].startswith(f"{link}: ")
    record = json.loads(run_file.read_text())
    words = sum(n for counts in record["host_words"].values() for n in counts.values())
    assert report["host_words_per_inference"] == words / record["samples"]


def test_run_on_a_board_over_its_serial_port(files, capsys, fake_board):
    """`--backend board --port`: the same outputs and counters as the golden backend, the
    board a golden device behind the UART bridge's framing on a pseudo-terminal."""
    from firmware.runtime.executable import load_executable

    compiled = compile_mlp(files)
    board = fake_board(load_executable(compiled).config)
    runs = {}
    for backend, extra in (("golden", []), ("board", ["--port", board.port])):
        out = files / f"{backend}.json"
        assert main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), "--backend",
                     backend, *extra, "--out", str(out)]) in (0, None)
        runs[backend] = json.loads(out.read_text())
    assert "50 samples on board" in capsys.readouterr().out
    for field in ("outputs_int8", "counters", "host_words", "batches"):
        assert runs["board"][field] == runs["golden"][field], field
    assert board.frames > 0


@pytest.mark.parametrize("argv, message", [
    (["--backend", "board"], "--port names the board's serial port"),
    (["--port", "/dev/ttyUSB1"], "--port names the board's serial port"),
    (["--backend", "board", "--port", "/dev/tessera-none"],
     "cannot open the board's serial port /dev/tessera-none"),
    (["--fast-load"], "--fast-load is an RTL simulation option: give it with --backend rtl"),
])
def test_board_backend_errors_are_one_line(files, capsys, argv, message):
    compiled = compile_mlp(files)
    capsys.readouterr()
    try:            # a usage error exits through argparse's parser; a failed run returns 1
        status = main(["run", str(compiled), "--inputs", str(files / "inputs.npy"), *argv,
                       "--out", str(files / "run.json")])
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err
    assert status != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (files / "run.json").exists()
