"""Compiling a quantised network for a config into an `Executable`: segments that fit
the memories, a batch, the programs for each batch size and the host transfers."""

import warnings
from dataclasses import replace

import numpy as np

from golden import isa
from golden.config import MAX_MEMORY_DEPTH

from .adc_calibration import choose_adc_ranges
from .codegen import segment_images, segment_program
from .fault_aware import FaultAwareWrites, input_means
from ..runtime.executable import (Executable, InputSpec, OutputSpec, SegmentImage, SegmentRun,
                                  Transfer, batch_sizes, split_batch)
from .mapper import (LayerMap, MappingError, NetworkMap, Segment, band_step, lower,
                     channel_bands, input_band, input_bands, output_cols, output_rows,
                     place_segment, segment_steps, segment_tensors, starves,
                     tensor_entries)
from .quantize import QuantizedConv2d

__all__ = ["compile_network", "map_network", "LossyAdcWarning"]


class LossyAdcWarning(UserWarning):
    """A config whose ADC drops bits, compiled without calibrating its ranges."""

MAX_COUNT = (1 << isa.FIELDS["count"][1]) - 1


def _whole(steps, s):
    """Step `s` as a segment of its own: every job, every output block."""
    step = steps[s]
    if not isinstance(step, LayerMap):                  # pooling or padding: no weights
        return Segment((s,), {}, {}, {})
    zero = [nb for nb in range(step.n_blocks) if not step.nonzero[:, nb].any()]
    return Segment((s,), {s: list(step.jobs)}, {s: list(range(step.n_blocks))}, {s: zero})


def _merge(a, b):
    return Segment(a.steps + b.steps, {**a.jobs, **b.jobs}, {**a.requants, **b.requants},
                   {**a.zero_columns, **b.zero_columns})


def _overflow(network_map, segment, batch):
    """The first memory `segment` overflows at `batch` samples, or None."""
    c, steps = network_map.config, segment_steps(network_map.steps, segment)
    if segment.slots * c.rows > c.wmem_depth:
        return "wmem"
    place = place_segment(steps, segment, batch, c.amem_depth)
    if len(place.qentry) > c.qmem_depth:
        return "qmem"
    if place.amem_used > c.amem_depth:
        return "amem"
    if place.psum_used > c.psum_depth:
        return "psum"
    if any(batch * steps[s].positions > MAX_COUNT for s in segment.steps):
        return "instruction count field"
    if len(segment_program(network_map, segment, place).inference) > c.imem_depth:
        return "imem"
    return None


class _NoFit(MappingError):
    """Not even one job of a layer fits a segment; says which memory."""

    def __init__(self, message, failure):
        super().__init__(message)
        self.failure = failure


def _chunks(network_map, s, band=None):
    """Matrix step `s` (or its `band`) cut into segments of its jobs, each as many as
    fit; all-zero output blocks are requantised (from zeroed partial sums) in the first.
    A segment's memories only grow with its items, so each chunk's length is found by
    doubling then bisecting: a few trial programs a chunk, not one an item."""
    lm = network_map.steps[s] if band is None else band.step
    last_job = {nb: job for job in lm.jobs for nb in job.nbs}     # each output block's last
    items = [("zero", nb) for nb in range(lm.n_blocks) if nb not in last_job]
    items += [("job", job) for job in lm.jobs]

    def segment(first, stop):
        jobs, requants, zero = [], [], []
        for kind, value in items[first:stop]:
            if kind == "zero":
                requants.append(value)
                zero.append(value)
            else:
                jobs.append(value)
                requants += [nb for nb in value.nbs if last_job[nb] == value]
        return Segment((s,), {s: jobs}, {s: requants}, {s: zero}, band=band)

    chunks, first = [], 0
    while first < len(items):
        overflow = lambda count: _overflow(network_map, segment(first, first + count), 1)
        failure = overflow(1)
        if failure is not None:
            raise _NoFit(f"layer {lm.name!r}: not even one job's weight blocks fit a segment "
                         f"({failure} too small)", failure)
        low, high, step, limit = 1, None, 1, "end of layer"     # low items fit, high do not
        while high is None and first + low < len(items):
            count = min(low + step, len(items) - first)
            failure = overflow(count)
            if failure is None:
                low, step = count, 2 * step
            else:
                high, limit = count, failure
        while high is not None and high - low > 1:
            middle = (low + high) // 2
            failure = overflow(middle)
            if failure is None:
                low = middle
            else:
                high, limit = middle, failure
        chunk = segment(first, first + low)
        chunk.limit = limit
        chunks.append(chunk)
        first += low
    return [replace(chunk, part=(i, len(chunks))) for i, chunk in enumerate(chunks)]


