"""Code generation: the instruction stream and memory images of one segment, placed for
a batch (see :mod:`firmware.compiler.mapper`)."""

from dataclasses import dataclass

import numpy as np

from golden import isa
from golden.crossbar import offset_excess
from golden.device import QuantParams, pack_quant_params

from .fault_aware import resting_inputs
from .mapper import COPY, PadMap, PoolMap, segment_steps

__all__ = ["SegmentCode", "segment_images", "segment_program"]


@dataclass
class SegmentCode:
    setup: list          # instructions run once per weight load (programs resident tiles)
    inference: list      # instructions run per batch
    layer_pcs: dict      # layer name -> range of its inference instructions


def _pool(pool, batch, in_base, out_base):
    """Max pooling in two passes of MAX runs per sample. Down: per output row, the maximum
    down each window column, over the row's pixels and entries in one run, written as a
    compact row over the start of the input (each entry lands where the run has already
    read, and below every input row a later output row reads). Across: the maximum across
    each window's columns; when the windows tile the image (stride = size) one strided run
    per entry of a pixel covers every output pixel, else one run per output row.
    A size-k pool is 2 * (k - 1) runs per output row and per entry, not k * k - 1 per both."""
    k, s, group = pool.size, pool.stride, pool.group
    span = (pool.out_w - 1) * s + k                  # input columns the windows cover
    row_entries = span * group
    out_entries = pool.out_h * pool.out_w * group
    program = []
    for sample in range(batch):
        image = in_base + sample * pool.input_entries
        for row in range(pool.out_h):
            input_rows = [image + (s * row + dy) * pool.pitch * group for dy in range(k)]
            column_max = image + row * row_entries
            program.append(isa.vmax(row_entries, input_rows[0], input_rows[1], column_max))
            program += [isa.vmax(row_entries, column_max, input_row, column_max)
                        for input_row in input_rows[2:]]
        out = out_base + sample * out_entries
        rows = [(pool.out_h * pool.out_w, 0)] if s == k else \
            [(pool.out_w, row) for row in range(pool.out_h)]
        for count, row in rows:
            for entry in range(group):
                columns = [image + (row * span + dx) * group + entry for dx in range(k)]
                dst = out + row * pool.out_w * group + entry
                program.append(isa.vmax(count, columns[0], columns[1], dst, src_stride=s * group,
                                        other_stride=s * group, dst_stride=group))
                program += [isa.vmax(count, dst, column, dst, src_stride=group,
                                     other_stride=s * group, dst_stride=group)
                            for column in columns[2:]]
    return program


def _pad(pad, batch, in_base, out_base, place):
    """Per sample: every entry of the bordered image from the fill constant, then each input
    row over its interior (a MAX against the COPY constant)."""
    fill = place.constant_base + place.constants.index(pad.fill)
    copy = place.constant_base + place.constants.index(COPY)
    top, left = pad.pads[:2]
    group, out_entries = pad.group, pad.positions * pad.group
    program = []
    for sample in range(batch):
        image, out = in_base + sample * pad.input_entries, out_base + sample * out_entries
        program.append(isa.vmax(out_entries, fill, fill, out, src_stride=0, other_stride=0))
        program += [isa.vmax(pad.in_w * group, image + y * pad.pitch * group, copy,
                             out + ((y + top) * pad.out_w + left) * group, other_stride=0)
                    for y in range(pad.in_h)]
    return program


def _staged_lanes(job):
    """The wmem lanes the host stages a non-resident job in: one copy of its tiles, which
    its replicas take their weights from (None when it has no replicas: its own lanes)."""
    return job.ktiles * job.ngroups if job.replicas > 1 else None


