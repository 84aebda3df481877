"""The executable file: data only, the same run after a round trip, foreign files refused
in one line, and nothing unpickled."""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from firmware.compiler.pipeline import compile_network
from firmware.runtime.executable import FORMAT_VERSION, ExecutableError, load_executable
from firmware.runtime.targets import GoldenTarget
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
    before, after = GoldenTarget().run(exe, x_q), GoldenTarget().run(loaded, x_q)
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
    from firmware.runtime.run import run_executable
    from firmware.runtime.transports import GoldenBus
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
        "from firmware.runtime.executable import load_executable\n"
        "from firmware.runtime.targets import GoldenTarget\n"
        f"run = GoldenTarget().run(load_executable({str(path)!r}), np.array({x_q.tolist()}))\n"
        "print(run.outputs.tolist())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('amaranth', 'rtl', 'sim', 'cocotb', 'onnx', 'onnxruntime') "
        "or m.startswith(('firmware.compiler', 'firmware.frontend'))))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == str(qnet.forward(x_q).tolist())
    assert out[1] == "[]"


def _set(path, value):
    def edit(manifest):
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _word(opcode=None, **fields):
    from golden import isa
    return np.array([isa.encode(isa.Instruction(opcode, **fields))], np.int64)


def _program_with(instruction):
    """An MLP program with `instruction` in front of it."""
    def arrays(members):
        program = np.load(io.BytesIO(members["batch8_segment0_program.npy"]))
        return {"batch8_segment0_program": np.concatenate([instruction, program])}
    return arrays


# Each a case of the bad-input campaign, re-signed so that the schema, not the digest, has to
# find it: (manifest edit, array edits from the members, what the refusal says)
SCHEMA_CASES = {
    "scale 0": (_set(("input", "scale"), 0), None, "input.scale: must be finite and positive, not 0"),
    "scale < 0": (_set(("input", "scale"), -0.5), None, "input.scale: must be finite and positive"),
    "scale NaN": (_set(("input", "scale"), float("nan")), None, "input.scale: must be finite"),
    "zero point 1000": (_set(("input", "zero_point"), 1000), None,
                        "input.zero_point: must be finite and in -128..127, not 1000"),
    "output scale inf": (_set(("output", "scale"), float("inf")), None, "output.scale: must be finite"),
    "8 tiles": (_set(("config", "tiles"), 8), None, "segment0_wmem: shape (16, 64), where the "
                                                    "config allows (at most 16, 128)"),
    "stride 0": (_set(("input", "stride"), 0), None, "input.stride: must be finite and positive"),
    "empty program": (None, lambda m: {"batch8_segment0_program": np.zeros((0, 4), np.int64)},
                      "batch8_segment0_program: is empty: a program ends with HALT"),
    "illegal opcode": (None, _program_with(_word(9)), "batch8_segment0_program[0]: OPCODE_9() "
                                                      "would stop the device with ILLEGAL_OPCODE"),
    "address out of range": (None, _program_with(_word(2, count=4, src=4000, dst=0)),
                             "would stop the device with BAD_ADDRESS"),
    "misaligned program": (None, _program_with(_word(1, tile=0, count=1, src=3)),
                           "would stop the device with MISALIGNED"),
    "weight 300": (None, lambda m: {"segment0_wmem": np.full((16, 64), 300, np.int64)},
                   "segment0_wmem: holds 300, outside -128..127"),
    "requant shift 40": (None, lambda m: {"segment0_qmem": np.full((1, 64), 40 | 127 << 24, np.int64)},
                         "segment0_qmem[0]: channel 0's shift is above 31"),
    "batch 0": (lambda m: m["plans"].update({"0": m["plans"]["1"]}), None,
                "arrays: 'batch0_segment0_program' is missing"),
    "no batch of 1": (lambda m: m["plans"].pop("1"), None, "arrays: 'batch1_segment0_program' "
                                                           "is unexpected"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_the_schema_refuses_edited_executables_naming_the_field(compiled, tmp_path, case):
    from file_edits import edited_copy, read_members
    _, path, _, _ = compiled
    manifest_edit, arrays, message = SCHEMA_CASES[case]
    target = edited_copy(path, tmp_path / "edited.tessera", manifest_edit,
                         arrays(read_members(path)) if arrays else None)
    with pytest.raises(ExecutableError) as info:
        load_executable(target)
    assert str(info.value).startswith(f"{target}: ") and message in str(info.value), info.value
    assert "\n" not in str(info.value)


def test_a_plan_without_a_batch_of_one_is_refused_even_re_signed(compiled, tmp_path):
    """Renaming the arrays with the plan: the schema's own rule, not the digests."""
    from file_edits import read_members, resign, write_members
    _, path, _, _ = compiled
    members = read_members(path)
    manifest = json.loads(members.pop("manifest.json"))
    for name in [n for n in members if n.startswith("batch1_")]:
        members[name.replace("batch1_", "batch3_")] = members.pop(name)
    manifest["plans"]["3"] = manifest["plans"].pop("1")
    manifest["arrays"] = {n[:-4]: "" for n in members}
    members["manifest.json"] = json.dumps(resign(members, manifest))
    with pytest.raises(ExecutableError, match="plans: has no batch of 1 for every segment"):
        load_executable(write_members(tmp_path / "no1.tessera", members))


def test_a_header_bomb_and_an_oversized_manifest_are_refused_before_reading(compiled, tmp_path):
    from file_edits import read_members, resign, write_members
    _, path, _, _ = compiled
    members = read_members(path)
    members["segment0_wmem.npy"] = members["segment0_wmem.npy"].replace(
        b"(16, 64)", b"(1099511627776, 8)", 1)                      # claims 8 TiB
    manifest = resign(members, json.loads(members["manifest.json"]))
    members["manifest.json"] = json.dumps(manifest)
    with pytest.raises(ExecutableError, match="segment0_wmem: its header claims shape "
                                              "\\(1099511627776, 8\\)"):
        load_executable(write_members(tmp_path / "bomb.tessera", members))
    members["manifest.json"] = json.dumps(manifest) + " " * (17 << 20)
    with pytest.raises(ExecutableError, match="manifest.json inflates to 17,"):
        load_executable(write_members(tmp_path / "big.tessera", members))


def test_batches_never_loop_on_a_bad_plan(compiled):
    exe = compiled[0]
    plans = exe.plans
    for bad in ({0: plans[1]}, {-4: plans[1]}, {8: plans[8]}):
        exe.plans = bad
        with pytest.raises(ValueError):
            exe.batches(13)
    exe.plans = plans
    assert exe.batches(13) == [8, 4, 1]
