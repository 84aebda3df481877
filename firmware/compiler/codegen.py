"""Code generation: the instruction stream and memory images of one segment, placed for
a batch (see :mod:`firmware.compiler.mapper`)."""

from dataclasses import dataclass

import numpy as np

from golden import isa
from golden.crossbar import offset_excess
from golden.device import QuantParams, check_instruction, instruction_counters, pack_quant_params

from .fault_aware import resting_inputs
from .mapper import COPY, PadMap, PoolMap, segment_steps, step_inputs

__all__ = ["SegmentCode", "segment_images", "segment_program", "FUSED_OUTPUTS"]

# MVMs requantise (and max-pool) their sums into amem as they write where they can; False
# sends every block through psum, REQUANT and MAX runs (the rule before, for benches).
FUSED_OUTPUTS = True


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


def _final(job, lm, s, segment, config):
    """Whether a job's MVMs may requantise their sums straight into amem: the config has
    requantizing MVMs, no other job of the layer writes its output blocks (its sums are
    whole), each is requantised in this segment, with one qmem entry (the parameters do
    not vary by position), into the first lane block of its entries."""
    C, R = config.cols, config.rows
    return config.requantizing_mvms and not (job.accumulate or lm.requant_classes is not None
                or any(nb not in segment.requants.get(s, ()) or (nb * C) % R for nb in job.nbs)
                or any(other is not job and set(other.nbs) & set(job.nbs) for other in lm.jobs)
                or (job.ngroups > 1 and C != R))


def _requantizing(mvm, job, s, place, config, dst, dst_stride, max_into=False):
    """`mvm` as an MVM that requantises job `job`'s blocks into amem entries ``dst +
    v*dst_stride + n`` (taking the maximum with them, `max_into`), or None where the
    instruction cannot say it (qmem entries past its field, outputs meeting its inputs)."""
    qentry = place.qentry[(s, job.nbs[0], 0)]
    if qentry + job.ngroups > 1 << isa.FIELDS["qentry"][1]:
        return None
    fused = isa.mvm(mvm.tile, mvm.count, mvm.src, dst, mvm.src_stride, dst_stride, mvm.aux,
                    1 if job.ngroups > 1 else 0, mvm.ktiles, mvm.ngroups, mvm.replicas,
                    mvm.adc_shift, mvm.offset_inputs, qentry=qentry, max_into=max_into)
    return fused if check_instruction(fused, config) == isa.ErrorCode.NONE else None


def _pool_runs(lm, pool, batch):
    """A convolution's vectors for the max pool after it (windows that tile the image),
    as runs (count, input entry, input stride, pooled entry, pooled stride, max) that
    write each window's pixels into its pooled entry in turn: the first offset's, then
    the maximum with each other's. The runs go over the samples (one a window and offset)
    or, with fewer samples than windows across, along a row of windows (one a sample, row
    and offset). None when a window's pixel has no vector of its own."""
    k, group = pool.size, pool.group
    pooled = pool.out_h * pool.out_w * group                   # a sample's pooled entries

    def input_entry(y, x):
        p = y * pool.pitch + x
        return next((offset + (p - first) * lm.position_stride
                     for count, offset, first in lm.sample_runs if first <= p < first + count),
                    None)

    runs = []
    offsets = [(oy, ox) for oy in range(k) for ox in range(k)]
    if batch >= pool.out_w:
        for wy, wx in np.ndindex(pool.out_h, pool.out_w):
            for oy, ox in offsets:
                entry = input_entry(k * wy + oy, k * wx + ox)
                if entry is None:
                    return None
                runs.append((batch, entry, lm.input_entries, (wy * pool.out_w + wx) * group,
                             pooled, (oy, ox) != (0, 0)))
        return runs
    for n, wy in np.ndindex(batch, pool.out_h):
        for oy, ox in offsets:
            entries = [input_entry(k * wy + oy, k * wx + ox) for wx in range(pool.out_w)]
            if None in entries:
                return None
            strides = set(np.diff(entries).tolist())          # none for one window a row
            if len(strides) > 1 or 0 in strides:
                return None
            runs.append((pool.out_w, n * lm.input_entries + entries[0],
                         strides.pop() if strides else 0, n * pooled + wy * pool.out_w * group,
                         group, (oy, ox) != (0, 0)))
    return runs


