"""The executable file: data only, the same run after a round trip, foreign files refused
in one line, and nothing unpickled."""

import json
import pickle
import zipfile

import numpy as np
import pytest

from firmware.compiler import compile_network
from firmware.executable import FORMAT_VERSION, ExecutableError, load_executable
from firmware.runtime import run_golden
from golden import AccelConfig


@pytest.fixture
def compiled(small_network, tmp_path):
    qnet, x_q = small_network(seed=3, samples=13)
    exe = compile_network(qnet, AccelConfig(wmem_depth=16))      # 2 segments, a job each
    path = exe.save(tmp_path / "net.tessera")
    return exe, path, qnet, x_q


def test_round_trip_runs_the_same(compiled):
    exe, path, qnet, x_q = compiled
    loaded = load_executable(path)
    assert loaded.config == exe.config and len(loaded.segments) == len(exe.segments) == 2
    before, after = run_golden(exe, x_q), run_golden(loaded, x_q)
    assert np.array_equal(after.outputs, qnet.forward(x_q))
    assert np.array_equal(after.outputs, before.outputs)
    assert after.counters == before.counters and after.host_words == before.host_words
    with zipfile.ZipFile(path) as archive:        # data only: a manifest and .npy arrays
        assert all(n == "manifest.json" or n.endswith(".npy") for n in archive.namelist())


class Payload:
    """Unpickling this would create the file `marker`."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_crafted(tmp_path, kind):
    path = tmp_path / f"crafted_{kind}"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"config": {}, "qnet": Payload(tmp_path / "pwned")}))
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "json":
        path.write_text(json.dumps({"config": AccelConfig().to_dict()}))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("hello.txt", "hi")
    return path


@pytest.mark.parametrize("kind, message", [
    ("pickle", "not a Tessera executable: it looks like a Python pickle (never loaded"),
    ("random", "not a Tessera executable: it looks like unrecognised bytes"),
    ("json", "not a Tessera executable: it looks like a JSON or text file"),
    ("empty", "not a Tessera executable: it looks like an empty file"),
    ("zip", "manifest.json: is missing: not a Tessera executable, a zip archive without"),
])
def test_foreign_files_are_refused_in_one_line(tmp_path, kind, message):
    path = write_crafted(tmp_path, kind)
    with pytest.raises(ExecutableError) as info:
        load_executable(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def rewrite_manifest(path, target, edit):
    """A copy of the executable at `path` with `edit(manifest)` applied to its manifest."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy:
        for name in source.namelist():
            data = source.read(name)
            if name == "manifest.json":
                manifest = json.loads(data)
                edit(manifest)
                data = json.dumps(manifest)
            copy.writestr(name, data)
    return target


def test_another_format_version_is_refused(compiled, tmp_path):
    other = rewrite_manifest(compiled[1], tmp_path / "v99.tessera",
                             lambda manifest: manifest.update(version=99))
    with pytest.raises(ExecutableError,
                       match=f"version: 99; this Tessera reads version {FORMAT_VERSION}"):
        load_executable(other)


def test_an_edited_manifest_is_refused_as_edited(compiled, tmp_path):
    edited = rewrite_manifest(compiled[1], tmp_path / "edited.tessera",
                              lambda manifest: manifest["input"].update(scale=0.5))
    with pytest.raises(ExecutableError, match="manifest_sha256: does not match the manifest: "
                                              "the file was edited"):
        load_executable(edited)


def test_an_executable_refuses_a_device_of_another_config(compiled):
    import asyncio

    from firmware import Driver
    from firmware.runtime import run_executable
    from firmware.transports import GoldenBus
    from golden.device import Device
    exe, _, _, x_q = compiled
    with pytest.raises(ValueError, match="compiled for .*; the device's capability "
                                         "registers say wmem_depth 256"):
        asyncio.run(run_executable(Driver(GoldenBus(Device(AccelConfig()))), exe, x_q))


def test_running_needs_neither_the_compiler_nor_amaranth(compiled):
    """Load and run an executable in a fresh interpreter; list what it imported."""
    import subprocess
    import sys
    _, path, qnet, x_q = compiled
    script = (
        "import sys, numpy as np\n"
        "from firmware.executable import load_executable\n"
        "from firmware.runtime import run_golden\n"
        f"run = run_golden(load_executable({str(path)!r}), np.array({x_q.tolist()}))\n"
        "print(run.outputs.tolist())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('amaranth', 'rtl', 'sim', 'cocotb', 'onnx') or m in ('firmware.compiler', "
        "'firmware.mapper', 'firmware.codegen', 'firmware.quantize', 'firmware.prune')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == str(qnet.forward(x_q).tolist())
    assert out[1] == "[]"
