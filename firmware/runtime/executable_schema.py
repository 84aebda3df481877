"""What every executable satisfies, checked whole before anything of it runs.

The schema, in one place:

* each array: its dtype (int64 as saved), its shape (from the config and the manifest)
  and the range of its values (int8 images, 32-bit words, indices inside their memory);
* each program: decoded once, every instruction up to HALT passing the sequencer's own
  check (`golden.device.check_instruction`: opcodes, tile ranges, ADC shifts, and every
  address of every iteration inside its memory), and no PROGRAM or REQUANT reaching past
  the image the segment loads;
* the quantisation parameters in qmem within what the requantiser takes;
* scales finite and positive, zero points int8, batch sizes positive, with 1 among them
  so that any number of samples runs;
* the host transfers: inside amem for the whole batch, each tensor written only once
  it exists (the input, or a read of an earlier segment) and with the size it was read
  with, and the network's output where the output spec says.

Programs have no branches, so a program that passes runs to HALT with no error.
`check_executable` raises `SchemaError(field, message)`; the loader adds the file's name.
"""

import math

import numpy as np

from golden.device import check_instruction, unpack_quant_params
from golden.isa import ErrorCode, Opcode, WORDS_PER_INSTRUCTION, decode
from golden.requant import MULTIPLIER_MAX, SHIFT_MAX

from ..windows import window_count

__all__ = ["SchemaError", "check_executable", "array_limits", "HEADS", "LAYOUTS"]

INT8 = (-128, 127)
WORD = (0, (1 << 32) - 1)
HEADS = (None, "Softmax", "LogSoftmax", "ArgMax")
LAYOUTS = ("vector", "NCHW")


class SchemaError(ValueError):
    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field


def array_limits(config):
    """The most rows each kind of array may have, and its row width (None: a list), from
    the config: the bound on what a file may claim, checked before an array is read."""
    c = config
    return {"wmem": (c.wmem_depth, c.tiles * c.cols), "wmem_lanes": (c.wmem_depth, None),
            "qmem": (c.qmem_depth, 4 * c.cols),
            "setup": (c.imem_depth, WORDS_PER_INSTRUCTION),
            "program": (c.imem_depth, WORDS_PER_INSTRUCTION),
            "constants": (c.amem_depth, c.rows), "zero_psum": (c.psum_depth, None),
            "row_index": (c.amem_depth * c.rows, None)}


def _array(field, kind, array, config, bounds):
    """`array` (an `array_limits` kind) as the schema wants it: int64, at most as many
    rows as its memory (one dimension for index lists, two for images), values inside
    `bounds`."""
    depth, width = array_limits(config)[kind]
    if not isinstance(array, np.ndarray) or array.dtype != np.int64:
        raise SchemaError(field, f"must be an int64 array, not {getattr(array, 'dtype', type(array))}")
    ndim = 1 if width is None else 2
    if array.ndim != ndim or (ndim == 2 and array.shape[1] != width) or len(array) > depth:
        wanted = f"(at most {depth},)" if ndim == 1 else f"(at most {depth}, {width})"
        raise SchemaError(field, f"shape {array.shape}, where the config allows {wanted}")
    if array.size and (array.min() < bounds[0] or array.max() > bounds[1]):
        bad = array[(array < bounds[0]) | (array > bounds[1])][0]
        raise SchemaError(field, f"holds {bad}, outside {bounds[0]}..{bounds[1]}")


def _number(field, value, low=None, high=None, positive=False, integer=True):
    if isinstance(value, bool) or not isinstance(value, (int, float) if not integer else int):
        raise SchemaError(field, f"must be {'an integer' if integer else 'a number'}, not {value!r}")
    if not math.isfinite(value) or (positive and not value > 0) \
            or (low is not None and value < low) or (high is not None and value > high):
        rule = ("positive" if positive else f"in {low}..{high}" if high is not None
                else f"at least {low}" if low is not None else "finite")
        raise SchemaError(field, f"must be finite and {rule}, not {value!r}")


