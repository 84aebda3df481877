"""Products computed ahead: the MVM products of runs the host has said are coming, done
as one BLAS product on their shared inputs instead of one thin product a run.

A network too large for the tiles runs a layer as a chain of segments, each with its
own weights: every segment multiplies the same activations by another slice of the
layer's matrix, often a product of 16 columns. Told the runs to come (`Expected`), an
ideal device (`golden.device.Device` or `DeviceStack`) computes, at the first such
product, every later one on the same vectors that nothing before it writes: the inputs
once, the weights side by side (zero where a product reads fewer of the vectors'
entries), one product. Each run then takes its results instead of computing them. Only
the product is shared; every psum write, requantisation and counter stays the run's
own, in its own order.

It stays exact where it could go wrong: a run other than the one expected (another
program) drops every result made ahead; a host write to amem drops those that read the
entries written; a result is used only if the wmem rows its weights came from hold,
when it runs, the bytes they were expected to hold, and the device count is the same.
"""

import math
import weakref
from dataclasses import dataclass

import numpy as np

from .crossbar import int8_matmul
from .device import Device, _max_plan, _program_plan, _Remembered, _requant_plan, as_span
from .isa import WORDS_PER_INSTRUCTION

__all__ = ["Expected", "ProductsAhead", "MIN_VECTORS", "MAX_COLUMNS", "MIN_TERMS"]


@dataclass(frozen=True, eq=False)
class Expected:
    """A run to come: the program it runs (instruction words), the wmem writes the host
    makes before it, ``(first row, int8 values (rows, lanes))`` each, lanes from 0, and
    the amem entries it writes before it, ``(first entry, entries)`` each. Made once, it
    can be declared again and again (its plan is worked out once)."""
    program: np.ndarray
    wmem_writes: tuple = ()
    amem_writes: tuple = ()

    def __post_init__(self):
        words = np.asarray(self.program, np.int64).reshape(-1, WORDS_PER_INSTRUCTION)
        object.__setattr__(self, "words", words.astype(np.uint32).tobytes())   # as in imem
        object.__setattr__(self, "plans", {})

    def plan(self, config):
        """The program's plan on an ideal lossless device of `config`."""
        plan = self.plans.get(config)
        if plan is None:
            plan = self.plans[config] = _program_plan(self.words, config, True)
        return plan


INSTRUCTION_BYTES = WORDS_PER_INSTRUCTION * 4       # an instruction's words in imem
# Fewer vectors than this (all devices') are cheaper a run at a time than stacking weights.
MIN_VECTORS = 64
# Products of more weight columns than this already run near BLAS's speed: stacking them
# costs more (copies, checks) than it gains.
MAX_COLUMNS = 32
# Nor do products of fewer terms than this gain: each reads its inputs again, but few.
# (512 before walks were remembered: the pruned big MLP's first layer, ~400 terms a
# product, now gains 10 %; MLP 128-256-256-128 pruned still loses below 256.)
MIN_TERMS = 256
# The most bytes of results made ahead at once (counted as int64, the wider type).
RESULT_BUDGET = 64 << 20


