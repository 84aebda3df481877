"""The compiled network as the driver runs it, and its file: data only, never a pickle.

An `Executable` holds everything a run needs and nothing of the compiler: the config,
how the host turns samples into activation entries and entries back into outputs, each
segment's weight and parameter images, and for each batch size the segments' programs
and the host transfers around them. It is saved as a zip holding ``manifest.json`` (format
name and version, fields, the names of the arrays) and one ``.npy`` per array, read back
with ``allow_pickle=False``.
"""

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.config import AccelConfig, ConfigError

__all__ = ["Executable", "InputSpec", "OutputSpec", "SegmentImage", "SegmentRun",
           "Transfer", "ExecutableError", "FORMAT", "FORMAT_VERSION", "load_executable"]

FORMAT = "tessera-executable"
FORMAT_VERSION = 3              # 3: instruction set 3 (ADC shift and input encoding per MVM)
MANIFEST = "manifest.json"


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
        return np.clip(np.round(np.asarray(x) / self.scale) + self.zero_point,
                       -128, 127).astype(np.int64)


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
    """One tensor moved between host and activation memory around a segment's run."""
    tensor: int                  # the step that reads it (the last: the network's output)
    base: int                    # amem entry of sample 0
    entries: int                 # entries per sample


@dataclass
class SegmentImage:
    """What a segment loads whatever the batch: weights, parameters, tile programming."""
    layers: list                 # names of the layers it computes (part of one, or whole ones)
    limit: str                   # what closed it: a memory name, or "end"
    part: tuple                  # (chunk, chunks) of a split layer, else None
    wmem: np.ndarray             # (slots * rows, tiles * cols) int8: a lane per tile
    qmem: np.ndarray             # (entries, 4 * cols) words
    setup: np.ndarray            # words of the tile-programming program (resident), may be empty
    constants: np.ndarray        # (entries, rows) int8 the host writes before each run
    blocks: int = 0              # weight blocks its jobs compute


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
    plans: dict                  # batch size -> [SegmentRun per segment]
    resident: bool               # one segment whose blocks each have a tile: program once
    summary: list = field(default_factory=list)     # what `tessera compile` prints

    @property
    def batch(self):
        """Samples of a full batch."""
        return max(self.plans)

    def batches(self, samples):
        """Batch sizes that run `samples`: full batches, then the tail in the sizes
        compiled for it (powers of two), largest first."""
        sizes, left = [], samples
        for size in sorted(self.plans, reverse=True):
            while left >= size:
                sizes.append(size)
                left -= size
        return sizes

    # Saving and loading -----------------------------------------------------------------

    def save(self, path):
        arrays = {"input_row_index": self.input.row_index}
        segments = []
        for i, seg in enumerate(self.segments):
            for name in ("wmem", "qmem", "setup", "constants"):
                arrays[f"segment{i}_{name}"] = getattr(seg, name)
            segments.append({"layers": seg.layers, "limit": seg.limit, "part": seg.part,
                             "blocks": seg.blocks})
        plans = {}
        for batch, runs in self.plans.items():
            plans[str(batch)] = []
            for i, run in enumerate(runs):
                arrays[f"batch{batch}_segment{i}_program"] = run.program
                arrays[f"batch{batch}_segment{i}_zero_psum"] = run.zero_psum
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
            "arrays": sorted(arrays),
        }
        path = Path(path)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.save(buffer, np.asarray(array, np.int64), allow_pickle=False)
                archive.writestr(f"{name}.npy", buffer.getvalue())
        return path


def _what_it_is(head):
    """A few words on what a file that is not an executable seems to be."""
    if not head:
        return "an empty file"
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q", b"cc"):
        return "a Python pickle (never loaded: unpickling can run code)"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON or text file"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy array"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive without a Tessera manifest"
    if head[:8] == b"\x08\x07\x12\x04" or b"onnx" in head[:64].lower():
        return "not an executable (an ONNX model? compile it with `tessera compile`)"
    return "not an executable (unrecognised bytes)"


def load_executable(path):
    """Read an executable written by `Executable.save`; anything else is refused with an
    `ExecutableError` naming the file and what it seems to be. Nothing is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise ExecutableError(f"{path}: no such file")
    head = path.read_bytes()[:64]
    if not zipfile.is_zipfile(path):
        raise ExecutableError(f"{path}: not a Tessera executable: {_what_it_is(head)}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if MANIFEST not in names:
                raise ExecutableError(f"{path}: not a Tessera executable: {_what_it_is(head)}")
            manifest = json.loads(archive.read(MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ExecutableError(f"{path}: not a Tessera executable: its manifest names "
                                      f"format {manifest.get('format') if isinstance(manifest, dict) else None!r}")
            if manifest.get("version") != FORMAT_VERSION:
                raise ExecutableError(f"{path}: Tessera executable format version "
                                      f"{manifest.get('version')!r}; this Tessera reads version "
                                      f"{FORMAT_VERSION}: compile the network again")
            arrays = {}
            for name in manifest["arrays"]:
                if f"{name}.npy" not in names:
                    raise ExecutableError(f"{path}: array {name!r} is missing")
                arrays[name] = np.load(io.BytesIO(archive.read(f"{name}.npy")), allow_pickle=False)
            return _from_manifest(manifest, arrays)
    except ExecutableError:
        raise
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExecutableError(f"{path}: damaged Tessera executable ({error})") from None
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise ExecutableError(f"{path}: damaged Tessera executable: bad or missing field "
                              f"({type(error).__name__}: {error})") from None


def _from_manifest(manifest, arrays):
    inp = manifest["input"]
    spec = InputSpec(tuple(inp["shape"]), inp["layout"], float(inp["scale"]),
                     int(inp["zero_point"]), arrays["input_row_index"], int(inp["padded_rows"]),
                     tuple(inp["kernel"]) if inp["kernel"] else None, int(inp["stride"]),
                     tuple(int(p) for p in inp["pads"]))
    if spec.layout not in ("vector", "NCHW"):
        raise ValueError(f"input layout {spec.layout!r}")
    segments = [SegmentImage(list(seg["layers"]), seg["limit"],
                             tuple(seg["part"]) if seg["part"] else None,
                             arrays[f"segment{i}_wmem"], arrays[f"segment{i}_qmem"],
                             arrays[f"segment{i}_setup"], arrays[f"segment{i}_constants"],
                             int(seg["blocks"]))
                for i, seg in enumerate(manifest["segments"])]
    plans = {}
    for batch, runs in manifest["plans"].items():
        if len(runs) != len(segments):
            raise ValueError(f"batch {batch} has {len(runs)} segment runs for {len(segments)} segments")
        plans[int(batch)] = [
            SegmentRun(arrays[f"batch{batch}_segment{i}_program"],
                       arrays[f"batch{batch}_segment{i}_zero_psum"],
                       [Transfer(**t) for t in run["writes"]], [Transfer(**t) for t in run["reads"]],
                       {name: tuple(pcs) for name, pcs in run["layer_pcs"].items()},
                       int(run["constants_base"]))
            for i, run in enumerate(runs)]
    if not plans:
        raise ValueError("no batch plans")
    return Executable(AccelConfig.from_dict(manifest["config"]), spec,
                      OutputSpec(**manifest["output"]), segments, plans,
                      bool(manifest["resident"]), list(manifest["summary"]))