def _program(field, words, config, image_rows):
    """Every instruction up to HALT passes the sequencer's check; PROGRAM and REQUANT
    read inside what the segment loads (`image_rows`: wmem and qmem entries)."""
    if not len(words):
        raise SchemaError(field, "is empty: a program ends with HALT")
    for pc, row in enumerate(words):
        ins = decode(row)
        error = check_instruction(ins, config)
        if error != ErrorCode.NONE:
            raise SchemaError(f"{field}[{pc}]", f"{ins} would stop the device with {error.name}")
        if ins.opcode == Opcode.HALT:
            return
        if ins.opcode == Opcode.PROGRAM and ins.src + config.rows > image_rows["wmem"]:
            raise SchemaError(f"{field}[{pc}]", f"{ins} reads wmem rows past the "
                                                f"{image_rows['wmem']} the segment loads")
        if ins.opcode == Opcode.REQUANT and ins.aux >= image_rows["qmem"]:
            raise SchemaError(f"{field}[{pc}]", f"{ins} reads qmem entry {ins.aux}, past "
                                                f"the {image_rows['qmem']} the segment loads")
    raise SchemaError(field, f"has no HALT in its {len(words)} instructions")


def _quant_params(field, qmem, cols):
    params = unpack_quant_params(qmem.reshape(len(qmem), cols, 4))
    rules = [("multiplier", params["multiplier"] > MULTIPLIER_MAX, f"above {MULTIPLIER_MAX}"),
             ("shift", params["shift"] > SHIFT_MAX, f"above {SHIFT_MAX}"),
             ("clamp", params["clamp_min"] > params["clamp_max"], "clamp_min above clamp_max"),
             ("word 3", qmem.reshape(len(qmem), cols, 4)[..., 3] != 0, "not 0 (reserved)")]
    for name, bad, rule in rules:
        if np.any(bad):
            entry, channel = (int(i) for i in np.argwhere(bad)[0])
            raise SchemaError(f"{field}[{entry}]", f"channel {channel}'s {name} is {rule}")


def _input(spec, config):
    _number("input.scale", spec.scale, positive=True, integer=False)
    _number("input.zero_point", spec.zero_point, *INT8)
    if spec.layout not in LAYOUTS:
        raise SchemaError("input.layout", f"must be one of {LAYOUTS}, not {spec.layout!r}")
    if len(spec.shape) not in ((3,) if spec.layout == "NCHW" else (1, 3)):
        raise SchemaError("input.shape", f"{list(spec.shape)} does not fit layout {spec.layout}")
    for i, size in enumerate(spec.shape):
        _number(f"input.shape[{i}]", size, positive=True)
    _number("input.padded_rows", spec.padded_rows, positive=True)
    if spec.padded_rows % config.rows:
        raise SchemaError("input.padded_rows", f"{spec.padded_rows} is not whole blocks of "
                                               f"{config.rows} rows")
    _array("input_row_index", "row_index", spec.row_index, config, (0, spec.padded_rows - 1))
    if len(np.unique(spec.row_index)) != len(spec.row_index):
        raise SchemaError("input_row_index", "places two elements on one row")
    width = int(np.prod(spec.shape))
    _number("input.stride", spec.stride, positive=True)
    if len(spec.pads) != 4:
        raise SchemaError("input.pads", f"must be four (top, left, bottom, right), not {spec.pads}")
    for i, pad in enumerate(spec.pads):
        _number(f"input.pads[{i}]", pad, low=0)
    if spec.kernel is not None:
        if len(spec.kernel) != 2 or len(spec.shape) != 3:
            raise SchemaError("input.kernel", "a host-fed convolution takes an image and "
                                              "(kh, kw)")
        height, width_px, channels = spec.shape
        for i, (size, padded) in enumerate(zip(spec.kernel, (height + spec.pads[0] + spec.pads[2],
                                                             width_px + spec.pads[1] + spec.pads[3]))):
            _number(f"input.kernel[{i}]", size, low=1, high=padded)
        width = spec.kernel[0] * spec.kernel[1] * channels
    if len(spec.row_index) != width:
        raise SchemaError("input_row_index", f"has {len(spec.row_index)} rows for a vector of "
                                             f"{width} elements")


