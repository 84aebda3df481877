"""The compiled network as the driver runs it, and its file: data only, never a pickle.

An `Executable` holds everything a run needs and nothing of the compiler: the config,
how the host turns samples into activation entries and entries back into outputs, each
segment's weight and parameter images, and for each batch size the segments' programs
and the host transfers around them. Each segment runs at most as many samples at once as
its own memories hold (`Executable.schedule`): a batch of the network runs a segment
that holds fewer in several sub-batches. It is saved as a zip holding ``manifest.json`` (format
name and version, fields, the SHA-256 of every array) and one ``.npy`` per array.

Loading trusts nothing in the file: members are bounded by sizes derived from the config
before they are inflated, .npy headers are checked against their bytes, the manifest's
own SHA-256 and every array's are compared (an edited file is refused as edited), and
the whole executable is then checked against `firmware.runtime.executable_schema` before anything
runs. Every refusal is an `ExecutableError` naming the file and the field.
"""

import functools
import io
import itertools
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.config import AccelConfig, ConfigError
from golden.device import as_span

from ..data_files import (ZIP_ERRORS, DataFileError, check_readable, describe_bytes, read_member,
                         read_npy, record_digest, sha256)
from .executable_schema import SchemaError, array_limits, check_executable

__all__ = ["Executable", "InputSpec", "OutputSpec", "SegmentImage", "SegmentRun",
           "Transfer", "ExecutableError", "FORMAT", "FORMAT_VERSION", "load_executable",
           "batch_sizes", "split_batch"]

FORMAT = "tessera-executable"
FORMAT_VERSION = 7              # 4: SHA-256 of the manifest and of every array;
                                # 5: band transfers (offset, total), shared images;
                                # 6: tile transfers as boxes (piece, counts, strides);
                                #    wmem_lanes: replicas staged once;
                                # 7: a batch of each segment's own (null runs)
MANIFEST = "manifest.json"
INPUT_ROW_INDEX = "input_row_index"              # arrays saved as .npy members: this,
IMAGE_ARRAYS = ("wmem", "wmem_lanes", "qmem", "setup", "constants")  # each SegmentImage's,
RUN_ARRAYS = ("program", "zero_psum")                  # and each batch's SegmentRuns'
MANIFEST_LIMIT = 16 << 20       # bytes; a manifest of thousands of layers is a few MiB
NPY_HEADER_LIMIT = 4096         # bytes an .npy member may add to its data


class ExecutableError(ValueError):
    """A file that is not a Tessera executable of this version; says what it is."""


@dataclass(frozen=True)
class InputSpec:
    """How the host makes a batch's input entries from int8 samples."""
    shape: tuple                 # one sample as the network takes it (NHWC image or vector)
    layout: str                  # how users' arrays hold it: "vector" or "NCHW" (ONNX)
    scale: float                 # real = scale * (q - zero_point)
    zero_point: int
    row_index: np.ndarray        # padded row of each element of the first layer's vector
    padded_rows: int             # the vector's rows, whole crossbar blocks
    kernel: tuple = None         # a host-fed first convolution: (kh, kw), im2col patches
    stride: int = 1
    pads: tuple = (0, 0, 0, 0)   # its padding (top, left, bottom, right), at the zero point

    def quantize(self, x):
        return np.clip(self._unclipped(x), -128, 127).astype(np.int64)

    @functools.cached_property
    def row_span(self):
        """`row_index` by `as_span`: worked out once, not per batch."""
        return as_span(self.row_index)

    def _unclipped(self, x):
        return np.round(np.asarray(x) / self.scale) + self.zero_point

    def clipped_fraction(self, x):
        """The fraction of the values of `x` outside the int8 range, which `quantize` clips."""
        q = self._unclipped(x)
        return float(np.mean((q < -128) | (q > 127))) if q.size else 0.0

    @property
    def real_range(self):
        """The real values int8 inputs represent: the range calibration set."""
        return self.scale * (-128 - self.zero_point), self.scale * (127 - self.zero_point)