def _split(network_map, s, failure):
    """Step `s`, too big for a segment (`failure`), as segments: chunks of its jobs (its
    weights do not fit), bands of its output rows (its tensors do not fit), or bands each
    in chunks (neither do)."""
    if isinstance(network_map.steps[s], LayerMap) and failure not in (
            "amem", "psum", "instruction count field"):
        try:
            return _chunks(network_map, s)
        except _NoFit as error:
            if error.failure not in ("amem", "psum", "instruction count field"):
                raise MappingError(str(error)) from None
            failure = error.failure
    bands = _bands(network_map, s, failure)
    if bands is None and failure == "amem" and input_bands(network_map.steps[s]):
        bands = _input_bands(network_map, s, failure)
    if bands is None:
        raise MappingError(_footprint_error(network_map, s, failure))
    return bands


def _input_bands(network_map, s, failure):
    """A Dense step `s` whose input does not fit (`failure`), as segments of bands of its
    K blocks (each in chunks of its jobs when its weights do not fit either), or None when
    not even one K block's band fits. The host writes each band's input entries once and
    zeroes the partial sums before the first; the last requantises. The fewest bands that
    fit are chosen: every band holds the whole layer's partial sums and output."""
    step = network_map.steps[s]
    blocks = step.k_blocks

    def parts(size):
        """The segments of bands of `size` K blocks, or None where they do not fit."""
        ranges = _ranges(blocks, size)
        segments = []
        for i, k_range in enumerate(ranges):
            band = replace(input_band(network_map, s, k_range), index=(i, len(ranges)))
            whole = replace(_whole({s: band.step}, s), band=band)
            if _overflow(network_map, whole, 1) is None:
                chunks = [whole]
            else:
                try:
                    chunks = _chunks(network_map, s, band)
                except _NoFit:
                    return None
            for j, chunk in enumerate(chunks):
                segments.append(replace(
                    chunk, requants={s: chunk.requants[s] if i == len(ranges) - 1 else []},
                    zero_columns={s: list(range(step.n_blocks)) if i == j == 0 else []}))
        return segments

    if parts(1) is None:
        return None
    low, high = 1, blocks
    while low < high:                        # the widest bands that fit
        middle = (low + high + 1) // 2
        low, high = (middle, high) if parts(middle) is not None else (low, middle - 1)
    segments = parts(low)
    count = segments[-1].band.index[1]
    for segment in segments:
        segment.limit = (f"{failure}: {count} band{'s' * (count > 1)} of up to {low} input "
                         f"blocks, the partial sums kept in psum")
    return segments


def _tiling(rows, cols, height, width, channels=(None,)):
    """(row range, column range, channel range) of each tile: per range of output blocks
    in `channels` (its weights loaded once), bands of `height` rows from the top (the last
    one shorter), each cut into `width` columns from the left, the last tile moved left
    to be as wide as the others (recomputing a few columns), so that every tile of a
    convolution has one pitch, hence one set of jobs and one weight image."""
    row_ranges = _ranges(rows, height)
    col_ranges = [None] if cols is None else \
        [(x, x + width) for x in range(0, cols - width, width)] + [(cols - width, cols)]
    return [(r, c, n) for n in channels for r in row_ranges for c in col_ranges]


def _edges(ranges, count):
    """The first and last `count` of `ranges`: the only ones a border can make differ."""
    return ranges if len(ranges) <= 2 * count else ranges[:count] + ranges[-count:]


def _ranges(total, size):
    """``0 .. total`` in ranges of `size`, the last one shorter."""
    return [(first, min(first + size, total)) for first in range(0, total, size)]


