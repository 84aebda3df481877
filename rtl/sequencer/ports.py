"""The memory ports the sequencer and its units drive, sized once for a config.

A unit drives its ports only while it runs (zero otherwise), so the sequencer merges its
units' ports with an OR."""

from amaranth.lib.wiring import In, Out

from golden.interface import memory_windows

from ..layouts import instruction_layout

__all__ = ["address_width", "tile_widths", "memory_ports", "instruction_layout"]


def address_width(depth):
    return max(1, (depth - 1).bit_length())


def tile_widths(config):
    """Bits of a tile index or count (`tiles` itself fits), and of the log2 of a legal
    tile count."""
    tile_bits = address_width(config.tiles) + 1
    return tile_bits, address_width(tile_bits + 1)


def memory_ports(config, *names):
    """Signature members of the named ports: a read port `mem` (``mem_addr``, ``mem_en``
    out, ``mem_data`` in a cycle after), a second read port `mem2` (``mem2_addr`` ...)
    or a write port `mem_write` (``mem_waddr``, ``mem_wen`` (a bit per lane for amem),
    ``mem_wdata``; psum's also, with requantizing MVMs, ``psum_forward``: this cycle's
    ``psum_wdata`` is read back
    as ``psum_data`` from the next cycle, as if an entry written now had been read, without
    writing it)."""
    c = config
    entry_bits = {name: window.lanes * window.lane_bits
                  for name, window in memory_windows(config).items()}
    members = {}
    for name in names:
        memory = name.removesuffix("_write").removesuffix("2")
        addr = address_width(getattr(c, f"{memory}_depth"))
        if name.endswith("_write"):
            members.update({f"{memory}_waddr": Out(addr),
                            f"{memory}_wen": Out(c.rows if memory == "amem" else 1),
                            f"{memory}_wdata": Out(entry_bits[memory])})
            if memory == "psum" and c.requantizing_mvms:
                members["psum_forward"] = Out(1)
        else:
            members.update({f"{name}_addr": Out(addr), f"{name}_en": Out(1),
                            f"{name}_data": In(entry_bits[memory])})
    return members
