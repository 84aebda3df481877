"""Fuzzing the files users hand back: executables and run files, mutated by Hypothesis.

Each mutation of an executable must be refused with one line naming the file (and the
field or member), or load and run to the very outputs and counters of the unmutated
file. Mutations come in two kinds:

* as a damaged or edited file is: bytes flipped, manifest fields or arrays changed
  without touching the digests (`FLIPS`, `EDITS`, `ARRAY_EDITS` examples);
* edited and re-signed (digests recomputed), as a file written by another tool would
  be, which reaches the schema behind the digests (`RESIGNED` examples). These may
  change what the file computes; the property is then that it is refused in one line
  or runs on the golden device with no error of any kind, which proves the static
  check complete: nothing it passes makes the device stop with an error code.

Run files are mutated the same ways and `tessera report` must refuse them in one line or
print exactly what it prints for the original. `MUTATIONS` counts them all (>= 1,000).
"""

import collections
import contextlib
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.compiler.pipeline import compile_network
from firmware.runtime.executable import ExecutableError, load_executable
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig

from file_edits import npy_bytes, resign, write_members

FLIPS, EDITS, ARRAY_EDITS, RESIGNED, RUN_FILES = 250, 200, 150, 350, 200
MUTATIONS = FLIPS + EDITS + ARRAY_EDITS + RESIGNED + RUN_FILES
OUTCOMES = collections.Counter()     # (test, outcome) -> mutations, printed at the end
FAST = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def tally():
    yield
    print(f"\nfuzzed {sum(OUTCOMES.values())} mutations: "
          + ", ".join(f"{test} {outcome} {n}" for (test, outcome), n in sorted(OUTCOMES.items())))


class Original(tuple):
    def __repr__(self):                     # Hypothesis prints it with a failing example
        return "original"


@pytest.fixture(scope="module")
def original(tmp_path_factory, small_network):
    """A 32-16-10 MLP in 2 segments (batches of 8, 4, 2, 1), its file, and its golden run."""
    qnet, x_q = small_network(seed=3, samples=11)
    folder = tmp_path_factory.mktemp("fuzz")
    path = compile_network(qnet, AccelConfig(wmem_depth=16)).save(folder / "net.tessera")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    run = GoldenTarget().run(load_executable(path), x_q)
    return Original((folder, path.read_bytes(), members, x_q, run))


def _reason(message):
    """The class of a refusal: digest, damaged zip, or the schema's field kind."""
    detail = message.split(": ", 1)[1]
    for mark in ("SHA-256", "sha256", "damaged", "not a Tessera", "missing", "inflates"):
        if mark in detail:
            return mark.lower()
    return "schema"


def refused_or_identical(path, baseline, x_q):
    """Load and run `path`: one-line refusal naming the file, or the baseline's results."""
    try:
        exe = load_executable(path)
    except ExecutableError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        assert len(message) > len(str(path)) + 12, message
        OUTCOMES[path.stem, "refused: " + _reason(message)] += 1
        return "refused"
    run = GoldenTarget().run(exe, x_q)
    assert np.array_equal(run.outputs, baseline.outputs)
    assert run.counters == baseline.counters and run.host_words == baseline.host_words
    OUTCOMES[path.stem, "identical"] += 1
    return "identical"


def refused_or_runs_cleanly(path, x_q):
    """Load and run `path`: a one-line refusal, or a run the device completes without an
    error code (`run_executable` raises on one) and whose outputs are int8."""
    try:
        exe = load_executable(path)
    except ExecutableError as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        OUTCOMES[path.stem, "refused: " + _reason(message)] += 1
        return "refused"
    run = GoldenTarget().run(exe, x_q)
    OUTCOMES[path.stem, "ran"] += 1
    assert run.outputs.shape == (len(x_q), exe.output.features)
    assert run.outputs.min() >= -128 and run.outputs.max() <= 127
    return "ran"


def leaves(node, path=()):
    """Paths of every leaf (and empty container) of a JSON tree."""
    items = (node.items() if isinstance(node, dict) else enumerate(node)
             if isinstance(node, list) else None)
    if not items:
        yield path
        return
    for key, child in items:
        yield from leaves(child, path + (key,))