@dataclass(frozen=True)
class OutputSpec:
    features: int
    scale: float
    zero_point: int
    entries: int                 # activation entries of one sample's output
    head: str = None             # "Softmax", "LogSoftmax" or "ArgMax", applied on the host

    def dequantize(self, q):
        return self.scale * (np.asarray(q, np.float64) - self.zero_point)

    def finish(self, q):
        """The model's outputs from the device's int8 ones: dequantised, then the head."""
        logits = self.dequantize(q)
        if self.head in ("Softmax", "LogSoftmax"):
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            return np.exp(log_probs) if self.head == "Softmax" else log_probs
        if self.head == "ArgMax":
            return np.argmax(logits, axis=1)[:, None]
        return logits


@dataclass(frozen=True)
class Transfer:
    """One tensor, or a tile of it, moved between host and activation memory around a
    segment's run. Each sample moves `entries` consecutive amem entries from ``base +
    sample * entries``. Without pieces they are entries ``offset ..`` of the sample's
    tensor of `total`. With pieces, they are a box: pieces of `piece` entries at every
    index ``i`` of `counts`, from ``offset + i . strides`` of the tensor and ``i .
    device_strides`` of the amem entries (a tile of an image: one piece a row, or a
    pixel's channels at every pixel of every row); amem entries between pieces (a wide
    row's unused columns) are moved but not kept."""
    tensor: int                  # the step that made it (0: the input; the last: the output)
    base: int                    # amem entry of sample 0
    entries: int                 # amem entries per sample moved
    offset: int = 0              # where the first piece starts in the sample's tensor
    total: int = None            # entries of the sample's whole tensor (None: `entries`)
    piece: int = None            # entries of each piece (None: one piece of `entries`)
    counts: tuple = ()           # pieces along each axis of the box, outermost first
    strides: tuple = ()          # tensor entries from one piece to the next, per axis
    device_strides: tuple = ()   # amem entries from one piece to the next, per axis

    @property
    def sample_entries(self):
        return self.entries if self.total is None else self.total

    def indices(self):
        """(amem entries, tensor entries) of one sample that it moves, relative to the
        sample's first amem entry and its tensor's first entry."""
        piece = self.entries if self.piece is None else self.piece
        device, tensor = np.arange(piece), self.offset + np.arange(piece)
        for count, stride, device_stride in zip(self.counts[::-1], self.strides[::-1],
                                                self.device_strides[::-1]):
            steps = np.arange(count)[:, None]
            device = (steps * device_stride + device).ravel()
            tensor = (steps * stride + tensor).ravel()
        return device, tensor


@dataclass
class SegmentImage:
    """What a segment loads whatever the batch: weights, parameters, tile programming."""
    layers: list                 # names of the layers it computes (part of one, or whole ones)
    limit: str                   # what closed it: a memory name, or "end"
    part: tuple                  # (chunk, chunks) of a split layer, else None
    wmem: np.ndarray             # (slots * rows, tiles * cols) int8: a lane per tile
    wmem_lanes: np.ndarray       # (slots,) lanes of each slot the host writes: lanes 0 ..
                                 # (a job's replicas take theirs from those by PROGRAM)
    qmem: np.ndarray             # (entries, 4 * cols) words
    setup: np.ndarray            # words of the tile-programming program (resident), may be empty
    constants: np.ndarray        # (entries, rows) int8 the host writes before each run
    blocks: int = 0              # weight blocks its jobs compute
    images_from: int = None      # an earlier segment whose images these are (a later band)

    @functools.cached_property
    def wmem_int8(self):
        """`wmem` in its lanes' own type, made once: converting the int64 image on every
        write moved eight bytes a weight, most of a segmented network's run on golden."""
        return self.wmem.astype(np.int8)

    @functools.cached_property
    def lane_runs(self):
        """(first slot, end slot, lanes) of each run of slots with equal `wmem_lanes`: a
        write each. Worked out once, not per batch."""
        runs, first = [], 0
        for lanes, run in itertools.groupby(int(v) for v in self.wmem_lanes):
            count = len(list(run))
            runs.append((first, first + count, lanes))
            first += count
        return runs