def _input_entries(spec, config):
    """Activation entries of one sample's input, as the runtime lays them out."""
    vectors = 1
    if spec.kernel is not None:
        height, width, _ = spec.shape
        top, left, bottom, right = spec.pads
        vectors = (window_count(height + top + bottom, spec.kernel[0], spec.stride)
                   * window_count(width + left + right, spec.kernel[1], spec.stride))
    return vectors * spec.padded_rows // config.rows


def _output(spec, config):
    _number("output.scale", spec.scale, positive=True, integer=False)
    _number("output.zero_point", spec.zero_point, *INT8)
    _number("output.features", spec.features, positive=True)
    _number("output.entries", spec.entries, positive=True)
    if spec.features > spec.entries * config.rows:
        raise SchemaError("output.features", f"{spec.features} outputs do not fit "
                                             f"{spec.entries} entries of {config.rows}")
    if spec.head not in HEADS:
        raise SchemaError("output.head", f"must be one of {HEADS}, not {spec.head!r}")


def _segment(i, image, config):
    where = f"segment{i}"
    if image.part is not None:
        if len(image.part) != 2:
            raise SchemaError(f"segments[{i}].part", f"must be (chunk, chunks), not {image.part}")
        _number(f"segments[{i}].part[1]", image.part[1], positive=True)
        _number(f"segments[{i}].part[0]", image.part[0], low=0, high=image.part[1] - 1)
    _number(f"segments[{i}].blocks", image.blocks, low=0)
    _array(f"{where}_wmem", "wmem", image.wmem, config, INT8)
    if len(image.wmem) % config.rows:
        raise SchemaError(f"{where}_wmem", f"{len(image.wmem)} rows are not whole tiles of "
                                           f"{config.rows}")
    _array(f"{where}_wmem_lanes", "wmem_lanes", image.wmem_lanes, config, (1, config.tiles))
    if len(image.wmem_lanes) * config.rows != len(image.wmem):
        raise SchemaError(f"{where}_wmem_lanes", f"has {len(image.wmem_lanes)} slots; the wmem "
                                                 f"image has {len(image.wmem) // config.rows}")
    _array(f"{where}_qmem", "qmem", image.qmem, config, WORD)
    _quant_params(f"{where}_qmem", image.qmem, config.cols)
    _array(f"{where}_constants", "constants", image.constants, config, INT8)
    _array(f"{where}_setup", "setup", image.setup, config, WORD)
    rows = {"wmem": len(image.wmem), "qmem": len(image.qmem)}
    if len(image.setup):
        _program(f"{where}_setup", image.setup, config, rows)
    return rows


def _transfer(field, transfer, batch, config):
    _number(f"{field}.tensor", transfer.tensor, low=0)
    _number(f"{field}.base", transfer.base, low=0)
    _number(f"{field}.entries", transfer.entries, positive=True)
    _number(f"{field}.offset", transfer.offset, low=0)
    if transfer.total is not None:
        _number(f"{field}.total", transfer.total, positive=True)
    if transfer.piece is not None:
        _number(f"{field}.piece", transfer.piece, positive=True)
    axes = (transfer.counts, transfer.strides, transfer.device_strides)
    if len({len(axis) for axis in axes}) != 1 or (transfer.counts and transfer.piece is None):
        raise SchemaError(field, "counts, strides and device_strides must have one value per "
                                 "axis of the box of pieces, and a piece size")
    for name, axis in zip(("counts", "strides", "device_strides"), axes):
        for k, value in enumerate(axis):
            _number(f"{field}.{name}[{k}]", value, positive=True)
    piece = transfer.entries if transfer.piece is None else transfer.piece
    reach = lambda strides: sum((count - 1) * stride for count, stride in zip(transfer.counts, strides))
    if reach(transfer.device_strides) + piece != transfer.entries:
        raise SchemaError(field, f"its box of pieces spans {reach(transfer.device_strides) + piece} "
                                 f"amem entries, not its {transfer.entries}")
    last = transfer.offset + reach(transfer.strides) + piece
    if last > transfer.sample_entries:
        raise SchemaError(field, f"entries {transfer.offset}..{last - 1} pass the tensor's "
                                 f"{transfer.sample_entries}")
    if transfer.base + batch * transfer.entries > config.amem_depth:
        raise SchemaError(field, f"entries {transfer.base}..{transfer.base + batch * transfer.entries - 1} "
                                 f"of a batch of {batch} pass amem's {config.amem_depth}")