class ProductsAhead:
    """The products of `runs` (`Expected`s, in order) as a device meets them; see the
    module. The device calls `begin` at each run and `take` at each product step."""

    def __init__(self, config, runs):
        self.config = config
        self.runs = runs
        self.next = 0                   # the ordinal of the next expected run
        self.current = None             # (ordinal, plan) of the run going on
        self.positions = None           # {id(step): position} in its plan, once needed
        self.ready = {}                 # (ordinal, position) -> _Result
        self.made = self.taken = 0      # results made ahead, and taken by their runs

    def forget(self, start=None, count=0):
        """Drop the results that read amem entries ``start .. start+count-1``; all of them
        with no `start`."""
        if start is None:
            self.ready.clear()
        elif self.ready:
            self.ready = {key: result for key, result in self.ready.items()
                          if not result.reads(start, start + count)}

    def begin(self, device, plan):
        """A run of `plan` starts on `device`: the next expected one (the declared program
        in imem, and nothing past it decoded), or one never declared, whose writes are
        unknown."""
        self.positions = None
        if self.next < len(self.runs):
            words, fetched = self.runs[self.next].words, plan.fetches * INSTRUCTION_BYTES
            if fetched <= len(words) and device.imem[:plan.fetches].tobytes() == words[:fetched]:
                self.current = (self.next, plan)
                self.next += 1
                return
        self.current = None
        self.forget()

    def take(self, device, step):
        """The results of product `step` of the run going on, or None: compute them."""
        if self.current is None:
            return None
        ordinal = self.current[0]
        if self.ready:
            result = self.ready.pop((ordinal, self._position(step)), None)
            if result is not None:
                if not result.valid(device):
                    return None
                self.taken += 1
                return result.values
        if not _shareable(step) or step.index.index.shape[1] > MAX_COLUMNS or \
                step.index.index.shape[0] < MIN_TERMS or \
                len(step.entries) * math.prod(device.amem.shape[:-2]) < MIN_VECTORS:
            return None
        return self._ahead(device, ordinal, self._position(step), step)

    def _position(self, step):
        if self.positions is None:
            self.positions = {id(s): i for i, (_, s) in enumerate(self.current[1].steps)}
        return self.positions[id(step)]

    def _ahead(self, device, ordinal, position, first):
        """`first`'s results, making those of the later products on its vectors."""
        c, lead = self.config, device.amem.shape[:-2]
        plan = self.current[1]
        later = self.runs[ordinal + 1] if ordinal + 1 < len(self.runs) else None
        fruitless = _FRUITLESS.setdefault(plan, set())
        # what the walk depends on past this run: the next run's program and host writes
        walk = (position, lead) if later is None else \
            (position, lead, later.words, later.amem_writes)
        if walk in fruitless:
            return None
        found = self._members(device, ordinal, position, first)
        if found is None:               # the same again whenever `later` follows: remember
            fruitless.add(walk)
            return None
        group, contents = found                         # [(ordinal, position, step)], bytes
        steps = tuple(step for _, _, step in group)
        key, sources = tuple(map(id, steps)), (steps, tuple(contents))
        stacked = _STACKED.get(key, sources)
        if stacked is None:
            parts = [np.frombuffer(content, np.int8).take(step.index.index).astype(np.float32)
                     for step, content in zip(steps, contents)]
            stacked = _stack([step.entries for step in steps], parts, c.rows)
            _STACKED.put(key, sources, stacked, stacked[0].nbytes + stacked[1].nbytes)
        shared, weights, kept, spans = stacked
        if len(kept) < 2:               # no other product reads the same entries
            fruitless.add(walk)
            return None
        group, contents = [group[i] for i in kept], [contents[i] for i in kept]
        inputs = device.amem[..., shared, :].reshape(-1, shared.shape[1] * c.rows)
        inputs = inputs.astype(np.float32)
        dtype = np.result_type(*(step.dtype for _, _, step in group))
        results = int8_matmul(inputs, weights, first.offset, dtype=dtype)
        for (at, where, step), span, content in zip(group[1:], spans[1:], contents[1:]):
            self.ready[(at, where)] = _Result(results[:, span], step.entries, step.index.rows,
                                              content, lead)
        self.made += len(group) - 1
        return results[:, spans[0]]

    def _members(self, device, ordinal, position, first):
        """([(ordinal, position, step)] of the products to make with `first`, the bytes of
        the wmem rows each one's weights come from as its run will find them), or None
        when no other product joins it. It depends only on the runs declared from here on,
        the devices and what wmem holds now, so it is remembered by those."""
        plan, lead = self.current[1], device.amem.shape[:-2]
        runs, wmem = tuple(self.runs[ordinal + 1:]), device.wmem.tobytes()
        key = (id(plan), position, lead, tuple(map(id, runs)))
        known = _MEMBERS.get(key, (plan, runs, wmem))
        if known is None:
            known = self._walk_members(device, ordinal, position, first)
            if not known:               # the caller remembers a fruitless walk (_FRUITLESS)
                return None
            # the bytes it keeps alive: wmem's, the rows', the runs' declared weights
            held = len(wmem) + sum(map(len, known[1])) + sum(
                values.nbytes for run in runs for _, values in run.wmem_writes)
            _MEMBERS.put(key, (plan, runs, wmem), known, held)
        places, contents = known
        steps = [(plan if at == 0 else runs[at - 1].plan(self.config)).steps[where][1]
                 for at, where in places]
        return [(ordinal + at, where, step) for (at, where), step in zip(places, steps)], \
            contents

    def _walk_members(self, device, ordinal, position, first):
        """`_members`, found by walking the runs to come: (places as (runs after this one,
        position), contents), or () when no other product joins `first`."""
        c, lead = self.config, device.amem.shape[:-2]
        vectors = len(first.entries)
        columns_left = RESULT_BUDGET // (8 * vectors * math.prod(lead))
        written = np.zeros(c.amem_depth, bool)          # by the steps from `first` on
        group = []                                      # (ordinal, position, step, wmem)
        last = ordinal                                  # the last run with a member
        for at, where, step, span, wmem in self._walk(ordinal, position, device.wmem):
            if at > last + 1:                           # a run without one: the chain ended
                break
            if (step is not None and _shareable(step) and step.offset == first.offset
                    and len(step.entries) == vectors and not written[step.window].any()):
                columns = step.index.index.shape[1]
                if columns > columns_left:
                    break
                group.append((at, where, step, wmem))
                columns_left -= columns
                last = at
            if span is not None:
                written[span[0]:span[1]] = True
                if written[first.window].any():         # later products read new inputs
                    break
        if len(group) < 2:
            return ()
        return ([(at - ordinal, where) for at, where, _, _ in group],
                [wmem[step.index.rows].tobytes() for _, _, step, wmem in group])

    def _walk(self, ordinal, position, wmem):
        """(ordinal, position, step, the amem span it writes (`_amem_writes`), wmem as that
        run finds it) of each step from `position` of the run going on to the end of the
        expected runs; the host's amem writes before a run as steps of None."""
        plan = self.current[1]
        spans = _amem_writes(plan, self.config.cols)
        for where in range(position, len(plan.steps)):
            yield ordinal, where, plan.steps[where][1], spans[where], wmem
        for later in range(ordinal + 1, len(self.runs)):
            run = self.runs[later]
            if run.wmem_writes:
                wmem = wmem.copy()
                for first_row, values in run.wmem_writes:
                    wmem[first_row:first_row + len(values), :values.shape[1]] = values
            for first_entry, entries in run.amem_writes:
                yield later, None, None, (first_entry, first_entry + entries), wmem
            plan = run.plan(self.config)
            spans = _amem_writes(plan, self.config.cols)
            for where, (_, step) in enumerate(plan.steps):
                yield later, where, step, spans[where], wmem