def segment_images(qnet, network_map, segment, placement):
    """The segment's weight-staging image ``(slots * rows, tiles * cols)`` (each job's
    blocks in the lanes of its first replica's tiles), the lanes of each slot the host
    writes, and its parameter image ``(entries, 4 * cols)`` words (cols channels an
    entry); none depends on the batch."""
    c = network_map.config
    R, C = c.rows, c.cols
    steps, by_name = segment_steps(network_map.steps, segment), {l.name: l for l in qnet.layers}
    slots = max(placement.slot.values(), default=-1) + 1
    wmem = np.zeros((slots * R, c.tiles, C), np.int64)
    lanes = np.zeros(slots, np.int64)
    faults = network_map.fault_writes
    for job, slot in placement.slot.items():
        lm = steps[job.step]
        rest = None if faults is None else resting_inputs(
            lm, by_name[lm.name], lm.k_inputs.get(job.kbs[0], job.step) == 0,
            faults.means.get(lm.name))
        first = placement.first_tile[job]      # replica 0's tiles; PROGRAM copies the rest
        for n, nb in enumerate(job.nbs):
            tiles = [isa.mvm_tile(first, 0, n, k, job.ktiles, job.ngroups)
                     for k in range(job.ktiles)]
            for k, kb in enumerate(job.kbs):
                block = lm.weights[kb * R:(kb + 1) * R, nb * C:(nb + 1) * C]
                if faults is None:
                    wmem[slot * R:(slot + 1) * R, tiles[k]] = block
                    continue
                # Written for its tile's stuck cells (a fault-aware job has no replicas).
                keys = ((job.step, id(segment.band), nb), (id(job), kb),
                        None if rest is None else rest[kb * R:(kb + 1) * R])
                if lm.fault_layout != "pair":
                    wmem[slot * R:(slot + 1) * R, tiles[k]] = faults.write(tiles[k], block, *keys)
                elif k % 2 == 0:                # kbs (kb, kb): one block over two tiles
                    pair = faults.write_pair(tiles[k:k + 2], block, *keys)
                    for tile, half in zip(tiles[k:k + 2], pair):
                        wmem[slot * R:(slot + 1) * R, tile] = half
        lanes[slot] = max(lanes[slot], first + job.ktiles * job.ngroups)
    wmem = wmem.reshape(slots * R, c.tiles * C)
    qmem = np.zeros((len(placement.qentry), C, 4), np.int64)
    for (s, nb, cls), entry in placement.qentry.items():
        layer = by_name[steps[s].name]
        multiplier, shift = (layer.class_params[cls] if getattr(layer, "class_params", ())
                             else (layer.multiplier, layer.shift))
        # Offset-binary inputs add 128 * sum(w) to each channel's sum: the bias removes it.
        bias = layer.bias - (offset_excess(layer.weights) if steps[s].offset_inputs else 0)
        if faults is not None:          # what the stuck cells' reads add at rest
            bias = bias.copy()
            first = steps[s].n_first + nb
            bias[first * C:(first + 1) * C] -= faults.bias_correction(
                (s, id(segment.band), nb), C)[:len(bias[first * C:(first + 1) * C])]
        for lane in range(C):
            channel = (steps[s].n_first + nb) * C + lane
            if channel < layer.weights.shape[1]:
                params = QuantParams(int(bias[channel]), int(multiplier[channel]),
                                     int(shift[channel]), layer.output.zero_point,
                                     layer.clamp_min, layer.clamp_max)
            else:             # padding channel: zero_point out, ignored downstream
                params = QuantParams(0, 0, 0, layer.output.zero_point, -128, 127)
            qmem[entry, lane] = pack_quant_params(params)
    return wmem, np.maximum(lanes, 1), qmem.reshape(len(qmem), 4 * C)