@dataclass
class SegmentRun:
    """A segment's program for one batch size, and the host transfers around it."""
    program: np.ndarray          # (instructions, 4) words
    zero_psum: np.ndarray        # psum entries the host zeroes (all-zero output blocks)
    writes: list                 # Transfers host -> amem before the run
    reads: list                  # Transfers amem -> host after the run
    layer_pcs: dict              # layer name -> (first pc, end pc)
    constants_base: int = 0      # amem entry of the segment's constant entries


@dataclass
class Executable:
    config: AccelConfig
    input: InputSpec
    output: OutputSpec
    segments: list               # SegmentImages, in execution order
    plans: dict                  # batch size -> [SegmentRun per segment, None where the
                                 # segment does not run that many samples at once]
    resident: bool               # one segment whose blocks each have a tile: program once
    summary: list = field(default_factory=list)     # what `tessera compile` prints
    # batch sizes and schedules of `plans` (replaced, never changed in place), worked out
    # once: a run of one sample on a small network takes ~0.15 ms, a schedule ~5 us
    _worked_out: tuple = field(default=None, init=False, repr=False, compare=False)

    @property
    def batch(self):
        """Samples of a full batch."""
        return max(self.plans)

    def batches(self, samples):
        """Batch sizes that run `samples`: full batches, then the tail in powers of two,
        largest first."""
        if min(self.plans) < 1:
            raise ValueError(f"batch plan of {min(self.plans)} samples")
        known = self._known()
        if "sizes" not in known:
            known["sizes"] = [size for size in batch_sizes(self.batch) if size in self.plans]
        return split_batch(samples, known["sizes"])

    def _known(self):
        """What is worked out from the current `plans`, forgotten when they are replaced."""
        if self._worked_out is None or self._worked_out[0] is not self.plans:
            self._worked_out = (self.plans, {})
        return self._worked_out[1]

    def worked_out(self, key, make):
        """``make()``, once per `key` for the current `plans`: what a run derives from them
        again and again (the driver's declared runs)."""
        known = self._known()
        if key not in known:
            known[key] = make()
        return known[key]

    @property
    def segment_batches(self):
        """The most samples each segment runs at once: its largest plan."""
        return [max(size for size, runs in self.plans.items() if runs[i] is not None)
                for i in range(len(self.segments))]

    def rounds(self, batch):
        """The device runs of a batch of `batch` samples, in order, as (segments, samples,
        first sample, sub-batches): consecutive segments of equal `segment_batches` run
        together over each sub-batch (a segment may leave what the next reads on chip:
        partial sums, its output), so a batch runs them ``sub-batches`` times, on
        ``samples`` samples from ``first`` on, then ``first + samples`` on, and so on."""
        known = self._known()
        if ("rounds", batch) in known:
            return known["rounds", batch]
        rounds = known["rounds", batch] = []
        for most, run in itertools.groupby(range(len(self.segments)),
                                           key=self.segment_batches.__getitem__):
            group = tuple(run)
            sizes = sorted((size for size, runs in self.plans.items()
                            if size <= most and runs[group[0]] is not None), reverse=True)
            first = 0
            for size, parts in itertools.groupby(split_batch(batch, sizes)):
                count = len(list(parts))
                rounds.append((group, size, first, count))
                first += size * count
        return rounds

    def distinct_runs(self, batch):
        """(SegmentRun, how many times a batch of `batch` samples runs it) of each device
        run of `rounds`, a segment's equal sub-batches once: what equal runs count
        alike (cycles, traces) needs working out only once."""
        return [(self.plans[size][index], count)
                for indices, size, _, count in self.rounds(batch) for index in indices]

    def schedule(self, batch):
        """(segment, samples, first sample) of each device run of a batch of `batch`
        samples, in the order one device runs them (`rounds`)."""
        known = self._known()
        if ("schedule", batch) not in known:
            known["schedule", batch] = [
                (index, size, first + j * size) for group, size, first, count in self.rounds(batch)
                for j in range(count) for index in group]
        return known["schedule", batch]

    # Saving and loading -----------------------------------------------------------------

    def save(self, path):
        arrays = {INPUT_ROW_INDEX: self.input.row_index}
        segments = []
        for i, seg in enumerate(self.segments):
            if seg.images_from is None:
                for kind in IMAGE_ARRAYS:
                    arrays[_array_name(kind, i)] = getattr(seg, kind)
            segments.append({"layers": seg.layers, "limit": seg.limit, "part": seg.part,
                             "blocks": seg.blocks, "images_from": seg.images_from})
        plans = {}
        for batch, runs in self.plans.items():
            plans[str(batch)] = []
            for i, run in enumerate(runs):
                if run is None:
                    plans[str(batch)].append(None)
                    continue
                for kind in RUN_ARRAYS:
                    arrays[_array_name(kind, i, batch)] = getattr(run, kind)
                plans[str(batch)].append({
                    "writes": [vars(t) for t in run.writes], "reads": [vars(t) for t in run.reads],
                    "constants_base": run.constants_base,
                    "layer_pcs": {name: list(pcs) for name, pcs in run.layer_pcs.items()}})
        spec = self.input
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_dict(),
            "input": {"shape": list(spec.shape), "layout": spec.layout, "scale": spec.scale,
                      "zero_point": spec.zero_point, "padded_rows": spec.padded_rows,
                      "kernel": list(spec.kernel) if spec.kernel else None, "stride": spec.stride,
                      "pads": list(spec.pads)},
            "output": vars(self.output), "segments": segments, "plans": plans,
            "resident": self.resident, "summary": self.summary,
        }
        check_executable(self)           # the compiler's output meets the loader's schema
        members = {}
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(array, np.int64), allow_pickle=False)
            members[f"{name}.npy"] = buffer.getvalue()
        manifest["arrays"] = {name: sha256(members[f"{name}.npy"]) for name in sorted(arrays)}
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        path = Path(path)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
            for member, data in members.items():
                archive.writestr(member, data)
        return path