def _stack(entries, parts, rows):
    """(the amem entries the vectors read, the weights side by side, the products kept,
    the columns of each) for products reading `entries` ((vectors, K) each, the first
    one's results wanted) with weights `parts`. Where no one set of entries serves all,
    only those reading what the first reads are kept."""
    shared, placed = _shared_vectors(entries)
    kept = list(range(len(entries)))
    if shared is None:
        kept = [i for i in kept if np.array_equal(entries[i], entries[0])]
        parts = [parts[i] for i in kept]
        shared, placed = entries[0], [np.arange(entries[0].shape[1])] * len(kept)
    ends = np.cumsum([part.shape[1] for part in parts]).tolist()
    weights = np.zeros((shared.shape[1] * rows, ends[-1]), np.float32)
    spans = []
    for part, entries, end in zip(parts, placed, ends):
        columns = slice(end - part.shape[1], end)
        lanes = as_span(entries)
        if isinstance(lanes, slice):
            weights[lanes.start * rows:lanes.stop * rows, columns] = part
        else:
            weights[(entries[:, None] * rows + np.arange(rows)).ravel(), columns] = part
        spans.append(columns)
    weights.flags.writeable = False
    return shared, weights, kept, spans


# Stacked weights by the identities of the steps and the bytes of the wmem rows their
# weights come from (the entry keeps the steps alive, so the identities stay theirs)
_STACKED = _Remembered(256 << 20)