def _matrix_step(s, segment, place, config, steps, setup, inference):
    """Per job of matrix step `s` in the segment: its PROGRAM (in the setup program when
    the tiles are resident) and its MVMs; then the step's REQUANTs."""
    lm = steps[s]
    # One strided run over every sample's positions when the layout allows, else the
    # layer's runs for each sample: (count, input offset, psum entry offset). A merge's
    # offsets are in pixels: each of its inputs scales them by its entries a pixel.
    if lm.samples_contiguous:
        runs = [(place.batch * lm.positions, 0, 0)]
    else:
        runs = [(count, n * lm.input_entries + offset, (n * lm.positions + first) * lm.n_blocks)
                for n in range(place.batch) for count, offset, first in lm.sample_runs]
    jobs = segment.jobs.get(s, [])
    if place.resident and jobs:
        first, last = place.first_tile[jobs[0]], max(place.first_tile[j] + j.ktiles * j.ngroups
                                                     for j in jobs)
        setup.append(isa.program(first, 0, tiles=last - first))
    for job in jobs:
        first_tile, replicas = place.first_tile[job], 1 if place.resident else job.replicas
        if not place.resident:              # replicas from the one copy in lanes 0 ..
            inference.append(isa.program(first_tile, place.slot[job] * config.rows,
                                         tiles=job.tiles, lanes=_staged_lanes(job)))
        # Blocks that read another tensor than the step before's output: an earlier
        # layer's (a branch) or one input of a merge.
        source = lm.k_inputs.get(job.kbs[0], s)
        scale = lm.source_groups.get(source, 1)
        sample_stride = (place.sample_entries[source] if lm.positions == 1
                         else scale * lm.position_stride)
        k_offsets = [lm.k_offsets[kb] for kb in job.kbs]
        k_stride = k_offsets[1] - k_offsets[0] if len(k_offsets) > 1 else 0
        for count, src, dst in runs:
            inference.append(isa.mvm(
                first_tile, count, place.tensor_base[source] + scale * src + k_offsets[0],
                place.psum_base[s] + dst + job.nbs[0], src_stride=sample_stride,
                dst_stride=lm.n_blocks, k_stride=k_stride, n_stride=1, ktiles=job.ktiles,
                ngroups=job.ngroups, replicas=replicas, adc_shift=lm.adc_shift,
                offset_inputs=lm.offset_inputs, accumulate=job.accumulate))
    out_base = place.tensor_base[s + 1]
    C, R = config.cols, config.rows
    for nb in segment.requants.get(s, []):
        for count, position, cls in _requant_runs(lm, place.batch):
            inference.append(isa.requant(
                count, place.psum_base[s] + position * lm.n_blocks + nb,
                out_base + position * lm.output_entries + nb * C // R, place.qentry[(s, nb, cls)],
                lane_block=(nb * C % R) // C, src_stride=lm.n_blocks, dst_stride=lm.output_entries))


def _requant_runs(lm, batch):
    """(count, first position, parameter class) of the REQUANT runs of a step's output:
    one over every sample's positions, or, where the parameters vary by position (an
    average pool leaving its padding out of the count), one per run of a class."""
    if lm.requant_classes is None:
        return [(batch * lm.positions, 0, 0)]
    runs = []
    classes = np.tile(lm.requant_classes, batch)
    start = 0
    for end in range(1, len(classes) + 1):
        if end == len(classes) or classes[end] != classes[start]:
            if classes[start] >= 0:
                runs.append((end - start, start, int(classes[start])))
            start = end
    return runs


def segment_program(network_map, segment, place):
    """The segment's instructions for `place.batch` samples. When `place` is resident, its
    blocks are programmed into tiles of their own once, by the setup program, not per batch."""
    config, steps = network_map.config, segment_steps(network_map.steps, segment)
    setup, inference, layer_pcs = [], [], {}
    for s in segment.steps:
        first_pc = len(inference)
        if isinstance(steps[s], PoolMap):
            inference += _pool(steps[s], place.batch, place.tensor_base[steps[s].input_tensor],
                               place.tensor_base[s + 1])
        elif isinstance(steps[s], PadMap):
            # (a band of border rows only reads no input: its tensor is not placed)
            inference += _pad(steps[s], place.batch,
                              place.tensor_base.get(steps[s].input_tensor, 0),
                              place.tensor_base[s + 1], place)
        else:
            _matrix_step(s, segment, place, config, steps, setup, inference)
        layer_pcs[steps[s].name] = range(first_pc, len(inference))
    inference.append(isa.halt())
    if setup:
        setup.append(isa.halt())
    return SegmentCode(setup, inference, layer_pcs)