def batch_sizes(most):
    """The batch sizes compiled for a segment (or a network) that runs at most `most`
    samples at once: `most`, then the powers of two below it for a tail, largest first."""
    return [most] + [1 << k for k in range(most.bit_length() - 1, -1, -1) if 1 << k < most]


def split_batch(samples, sizes):
    """`samples` as a sum of `sizes` (largest first, ending with 1), greedily."""
    parts, left = [], samples
    for size in sizes:
        parts += [size] * (left // size)
        left %= size
    if left:
        raise ValueError(f"{left} samples left over: no batch plan of 1")
    return parts


def _array_name(kind, segment, batch=None):
    """The name a segment's image array (or, with `batch`, its run's) is saved under."""
    prefix = f"segment{segment}" if batch is None else f"batch{batch}_segment{segment}"
    return f"{prefix}_{kind}"


def _manifest_digest(manifest):
    """The manifest's SHA-256; it covers the arrays' digests too, so one comparison
    vouches for the whole file."""
    return record_digest(manifest, "manifest_sha256")


def _array_kinds(manifest):
    """{array name: `array_limits` kind} of every array the manifest's structure implies."""
    kinds = {INPUT_ROW_INDEX: "row_index"}
    for i, segment in enumerate(_get(manifest, "segments", list)):
        if _images_from(segment, i) is None:
            kinds.update({_array_name(k, i): k for k in IMAGE_ARRAYS})
    for batch, runs in _get(manifest, "plans", dict).items():
        for i in range(len(manifest["segments"])):
            if not isinstance(runs, list) or i >= len(runs) or runs[i] is not None:
                kinds.update({_array_name(k, i, batch): k for k in RUN_ARRAYS})
    return kinds


def _images_from(segment, i):
    """The earlier segment whose images segment `i` shares, or None (its own)."""
    where = f"segments[{i}]"
    source = _get(segment, "images_from", int, where, optional=True)
    if source is not None and not 0 <= source < i:
        raise SchemaError(f"{where}.images_from", f"must be an earlier segment, not {source}")
    return source


def load_executable(path):
    """Read an executable written by `Executable.save`, trusting nothing in it; anything
    else, damaged or edited is refused with an `ExecutableError` naming the file and the
    field (or what the file seems to be). Nothing is unpickled."""
    try:
        path = check_readable(path, "executable")
    except DataFileError as error:
        raise ExecutableError(str(error)) from None
    with path.open("rb") as stream:
        head = stream.read(64)
    if not zipfile.is_zipfile(path):
        raise ExecutableError(f"{path}: not a Tessera executable: it looks like "
                              f"{_not_executable(head)}")
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as error:
        raise ExecutableError(f"{path}: damaged Tessera executable ({error})") from None
    try:
        with archive:
            return _read(archive)
    except (SchemaError, DataFileError, ConfigError) as error:
        raise ExecutableError(f"{path}: {error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExecutableError(f"{path}: {MANIFEST} is not JSON ({error})") from None


def _read(archive):
    """The executable in an open archive: sizes bounded, digests compared, then the whole
    checked against the schema; zip member errors arrive as `DataFileError`s."""
    names = set(archive.namelist())
    if MANIFEST not in names:
        raise SchemaError(MANIFEST, "is missing: not a Tessera executable, a zip archive "
                                    "without a Tessera manifest")
    manifest = json.loads(read_member(archive, MANIFEST, MANIFEST, MANIFEST_LIMIT))
    _check_header(manifest)
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise SchemaError("manifest_sha256", "does not match the manifest: the file was "
                                             "edited or damaged after it was compiled")
    config = AccelConfig.from_dict(_get(manifest, "config", dict))
    kinds, digests = _array_kinds(manifest), _get(manifest, "arrays", dict)
    if set(digests) != set(kinds):
        odd = sorted(set(digests) ^ set(kinds))[0]
        raise SchemaError("arrays", f"{odd!r} is {'missing' if odd in kinds else 'unexpected'}")
    extra = names - {MANIFEST} - {f"{name}.npy" for name in kinds}
    if extra:
        raise SchemaError(sorted(extra)[0], "is a member no field names")
    limits, arrays = array_limits(config), {}
    for name, kind in kinds.items():
        if f"{name}.npy" not in names:
            raise SchemaError(name, "is missing")
        depth, width = limits[kind]
        limit = 8 * depth * (width or 1)
        data = read_member(archive, f"{name}.npy", name, limit + NPY_HEADER_LIMIT)
        if sha256(data) != digests[name]:
            raise SchemaError(name, "does not match its SHA-256 in the manifest: the file "
                                    "was edited or damaged")
        arrays[name] = read_npy(data, name, limit=limit)
    exe = _from_manifest(manifest, config, arrays)
    check_executable(exe)
    return exe


def _not_executable(head):
    what = describe_bytes(head)
    return f"{what}: compile it with `tessera compile`" if what == "an ONNX model" else what


def _check_header(manifest):
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise SchemaError("format", f"{found!r}: not a Tessera executable")
    if manifest.get("version") != FORMAT_VERSION:
        raise SchemaError("version", f"{manifest.get('version')!r}; this Tessera reads "
                                     f"version {FORMAT_VERSION}: compile the network again")


_KINDS = {int: "an integer", float: "a number", str: "a string", list: "a list",
          dict: "an object", bool: "true or false"}


def _get(obj, key, kind, where="", optional=False):
    """``obj[key]``, refused unless present and of `kind` (float takes integers too;
    int and float refuse booleans); `optional` allows null."""
    field = f"{where}.{key}" if where else str(key)
    if not isinstance(obj, dict) or key not in obj:
        raise SchemaError(field, "is missing")
    value = obj[key]
    if value is None and optional:
        return None
    kinds = (int, float) if kind is float else kind
    if not isinstance(value, kinds) or (isinstance(value, bool) and kind is not bool):
        raise SchemaError(field, f"must be {_KINDS[kind]}, not {value!r}")
    return value


def _ints(obj, key, where, optional=False):
    values = _get(obj, key, list, where, optional)
    if values is None:
        return None
    for i, value in enumerate(values):
        _get({i: value}, i, int, f"{where}.{key}")
    return tuple(values)


def _transfers(obj, key, where):
    transfers = []
    for j, item in enumerate(_get(obj, key, list, where)):
        here = f"{where}.{key}[{j}]"
        transfers.append(Transfer(*(_get(item, k, int, here) for k in ("tensor", "base", "entries",
                                                                      "offset")),
                                  _get(item, "total", int, here, optional=True),
                                  _get(item, "piece", int, here, optional=True),
                                  *(_ints(item, k, here) for k in ("counts", "strides",
                                                                   "device_strides"))))
    return transfers


def _from_manifest(manifest, config, arrays):
    inp = _get(manifest, "input", dict)
    spec = InputSpec(_ints(inp, "shape", "input"), _get(inp, "layout", str, "input"),
                     float(_get(inp, "scale", float, "input")),
                     _get(inp, "zero_point", int, "input"), arrays[INPUT_ROW_INDEX],
                     _get(inp, "padded_rows", int, "input"),
                     _ints(inp, "kernel", "input", optional=True),
                     _get(inp, "stride", int, "input"), _ints(inp, "pads", "input"))
    out = _get(manifest, "output", dict)
    output = OutputSpec(_get(out, "features", int, "output"),
                        float(_get(out, "scale", float, "output")),
                        _get(out, "zero_point", int, "output"), _get(out, "entries", int, "output"),
                        _get(out, "head", str, "output", optional=True))
    segments = []
    for i, seg in enumerate(manifest["segments"]):
        where = f"segments[{i}]"
        layers = _get(seg, "layers", list, where)
        for j, name in enumerate(layers):
            _get({j: name}, j, str, f"{where}.layers")
        source = _images_from(seg, i)
        if source is not None and segments[source].images_from is not None:
            raise SchemaError(f"{where}.images_from", f"segment {source} has no images of its own")
        shared = i if source is None else source
        segments.append(SegmentImage(list(layers), _get(seg, "limit", str, where),
                                     _ints(seg, "part", where, optional=True),
                                     blocks=_get(seg, "blocks", int, where), images_from=source,
                                     **{k: arrays[_array_name(k, shared)] for k in IMAGE_ARRAYS}))
    plans = {}
    for batch, runs in manifest["plans"].items():
        if not batch.isdigit():
            raise SchemaError(f"plans.{batch}", "is not a batch size")
        where = f"plans.{batch}"
        if not isinstance(runs, list) or len(runs) != len(segments):
            raise SchemaError(where, f"must list a run for each of the {len(segments)} segments")
        plans[int(batch)] = [
            None if run is None else SegmentRun(writes=_transfers(run, "writes", f"{where}[{i}]"),
                       reads=_transfers(run, "reads", f"{where}[{i}]"),
                       layer_pcs={name: _ints({name: pcs}, name, f"{where}[{i}].layer_pcs")
                                  for name, pcs in _get(run, "layer_pcs", dict,
                                                        f"{where}[{i}]").items()},
                       constants_base=_get(run, "constants_base", int, f"{where}[{i}]"),
                       **{k: arrays[_array_name(k, i, batch)] for k in RUN_ARRAYS})
            for i, run in enumerate(runs)]
    summary = _get(manifest, "summary", list)
    for j, line in enumerate(summary):
        _get({j: line}, j, str, "summary")
    return Executable(config, spec, output, segments, plans, _get(manifest, "resident", bool),
                      list(summary))