@dataclass(frozen=True, eq=False)
class _Result:
    values: np.ndarray          # the product's results, as `Device._product` makes them
    entries: np.ndarray         # the amem entries it read
    rows: slice                 # the wmem rows its weights came from
    content: bytes              # their bytes then
    lead: tuple                 # the devices' shape

    def reads(self, start, end):
        return bool(((self.entries >= start) & (self.entries < end)).any())

    def valid(self, device):
        return (device.amem.shape[:-2] == self.lead
                and device.wmem[self.rows].tobytes() == self.content)


def _shareable(step):
    """Whether a product can be made ahead: one matrix for all its vectors, from wmem."""
    return getattr(step, "uniform", False) and step.source == "wmem"


def _amem_writes(plan, cols):
    """For each step of `plan`, the span ``(first, end)`` of amem entries it may write
    (every entry between its lowest and highest write: more than it writes, never
    less), or None when it writes none; worked out once per plan."""
    spans = _SPANS.get(plan)
    if spans is None:
        spans = _SPANS[plan] = [_written_span(run, step, cols) for run, step in plan.steps]
    return spans


_SPANS = weakref.WeakKeyDictionary()
# what `ProductsAhead._members` found, by the run's plan, the product's position, the
# devices and the runs to come, for the same plan, runs and wmem bytes (kept alive here)
_MEMBERS = _Remembered(64 << 20)
# plan -> {(product's position, devices, the next run's program and host amem writes)}
# whose walk found no other product
_FRUITLESS = weakref.WeakKeyDictionary()


def _written_span(run, step, cols):
    if run is Device._product:
        written = [step.written] if step.requantize else []
    elif run is Device._requant:
        written = [_requant_plan(step, cols)[1]] if step.count else []
    elif run is Device._requants:
        written = [entries for _, entries, _ in step.writes]
    elif run is Device._max:
        plan = _max_plan(step)
        written = [] if plan is None else [plan[3]]
    elif run is Device._write_tiles or run is Device._program:
        written = []
    else:
        return (0, 1 << 62)                             # unknown: assume everything
    if not written:
        return None
    spans = [_span(entries) for entries in written]
    return (min(lo for lo, _ in spans), max(hi for _, hi in spans))


def _span(entries):
    """(lowest, highest + 1) of amem entries given as a slice, an index or an array."""
    if isinstance(entries, slice):
        return entries.start, entries.stop
    entries = np.atleast_1d(entries)
    return int(entries.min()), int(entries.max()) + 1


def _shared_vectors(entries):
    """(the entries each vector reads in all of `entries` ((vectors, K) arrays of the
    same vectors), sorted; for each array, where its entries lie in them), or (None,
    None) when a vector reads an entry twice, the vectors' unions differ in length or an
    array's entries lie at different places for different vectors."""
    for array in entries:           # a vector reading an entry twice: its rows would add
        ordered = np.sort(array, axis=1)
        if (ordered[:, 1:] == ordered[:, :-1]).any():
            return None, None
    joined = np.sort(np.concatenate(entries, axis=1), axis=1)
    keep = np.ones(joined.shape, bool)
    keep[:, 1:] = joined[:, 1:] != joined[:, :-1]
    counts = keep.sum(axis=1)
    if (counts != counts[0]).any():
        return None, None
    shared = joined[keep].reshape(len(joined), -1)
    # one sorted run of every vector's entries, each vector's moved past the one before
    shift = (np.arange(len(shared)) * (int(shared.max()) + 1))[:, None]
    row_start = (np.arange(len(shared)) * shared.shape[1])[:, None]
    flat = (shared + shift).ravel()
    placed = []
    for array in entries:
        where = np.searchsorted(flat, array + shift) - row_start
        if (where != where[0]).any():
            return None, None
        placed.append(where[0])
    return shared, placed