def _matrix_step(s, segment, place, config, steps, setup, inference, pool=None):
    """Per job of matrix step `s` in the segment: its PROGRAM (in the setup program when
    the tiles are resident) and its MVMs, requantizing where they can; then the step's
    REQUANTs of the blocks they did not. Given the max `pool` after it, every job's MVMs
    requantise and pool into the pool's output (`_pool_runs`) or it returns False (and
    what it added is moot)."""
    lm = steps[s]
    fused_blocks = set()
    C, R = config.cols, config.rows
    # One strided run over every sample's positions when the layout allows, else the
    # layer's runs for each sample: (count, input offset, psum entry offset). A merge's
    # offsets are in pixels: each of its inputs scales them by its entries a pixel.
    if lm.samples_contiguous:
        runs = [(place.batch * lm.positions, 0, 0)]
    else:
        runs = [(count, n * lm.input_entries + offset, (n * lm.positions + first) * lm.n_blocks)
                for n in range(place.batch) for count, offset, first in lm.sample_runs]
    pool_runs = None if pool is None else _pool_runs(lm, pool, place.batch)
    jobs = segment.jobs.get(s, [])
    if pool is not None and (pool_runs is None or not jobs
                             or not all(_final(job, lm, s, segment, config) for job in jobs)):
        return False
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

        def psum_mvm(count, src, dst, src_stride=sample_stride):
            return isa.mvm(
                first_tile, count, place.tensor_base[source] + scale * src + k_offsets[0],
                place.psum_base[s] + dst + job.nbs[0], src_stride=src_stride,
                dst_stride=lm.n_blocks, k_stride=k_stride, n_stride=1, ktiles=job.ktiles,
                ngroups=job.ngroups, replicas=replicas, adc_shift=lm.adc_shift,
                offset_inputs=lm.offset_inputs, accumulate=job.accumulate)

        block = job.nbs[0] * C // R                  # its first block's entry in a pixel
        if pool is not None:
            mvms = [_requantizing(psum_mvm(count, src, 0, src_stride), job, s, place, config,
                                  place.tensor_base[s + 2] + dst + block, dst_stride, max_into)
                    for count, src, src_stride, dst, dst_stride, max_into in pool_runs]
            if not all(mvms):
                return False
            inference += mvms
            fused_blocks.update(job.nbs)
            continue
        mvms = [psum_mvm(count, src, dst) for count, src, dst in runs]
        fused = FUSED_OUTPUTS and _final(job, lm, s, segment, config) and [
            _requantizing(mvm, job, s, place, config, place.tensor_base[s + 1] + block
                          + (mvm.dst - place.psum_base[s] - job.nbs[0]) // lm.n_blocks
                          * lm.output_entries, lm.output_entries) for mvm in mvms]
        if fused and all(fused):        # every run of the job, or none: one REQUANT a block
            mvms = fused
            fused_blocks.update(job.nbs)
        inference += mvms
    out_base = place.tensor_base[s + 1]
    for nb in segment.requants.get(s, []):
        if nb in fused_blocks:
            continue
        for count, position, cls in _requant_runs(lm, place.batch):
            inference.append(isa.requant(
                count, place.psum_base[s] + position * lm.n_blocks + nb,
                out_base + position * lm.output_entries + nb * C // R, place.qentry[(s, nb, cls)],
                lane_block=(nb * C % R) // C, src_stride=lm.n_blocks, dst_stride=lm.output_entries))
    return True


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


def _poolable(network_map, segment, s):
    """Whether matrix step `s` is a convolution whose output only a max pool of windows
    that tile it reads, next in the segment (so its MVMs may pool as they write)."""
    steps, pool = network_map.steps, network_map.steps[s + 1] if s + 1 < len(network_map.steps) \
        else None
    return (segment.band is None and s + 1 in segment.steps and isinstance(pool, PoolMap)
            and pool.stride == pool.size and pool.input_tensor == s + 1
            and steps[s].positions > 1 and not steps[s].k_inputs and not steps[s].source_groups
            and not segment.zero_columns.get(s) and pool.group == steps[s].output_entries
            and not any(s + 1 in step_inputs(steps, t) for t in range(len(steps)) if t != s + 1))


def _cycles(program, config):
    return sum(instruction_counters(ins, config)["cycles"] for ins in program)


def _matrix_and_pool(s, segment, place, config, steps, setup, inference):
    """Matrix step `s` and the pool after it: pooled by the MVMs (`_matrix_step` with the
    pool) where that is possible and takes fewer cycles, else MVMs, REQUANTs and MAX runs.
    Returns the steps done: `s` or `s + 1`."""
    pool = steps[s + 1]
    plain_setup, plain = [], []
    _matrix_step(s, segment, place, config, steps, plain_setup, plain)
    pooled_setup, pooled = [], []
    if (_matrix_step(s, segment, place, config, steps, pooled_setup, pooled, pool)
            and _cycles(pooled, config) < _cycles(plain, config) + _cycles(
                _pool(pool, place.batch, place.tensor_base[s + 1], place.tensor_base[s + 2]),
                config)):
        setup += pooled_setup
        inference += pooled
        return s + 1
    setup += plain_setup
    inference += plain
    return s


def segment_program(network_map, segment, place):
    """The segment's instructions for `place.batch` samples. When `place` is resident, its
    blocks are programmed into tiles of their own once, by the setup program, not per batch."""
    config, steps = network_map.config, segment_steps(network_map.steps, segment)
    setup, inference, layer_pcs = [], [], {}
    pooled = set()                            # pools their convolutions' MVMs did
    for s in segment.steps:
        first_pc = len(inference)
        if s in pooled:
            pass
        elif isinstance(steps[s], PoolMap):
            inference += _pool(steps[s], place.batch, place.tensor_base[steps[s].input_tensor],
                               place.tensor_base[s + 1])
        elif isinstance(steps[s], PadMap):
            # (a band of border rows only reads no input: its tensor is not placed)
            inference += _pad(steps[s], place.batch,
                              place.tensor_base.get(steps[s].input_tensor, 0),
                              place.tensor_base[s + 1], place)
        elif FUSED_OUTPUTS and _poolable(network_map, segment, s):
            pooled.add(_matrix_and_pool(s, segment, place, config, steps, setup, inference))
        else:
            _matrix_step(s, segment, place, config, steps, setup, inference)
        layer_pcs[steps[s].name] = range(first_pc, len(inference))
    inference.append(isa.halt())
    if setup:
        setup.append(isa.halt())
    return SegmentCode(setup, inference, layer_pcs)