def set_at(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


JSON_VALUES = st.one_of(
    st.integers(-2 ** 70, 2 ** 70), st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 32, 2 ** 63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.none(),
    st.booleans(), st.lists(st.integers(-5, 5), max_size=3), st.just({}))


@settings(FAST, max_examples=FLIPS)
@given(data=st.data())
def test_flipped_bytes_are_refused_or_harmless(original, data):
    folder, raw, _, x_q, baseline = original
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        mutated[position] ^= data.draw(st.integers(1, 255))
    path = folder / "flipped.tessera"
    path.write_bytes(mutated)
    refused_or_identical(path, baseline, x_q)


@settings(FAST, max_examples=EDITS)
@given(data=st.data(), value=JSON_VALUES)
def test_edited_manifest_fields_are_refused_as_edited(original, data, value):
    folder, _, members, x_q, baseline = original
    manifest = json.loads(members["manifest.json"])
    where = data.draw(st.sampled_from(sorted(leaves(manifest), key=str)))
    if where:
        set_at(manifest, where, value)
    path = write_members(folder / "edited.tessera",
                         {**members, "manifest.json": json.dumps(manifest)})
    refused_or_identical(path, baseline, x_q)


@st.composite
def array_edits(draw, members):
    """(member, new bytes): an element set to an edge value, a field of a program word
    changed, rows added or dropped, a dimension or dtype changed, or a header bomb."""
    name = draw(st.sampled_from(sorted(n for n in members if n.endswith(".npy"))))
    array = np.load(io.BytesIO(members[name]))
    how = draw(st.sampled_from(["element", "word field", "rows", "reshape", "dtype", "bomb"]))
    if how == "bomb":
        data = members[name].replace(repr(array.shape).encode(), b"(1099511627776, 8)", 1)
        return name, data
    if how == "rows":
        extra = draw(st.integers(-len(array), 5))
        array = (array[:len(array) + extra] if extra < 0 else
                 np.concatenate([array, np.zeros((extra, *array.shape[1:]), array.dtype)]))
    elif how == "reshape":
        array = array.reshape(-1) if array.ndim == 2 else array.reshape(-1, 1)
    elif how == "dtype":
        array = array.astype(draw(st.sampled_from([np.float64, np.int8, np.uint32, bool])))
    elif array.size:
        index = draw(st.integers(0, array.size - 1))
        flat = array.reshape(-1).copy()
        if how == "element":
            flat[index] = draw(st.sampled_from([-2 ** 63, -129, -1, 0, 1, 127, 128, 255, 4095,
                                                2 ** 32 - 1, 2 ** 32, 2 ** 62]))
        else:                                 # a random value in one 8-bit lane of a word
            lane = draw(st.integers(0, 3))
            flat[index] = (int(flat[index]) & ~(0xFF << 8 * lane)) | draw(st.integers(0, 255)) << 8 * lane
        array = flat.reshape(array.shape)
    return name, npy_bytes(array)


@settings(FAST, max_examples=ARRAY_EDITS)
@given(data=st.data())
def test_edited_arrays_are_refused_as_edited(original, data):
    folder, _, members, x_q, baseline = original
    name, new = data.draw(array_edits(members))
    path = write_members(folder / "array.tessera", {**members, name: new})
    refused_or_identical(path, baseline, x_q)


@settings(FAST, max_examples=RESIGNED)
@given(data=st.data(), value=JSON_VALUES)
def test_resigned_edits_are_refused_or_run_without_error(original, data, value):
    """Past the digests: every field and array edit meets the schema, which refuses it
    in one line or lets through only what the device runs without an error code."""
    folder, _, members, x_q, _ = original
    members = dict(members)
    manifest = json.loads(members["manifest.json"])
    if data.draw(st.booleans()):
        name, members[name] = data.draw(array_edits(members))
    else:
        where = data.draw(st.sampled_from(sorted(leaves(manifest), key=str)))
        if where and where[0] not in ("arrays", "manifest_sha256", "format", "version"):
            set_at(manifest, where, value)
    members["manifest.json"] = json.dumps(resign(members, manifest))
    refused_or_runs_cleanly(write_members(folder / "resigned.tessera", members), x_q)


@pytest.fixture(scope="module")
def run_file(original):
    from tessera.cli import main

    folder, _, _, x_q, _ = original
    inputs, run = folder / "inputs.npy", folder / "run.json"
    np.save(inputs, np.random.default_rng(0).uniform(0, 1, (11, 32)))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", str(folder / "net.tessera"), "--inputs", str(inputs),
                     "--out", str(run)]) == 0
    return run, run.read_text(), report(run)


def report(path):
    """(exit status, stdout, stderr) of `tessera report --json`."""
    from tessera.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["report", str(path), "--json"])
        except SystemExit as exit:
            status = exit.code
    return status, out.getvalue(), err.getvalue()


@settings(FAST, max_examples=RUN_FILES)
@given(data=st.data(), value=JSON_VALUES)
def test_mutated_run_files_are_refused_or_reported_identically(run_file, data, value):
    path, text, baseline = run_file
    if data.draw(st.booleans()):
        mutated = bytearray(text.encode())
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] ^= data.draw(st.integers(1, 255))
    else:
        record = json.loads(text)
        where = data.draw(st.sampled_from(sorted(leaves(record), key=str)))
        if where:
            set_at(record, where, value)
        mutated = json.dumps(record).encode()
    target = path.with_name("mutated.json")
    target.write_bytes(bytes(mutated))
    status, out, err = report(target)
    OUTCOMES["run file", "refused" if status else "reported identically"] += 1
    if status == 0:
        assert (out, err) == baseline[1:], "a mutated run file reported different figures"
    else:
        assert status == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith("tessera report: error: run file ") or \
            err.startswith(f"tessera report: error: run {target}"), err