def _plan(batch, runs, exe, image_rows):
    config = exe.config
    host = {0: _input_entries(exe.input, config)}          # tensor -> entries per sample
    for i, (image, run) in enumerate(zip(exe.segments, runs)):
        if run is None:          # runs in smaller batches: what it reads back, as at 1
            host.update({t.tensor: t.sample_entries for t in exe.plans[1][i].reads})
            continue
        where = f"batch{batch}_segment{i}"
        _array(f"{where}_program", "program", run.program, config, WORD)
        _program(f"{where}_program", run.program, config, image_rows[i])
        _array(f"{where}_zero_psum", "zero_psum", run.zero_psum, config, (0, config.psum_depth - 1))
        _number(f"plans.{batch}[{i}].constants_base", run.constants_base, low=0,
                high=config.amem_depth - len(image.constants))
        for j, transfer in enumerate(run.writes):
            field = f"plans.{batch}[{i}].writes[{j}]"
            _transfer(field, transfer, batch, config)
            if host.get(transfer.tensor) != transfer.sample_entries:
                raise SchemaError(field, f"writes tensor {transfer.tensor} of "
                                         f"{transfer.sample_entries} entries, which the host does "
                                         f"not hold at that size")
        for j, transfer in enumerate(run.reads):
            _transfer(f"plans.{batch}[{i}].reads[{j}]", transfer, batch, config)
            host[transfer.tensor] = transfer.sample_entries
        for name, pcs in run.layer_pcs.items():
            if len(pcs) != 2 or not 0 <= pcs[0] <= pcs[1] <= len(run.program):
                raise SchemaError(f"plans.{batch}[{i}].layer_pcs.{name}",
                                  f"{list(pcs)} is not a range of the program's pcs")
    if host[max(host)] != exe.output.entries:
        raise SchemaError(f"plans.{batch}", f"the last tensor read has {host[max(host)]} "
                                            f"entries a sample; the output has {exe.output.entries}")


def check_executable(exe):
    """Raise `SchemaError` naming the first field of `exe` the schema refuses."""
    config = exe.config
    _input(exe.input, config)
    _output(exe.output, config)
    if not exe.segments:
        raise SchemaError("segments", "is empty")
    image_rows = [_segment(i, image, config) for i, image in enumerate(exe.segments)]
    if not exe.plans:
        raise SchemaError("plans", "is empty")
    for batch, runs in exe.plans.items():
        _number(f"plans.{batch}", batch, positive=True)
        if len(runs) != len(exe.segments):
            raise SchemaError(f"plans.{batch}", f"has {len(runs)} segment runs for "
                                                f"{len(exe.segments)} segments")
    if 1 not in exe.plans or None in exe.plans[1]:
        raise SchemaError("plans", f"has no batch of 1 for every segment (batches "
                                   f"{sorted(exe.plans)}): a tail of samples would not run")
    sizes = [sorted(size for size, runs in exe.plans.items() if runs[i] is not None)
             for i in range(len(exe.segments))]
    for i in range(1, len(sizes)):         # a chain runs its sub-batches together
        if sizes[i][-1] == sizes[i - 1][-1] and sizes[i] != sizes[i - 1]:
            raise SchemaError("plans", f"segment {i} runs batches of {sizes[i]} samples, "
                                       f"segment {i - 1} of {sizes[i - 1]}: segments of one "
                                       f"largest batch run the same sizes")
    for batch, runs in exe.plans.items():
        _plan(batch, runs, exe, image_rows)