class _TileSearch:
    """The tile shapes of step `s` of `network_map` and what each costs: see `_bands`."""

    def __init__(self, network_map, s):
        self.map, self.s = network_map, s
        self.config, self.steps, self.step = network_map.config, network_map.steps, network_map.steps[s]
        self.rows, self.cols = output_rows(self.step), output_cols(self.step)
        self.border = max(getattr(self.step, "pads", (0,))) + 2

    def segment(self, band):
        return replace(_whole({self.s: band.step}, self.s), band=band)

    def tiling(self, height, width, channels):
        return _tiling(self.rows, self.cols, height, width, channels)

    def fitting(self, height, width, channels, ranges=None):
        """{channel range: the chunks its tiles run in (None: whole)} when tiles of
        `height` x `width` (x the output blocks of each of `channels`) fit; False when
        they do not. Only the channel ranges `ranges` are tried (the first and last if
        None); the rows and columns only near a border, where tiles differ."""
        tiles = self.tiling(height, width, channels)
        by_range = {}
        for r in _edges(sorted({r for r, _, _ in tiles}), self.border):
            for col in _edges(sorted({c for _, c, _ in tiles}, key=lambda c: c or (0,)),
                              self.border):
                for n in ranges or _edges(channels, 1):
                    band = band_step(self.map, self.s, r, col, n)
                    by_range.setdefault(n, {}).setdefault(band.shape, band)
        plan = {}
        for n, distinct in by_range.items():
            distinct = sorted(distinct.values(), key=lambda b: b.shape[2:4], reverse=True)
            if all(_overflow(self.map, self.segment(b), 1) is None for b in distinct):
                plan[n] = None
                continue
            if not isinstance(self.step, LayerMap):
                return False
            try:                             # the biggest tile's chunks, for every tile
                chunks = _chunks(self.map, self.s, distinct[0])
            except _NoFit:
                return False
            if any(_overflow(self.map, replace(chunk, band=b), 1) is not None
                   for b in distinct[1:] for chunk in chunks):
                return False
            plan[n] = chunks
        return plan

    def host_bytes(self, height, width, channels, plan):
        """Bytes the host moves for the tiles: a middle tile's (a border's may read
        nothing), times their count: its input and output entries, its program (16 bytes
        an instruction) and constants, and in chunks its weights again."""
        c = self.config
        tiles = self.tiling(height, width, channels)
        middle = tiles[len(tiles) // 2]
        band = band_step(self.map, self.s, *middle)
        chunks = plan.get(middle[2], plan[channels[0]])
        segments = ([replace(chunk, band=band) for chunk in chunks] if chunks
                    else [self.segment(band)])
        places = [place_segment(self.steps, segment, 1, c.amem_depth) for segment in segments]
        program = sum(len(segment_program(self.map, segment, place).inference)
                      for segment, place in zip(segments, places))
        moved = (sum(w.entries for w in band.inputs) + band.output.entries
                 + len(places[0].constants))
        weights = sum(segment.slots for segment in segments) * c.rows * c.tiles * c.cols
        return len(tiles) * (moved * c.rows + 16 * program + (weights if chunks else 0))

    def cheapest(self, channels):
        """(host bytes, height, width) of the cheapest tiles that fit, or None."""
        best, cols = None, self.cols
        widths = [None] if cols is None else sorted({-(-cols // n) for n in range(1, cols + 1)},
                                                   reverse=True)
        for width in widths:
            if self.fitting(1, width, channels) is False:   # taller bands need more, never less
                continue
            low, high = 1, self.rows
            while low < high:                # the tallest band that fits at this width
                middle = (low + high + 1) // 2
                low, high = ((middle, high) if self.fitting(middle, width, channels) is not False
                             else (low, middle - 1))
            cost = self.host_bytes(low, width, channels, self.fitting(low, width, channels))
            if best is None or cost < best[0]:
                best = cost, low, width
        return best

    def widest_channel_bands(self):
        """(channel ranges, the cheapest tiles) of the widest bands of output channels
        whose tiles fit, or (None, None)."""
        c, step = self.config, self.step
        align = max(1, c.rows // c.cols)         # output blocks that share an entry
        sizes = sorted({-(-step.n_blocks // n + align - 1) // align * align
                        for n in range(2, step.n_blocks + 1)} - {step.n_blocks}, reverse=True)
        for size in sizes:
            channels = _ranges(step.n_blocks, size)
            if self.fitting(1, 1 if self.cols else None, channels) is not False:
                return channels, self.cheapest(channels)
        return None, None

    def describe(self, tiles, height, width, channels):
        n, up_to = len(tiles), "up to " if len(tiles) > 1 else ""
        if self.cols is None:
            shape = f"{n} band{'s' * (n > 1)} of {up_to}{height} output positions"
        elif width == self.cols and channels == (None,):
            shape = f"{n} band{'s' * (n > 1)} of {up_to}{height} output rows"
        else:
            shape = f"{n} tiles of up to {height} rows x {width} columns"
        if channels != (None,):
            shape += f" x {channels[0][1] * self.config.cols} channels"
        return shape


def _bands(network_map, s, failure):
    """Step `s`, whose tensors do not fit (`failure`) for one sample, as segments of tiles
    of its output (bands of rows, cut into columns where a row does not fit, and for a
    convolution into bands of its output channels where a pixel does not fit), each in
    chunks of its jobs when its weights do not fit either, or None where it cannot run in
    tiles. Each tile's input (its windows' halo included) comes from the host and its
    output goes back. Of the tile shapes that fit, the one chosen moves the fewest host
    bytes: per tile its input and output entries (``rows`` bytes each), its program, and,
    in chunks, its weights again (``tiles * cols`` bytes a wmem entry). For each tile
    width the tallest band that fits is the cheapest (the halo shared by neighbouring
    bands is ``window - stride`` rows), so the search bisects the height at every width. Channel
    bands are the last resort, as wide as fit: each reads the input's pixels again."""
    step = network_map.steps[s]
    if output_rows(step) is None:
        return None
    search = _TileSearch(network_map, s)
    channels, best = (None,), search.cheapest((None,))
    if best is None and channel_bands(step):
        channels, best = search.widest_channel_bands()
    if best is None:
        return None
    _, height, width = best
    plan = search.fitting(height, width, channels, ranges=channels)   # every range's chunks
    if plan is False:
        raise MappingError(f"layer {step.name!r}: its bands of "
                           f"{channels[0][1] * network_map.config.cols} output channels "
                           f"differ, and not all of them fit")
    tiles = search.tiling(height, width, channels)
    parts = []
    for i, (r, col, n) in enumerate(tiles):
        band = replace(band_step(network_map, s, r, col, n), index=(i, len(tiles)))
        parts += ([replace(chunk, band=band) for chunk in plan[n]] if plan[n]
                  else [search.segment(band)])
    shape = search.describe(tiles, height, width, channels)
    for part in parts:
        part.limit = f"{failure}: {shape}"
    return parts


def _power_of_two_above(entries):
    return 1 << (entries - 1).bit_length()


def _footprint_error(network_map, s, failure):
    c, step = network_map.config, network_map.steps[s]
    whole = _whole(network_map.steps, s)
    rows = output_rows(step)
    if rows and failure in ("amem", "psum"):  # it runs in tiles, but not even one fits
        band = band_step(network_map, s, (0, 1), output_cols(step) and (0, 1))
        place = place_segment(network_map.steps, replace(whole, band=band), 1, c.amem_depth)
        need, depth = ((place.amem_used, c.amem_depth) if failure == "amem"
                       else (place.psum_used, c.psum_depth))
        unit = "position" if output_cols(step) is None else "pixel"
        smaller = "a smaller kernel or fewer channels" if unit == "position" else "fewer channels"
        fix = (f"give --{failure}-depth {_power_of_two_above(need)} or {smaller}"
               if need <= MAX_MEMORY_DEPTH else f"no config holds that (addresses reach "
                                                f"{MAX_MEMORY_DEPTH}): {smaller}")
        return (f"layer {step.name!r}: even one output {unit}'s tile needs {need} {failure} "
                f"entries, beyond {failure}_depth {depth} (tiles split rows and columns, not "
                f"channels): {fix}")
    if input_bands(step) and failure == "amem":     # not even one K block's band fits
        band = input_band(network_map, s, (0, 1))
        need = place_segment(network_map.steps, replace(whole, band=band), 1,
                             c.amem_depth).amem_used
        return (f"layer {step.name!r}: even a band of one K block needs {need} amem entries "
                f"(its input entry and its whole output), beyond amem_depth {c.amem_depth}: "
                f"give --amem-depth {_power_of_two_above(need)}")
    place = place_segment(network_map.steps, whole, 1, c.amem_depth)
    banded = ("convolutions, pools, borders and merges of images run in tiles, but "
              "not this layer, which takes its whole input at once")
    if failure == "amem" and place.amem_used > MAX_MEMORY_DEPTH:
        return (f"layer {step.name!r}: one sample's tensors need {place.amem_used} activation "
                f"entries, and no config can hold them (addresses reach amem_depth "
                f"{MAX_MEMORY_DEPTH}); {banded}: reduce the image before it (pooling) or export "
                f"the model at a smaller input size")
    if failure == "amem":
        return (f"layer {step.name!r}: one sample's tensors need {place.amem_used} activation "
                f"entries, beyond amem_depth {c.amem_depth} (give --amem-depth "
                f"{_power_of_two_above(place.amem_used)})")
    if failure == "psum":
        return (f"layer {step.name!r}: one sample needs {place.psum_used} partial-sum entries, "
                f"beyond psum_depth {c.psum_depth}")
    return f"layer {step.name!r}: one sample's program does not fit {failure}"


def cut_segments(network_map, progress=None):
    """Whole steps while they fit (at one sample), a layer too big alone in chunks.
    `progress(stage, done, total)` is called after every step."""
    steps, segments, current = network_map.steps, [], None
    for s, step in enumerate(steps):
        if progress:
            progress("steps mapped", s, len(steps))
        whole = _whole(steps, s)
        if current is not None:
            failure = _overflow(network_map, _merge(current, whole), 1)
            if failure is None:
                current = _merge(current, whole)
                continue
            current.limit = failure
            segments.append(current)
            current = None
        failure = _overflow(network_map, whole, 1)
        if failure is None:
            current = whole
        else:
            segments += _split(network_map, s, failure)
    if current is not None:
        current.limit = "end of network"
        segments.append(current)
    # Tensors ping-pong between the ends of amem; chunks of one layer share a layout (a
    # band's tensors come and go through the host: it has no neighbour to share with).
    at_top = False
    for i, segment in enumerate(segments):
        if i and segment.steps != segments[i - 1].steps:
            at_top = not at_top
        segment.input_at_top = at_top
    return segments


def _chains(segments):
    """(first, end) of each run of consecutive segments of the same steps: a layer's
    chunks or bands, which leave partial sums on chip for the next and so share a batch."""
    chains = []
    for i, segment in enumerate(segments):
        if i and segment.steps == segments[i - 1].steps:
            chains[-1][1] = i + 1
        else:
            chains.append([i, i + 1])
    return [tuple(chain) for chain in chains]


def _largest_batches(network_map):
    """The most samples each segment's memories hold, the same for a chain's segments."""
    c, steps, segments = network_map.config, network_map.steps, network_map.segments
    largest = []
    for first, end in _chains(segments):
        chain = segments[first:end]
        high = MAX_COUNT // max(segment_steps(steps, seg)[s].positions
                                for seg in chain for s in seg.steps)
        for segment in chain:
            place = place_segment(steps, segment, 1, c.amem_depth)
            high = min(high, c.amem_depth // place.amem_used,
                       c.psum_depth // max(place.psum_used, 1))
        fits = lambda b: all(_overflow(network_map, seg, b) is None for seg in chain)
        low = 1                                  # programs grow with the batch: bisect imem
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        largest += [low] * (end - first)
    return largest


def _network_batch(segments, largest):
    """The batch, up to the segments' largest, that loads weights and programs least
    often a sample: a segment runs it in sub-batches of at most its own largest, each
    loading its blocks and program again (ties go to the larger batch)."""
    weight = {}                          # the blocks (and program) each largest loads a run
    for segment, most in zip(segments, largest):
        weight[most] = weight.get(most, 0) + segment.blocks + 1

    def loads(batch):
        return sum(w * len(split_batch(batch, batch_sizes(min(batch, most))))
                   for most, w in weight.items()) / batch
    if len(weight) == 1:                 # one size for all: a batch of it loads least
        return largest[0]
    return min(range(max(largest), 0, -1), key=loads)


def map_network(qnet, config, batch=None, progress=None, fault_layout=None):
    """Lower `qnet`, cut it into segments and choose the batch (`_network_batch`, or
    `batch`); each segment runs at most as many samples at once as its memories hold
    (`segment_batches`). Jobs are shaped for the batch they run at (`plan_jobs`): when
    it is not given and some layer's shape is searched (`starves`), a first mapping
    finds the smallest segment batch and a second shapes the jobs for it."""
    network_map = _mapped(qnet, config, batch, progress, fault_layout)
    if batch is None and any(starves(lm, config) for lm in network_map.layers):
        network_map = _mapped(qnet, config, min(network_map.segment_batches), progress,
                              fault_layout)
    largest = network_map.segment_batches
    if batch is not None and not (isinstance(batch, int) and 1 <= batch <= max(largest)):
        raise MappingError(f"batch must be in 1..{max(largest)} for this network and config, "
                           f"not {batch!r}")
    network_map.batch = batch or _network_batch(network_map.segments, largest)
    network_map.segment_batches = [min(network_map.batch, most) for most in largest]
    return network_map


def _mapped(qnet, config, samples, progress, fault_layout=None):
    """The network lowered and cut, its jobs shaped for `samples` a batch; each
    segment's batch set to the largest its memories hold."""
    if not (isinstance(samples, int) and samples >= 1):
        samples = None                  # (a bad batch is refused once the largest is known)
    steps = lower(qnet, config, samples, fault_layout)
    network_map = NetworkMap(config, steps, [], 1, samples)
    network_map.segments = cut_segments(network_map, progress)
    if progress:
        progress("steps mapped", len(steps), len(steps))
    network_map.segment_batches = _largest_batches(network_map)
    network_map.batch = min(network_map.segment_batches)
    return network_map


def _input_spec(qnet, network_map, layout, input_order=None):
    first_layer, first = qnet.matrix_layers()[0], network_map.layers[0]
    conv = isinstance(first_layer, QuantizedConv2d)
    row_index = np.asarray(first.row_index, np.int64)
    if input_order is not None:
        order = np.asarray(input_order)
        if conv or sorted(order.tolist()) != list(range(len(row_index))):
            raise MappingError(f"input_order must be a permutation of the {len(row_index)} "
                               f"elements of a host-fed Dense layer's input")
        row_index = row_index[np.argsort(order)]      # the user's element order[j] is element j
    return InputSpec(tuple(qnet.input_shape), layout, float(qnet.input.scale),
                     int(qnet.input.zero_point), row_index,
                     first.k_blocks * network_map.config.rows,
                     tuple(first_layer.kernel) if conv else None,
                     first_layer.stride if conv else 1,
                     tuple(first_layer.pads) if conv else (0, 0, 0, 0))


def _band_transfer(window, place, steps):
    """A band's `window` of a tensor, placed by `place`."""
    return replace(window, base=place.tensor_base[window.tensor],
                   total=tensor_entries(steps, window.tensor))


def _transfers(network_map, batch):
    """Per segment, (writes, reads) of tensors through the host: the network's input
    before the first segment, its output after the last; a tensor an earlier segment
    made, read back after its producer's last segment and written before its reader (a
    skip, the input of a segment after a banded one or of one whose batch differs from
    the segment before); each band's rows."""
    steps, segments, c = network_map.steps, network_map.segments, network_map.config
    places = [place_segment(steps, seg, batch, c.amem_depth, network_map.resident)
              for seg in segments]
    whole = lambda t, place: Transfer(t, place.tensor_base[t], tensor_entries(steps, t))
    writes = [[] for _ in segments]
    reads = [[] for _ in segments]
    on_host = {0}

    def fetch(t):
        """Have the host hold tensor `t`: read it after its producer's last segment."""
        if t not in on_host:
            producer = max(j for j, other in enumerate(segments) if t - 1 in other.steps)
            reads[producer].append(whole(t, places[producer]))
            on_host.add(t)

    for i, (seg, place) in enumerate(zip(segments, places)):
        (t_in,), skips, _, (t_out,) = segment_tensors(steps, seg)
        if seg.band is not None:             # in chunks: in before the first, out after the last
            band, (chunk, chunks) = seg.band, seg.part or (0, 1)
            for window in band.inputs if chunk == 0 else ():
                fetch(window.tensor)
                writes[i].append(_band_transfer(window, place, steps))
            if chunk == chunks - 1 and band.writes_output:
                reads[i].append(_band_transfer(band.output, place, steps))
                on_host.add(t_out)
            continue
        if i and seg.steps == segments[i - 1].steps:
            continue                              # a later chunk: its tensors are in place
        if (i == 0 or segments[i - 1].band is not None        # its input is not in place
                or network_map.segment_batches[i] != network_map.segment_batches[i - 1]):
            fetch(t_in)
            writes[i].append(whole(t_in, place))
        for t in skips:
            fetch(t)
            writes[i].append(whole(t, place))
    if segments[-1].band is None:
        reads[-1].append(whole(len(steps), places[-1]))
    return places, writes, reads


def _summary(qnet, network_map, exe):
    c, m = network_map.config, network_map
    lines = [f"compiled {len(qnet.layers)} layers for {c.name}: {len(m.segments)} segment(s), "
             f"batch {m.batch} samples, {m.blocks} weight blocks, tiles "
             + ("resident (programmed once)" if exe.resident else
                "reprogrammed every batch")]
    for lm in m.layers:
        shapes = sorted({(j.ktiles, j.ngroups, j.replicas) for j in lm.jobs}, reverse=True)
        lines.append(f"  {lm.name}: {lm.k_blocks}x{lm.n_blocks} blocks, {lm.stored_blocks} stored "
                     f"({lm.block_utilisation:.0%}), crossbar cell utilisation "
                     f"{lm.cell_utilisation:.0%}; {len(lm.jobs)} job(s) of "
                     + ", ".join(f"{k} K x {n} N x {r} replica(s)" for k, n, r in shapes))
    if len(m.segments) > 1:
        lines.append(f"  {len(m.segments)} segments, each loading its weights, parameters and "
                     f"program every run (a batch, or each of its sub-batches):")
        i = 0
        while i < len(m.segments):
            line, count = _segment_line(m, exe, i)
            most = m.segment_batches[i]
            if most < m.batch:
                line += (f"; {most} sample{'s' if most > 1 else ''} a run (all its memories "
                         f"hold), a batch in several")
            lines.append(line)
            i += count
    return lines


def _segment_line(m, exe, i):
    """The summary line of segment `i` and of the chunks or bands of its layer after it,
    and how many segments it covers."""
    seg, layers = m.segments[i], ", ".join(exe.segments[i].layers)
    if seg.part is None and seg.band is None:
        return (f"    {i}: {layers}: {seg.blocks} blocks, {len(exe.segments[i].qmem)} parameter "
                f"entries, {len(exe.plans[m.segment_batches[i]][i].program)} instructions; "
                f"closed by {seg.limit}"), 1
    if seg.band is not None:
        parts = [p for p in m.segments[i:] if p.steps == seg.steps]
        chunks = (seg.part or (0, 1))[1]
        failure, bands = seg.limit.split(": ")
        return (f"    {i}-{i + len(parts) - 1}: {layers} in {bands} (one sample's "
                f"tensors do not fit {failure}): each tile's input, halo "
                f"included, from the host and its output back; "
                + (f"each tile in {chunks} parts of its weights" if chunks > 1
                   else "weights loaded once for all tiles")), len(parts)
    parts = m.segments[i:i + seg.part[1]]
    limits = sorted({p.limit for p in parts[:-1]})
    return (f"    {i}-{i + len(parts) - 1}: {layers} in {len(parts)} parts of up to "
            f"{max(p.blocks for p in parts)} blocks, closed by "
            f"{', '.join(limits) or 'end of layer'}; its input and partial sums "
            f"stay on chip between parts"), len(parts)


def _calibrate_adc(qnet, network_map, adc_calibration):
    """Set each layer's ADC shift from the calibration samples (floats, as the model
    takes them) when the config's ADC is lossy; summary lines."""
    c = network_map.config
    if c.is_lossless:
        return []
    head = (f"  ADC: {c.adc_bits} bits, {c.lossless_adc_bits} lossless; shifts 0..{c.max_adc_shift} "
            f"and two input encodings")
    if adc_calibration is None:
        warnings.warn(f"the {c.adc_bits}-bit ADC is below the lossless {c.lossless_adc_bits} "
                      f"bits and its ranges are not calibrated: every layer converts at "
                      f"shift 0, clipping large column counts. Give calibration data to "
                      f"choose each layer's range", LossyAdcWarning, stacklevel=3)
        return [head + ", not calibrated: every layer at shift 0, two's-complement inputs"]
    x_q = qnet.input.quantize(np.asarray(adc_calibration, np.float64))
    ranges = choose_adc_ranges(qnet, network_map, x_q)
    for lm in network_map.layers:
        lm.adc_shift, lm.offset_inputs = ranges[lm.name].shift, ranges[lm.name].offset_inputs
    vectors = ", ".join(sorted({str(r.vectors) for r in ranges.values()}))
    return ([head + f", calibrated per layer on {len(x_q)} samples (up to {vectors} vectors "
                    f"a layer), least accumulator error:"]
            + [f"    {ranges[lm.name].describe()}" for lm in network_map.layers])


def _fault_layout(config, faults, fault_pairs):
    """The mapper's `fault_layout` (None without a fault map), once the map is checked
    against `config`."""
    if faults is not None and faults.config != config:
        raise ValueError(f"the fault map is for {faults.config.name}, not {config.name}")
    if fault_pairs and (faults is None or config.tiles < 2):
        raise ValueError("fault pairs split each block over two tiles around a fault map: "
                         "give the map, on a config of 2 tiles or more")
    return None if faults is None else "pair" if fault_pairs else "tile"


def _fault_writes(qnet, faults, calibration):
    """How the blocks are written around `faults` (None without a map), the bias
    corrected for the calibration samples' mean inputs when there are some."""
    if faults is None:
        return None
    means = None if calibration is None else input_means(
        qnet, qnet.input.quantize(np.asarray(calibration, np.float64)))
    return FaultAwareWrites(faults, means)


def compile_network(qnet, config, batch=None, input_layout="vector", head=None,
                    adc_calibration=None, input_order=None, progress=None, faults=None,
                    fault_pairs=False):
    """`qnet` compiled for `config` into an `Executable`; `head` (a final Softmax,
    LogSoftmax or ArgMax of the model) is left to the host. `input_order` (a permutation)
    says that `qnet`'s input element j is element ``input_order[j]`` of the samples users
    have: the executable then takes those samples, its host placing each element on its
    row at no cost. With a lossy ADC, the
    `adc_calibration` samples (float, shaped as the model's input) set each layer's ADC
    range; without them every layer converts at shift 0 and a `LossyAdcWarning` says so.
    `progress(stage, done, total)`, if given, is called as steps are mapped and segments
    generated. `faults` (a `golden.faults.FaultMap` of the device, from its self test)
    has each block written for its tile's stuck cells (`fault_aware`), and the bias
    corrected for the mean inputs of the
    `adc_calibration` samples when given (else for inputs at rest); jobs then have no
    replicas, whose shared bias would suit one tile only. With `fault_pairs`, each weight
    block goes on two tiles whose products the adder tree sums, its weights split between
    them around both tiles' stuck cells."""
    network_map = map_network(qnet, config, batch, progress,
                              _fault_layout(config, faults, fault_pairs))
    network_map.fault_writes = _fault_writes(qnet, faults, adc_calibration)
    adc_lines = _calibrate_adc(qnet, network_map, adc_calibration)
    steps, segments = network_map.steps, network_map.segments
    resident = network_map.resident
    own_sizes = [batch_sizes(most) for most in network_map.segment_batches]
    sizes = sorted(set().union(*own_sizes), reverse=True)
    images, plans, first_image = [None] * len(segments), {}, {}
    for size in sizes:
        places, writes, reads = _transfers(network_map, size)
        runs = []
        for i, (segment, place) in enumerate(zip(segments, places)):
            if progress and (i % 256 == 0 or i == len(segments) - 1):
                progress(f"segments generated (batch {size})", i + 1, len(segments))
            if size not in own_sizes[i]:
                runs.append(None)            # more samples than it holds: smaller batches
                continue
            code = segment_program(network_map, segment, place)
            shared = segment.band and (segment.steps, segment.part, segment.band.channels,
                                       segment.band.k_blocks,
                                       tuple(segment.jobs.get(segment.steps[0], ())))
            if images[i] is None and shared in first_image:
                # a later tile: an earlier tile's images (of the same chunk and jobs)
                images[i] = replace(images[first_image[shared]], images_from=first_image[shared])
            elif images[i] is None:
                if shared:
                    first_image[shared] = i
                wmem, lanes, qmem = segment_images(qnet, network_map, segment, place)
                images[i] = SegmentImage(
                    [steps[s].name for s in segment.steps], segment.limit, segment.part, wmem,
                    lanes, qmem,
                    np.array(isa.encode_program(code.setup), np.int64).reshape(-1, 4),
                    np.repeat(np.array(place.constants, np.int64)[:, None], config.rows, axis=1),
                    segment.blocks)
            ran = segment_steps(steps, segment)
            zero = [place.psum_base[s] + (n * ran[s].positions + p) * ran[s].n_blocks + nb
                    for s, nbs in segment.zero_columns.items() for nb in nbs
                    for n in range(size) for p in range(ran[s].positions)]
            runs.append(SegmentRun(np.array(isa.encode_program(code.inference), np.int64).reshape(-1, 4),
                                   np.array(zero, np.int64), writes[i], reads[i],
                                   {name: (pcs.start, pcs.stop) for name, pcs in code.layer_pcs.items()},
                                   place.constant_base))
        plans[size] = runs
    last = qnet.matrix_layers()[-1]
    output = OutputSpec(int(last.weights.shape[1]), float(last.output.scale),
                        int(last.output.zero_point), steps[-1].output_entries, head)
    exe = Executable(config, _input_spec(qnet, network_map, input_layout, input_order), output,
                     images, plans,
                     resident)
    exe.summary = _summary(qnet, network_map, exe) + adc_lines
    if faults is not None:
        exe.summary.append(f"  written around {len(faults.faulty)} stuck cells "
                           f"({faults.fraction:.2%} of the cells): each tile's blocks for its "
                           f"own cells{', each block split over two tiles' if fault_pairs else ''}"
                           f", the bias taking back what they add on average")
    if head:
        exe.summary.append(f"  the model's final {head} runs on the host, on the dequantised "
                           f"outputs")
    return exe
