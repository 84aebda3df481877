"""What a proof observes: the promises of a VALID/READY handshake, as signals it can
assume or assert, and the cycles since reset."""

from amaranth.hdl import Signal

__all__ = ["held", "stalled", "cycles_from_reset"]


def held(m, valid, ready, payload):
    """Whether `valid` and `payload` are as they were when the previous cycle ended
    without a handshake (true when it ended otherwise)."""
    waited = Signal()
    before = [Signal.like(signal) for signal in payload]
    m.d.sync += [waited.eq(valid & ~ready)] + [b.eq(s) for b, s in zip(before, payload)]
    kept = valid
    for b, s in zip(before, payload):
        kept = kept & (s == b)
    return ~waited | kept


def stalled(m, valid, ready, limit):
    """Cycles `valid` has waited for `ready` before this one, counted up to `limit`: a
    partner that answers within `limit` cycles is assumed to keep it below `limit`."""
    cycles = Signal(range(limit + 1))
    with m.If(valid & ~ready):
        m.d.sync += cycles.eq(cycles + (cycles != limit))
    with m.Else():
        m.d.sync += cycles.eq(0)
    return cycles


def cycles_from_reset(m, limit):
    """Cycles since reset, counted up to ``limit + 1``."""
    cycle = Signal(range(limit + 2))
    m.d.sync += cycle.eq(cycle + (cycle <= limit))
    return cycle
