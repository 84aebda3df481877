"""The host link: how many accelerator cycles the host's words take to move.

The device's ``cycles`` counter covers what the sequencer does between START and HALT;
the words the host writes and reads around each run (weights, parameters, programs,
activations, counters) cross a link whose throughput the accelerator does not set. A
`HostLink` turns a run's host words into cycles of the accelerator clock, reported apart
from the device's cycles and added to them for a total.

Presets, each with its source and derivation:

``axi-dma`` (the default)
    A DMA engine on an AXI4 / AXI4-Stream data path as wide as a word, clocked with the
    accelerator: one 32-bit beat per cycle once a burst runs (AMBA AXI4-Stream, ARM IHI
    0051A, section 2.2: a transfer every cycle TVALID and TREADY are both high; Xilinx
    AXI DMA, PG021, streams one beat per clock). 1 word per cycle, an upper bound.
``uart-ulx3s``, ``uart-icebreaker``
    The UART bridge of `golden.bridge` at 115,200 baud on the board's clock (ULX3S 25 MHz,
    iCEBreaker 12 MHz). A write of ``MAX_COUNT`` words is a frame of 8 + 4 * 255 bytes and
    a 4-byte reply; each byte is 10 bits on the wire (start, 8 data, stop). Cycles per
    word = clock / baud * 10 * (8 + 4 * 255 + 4) / 255.
"""

from dataclasses import dataclass

from .bridge import MAX_COUNT

__all__ = ["HostLink", "HOST_LINKS", "DEFAULT_HOST_LINK", "uart_link"]

UART_BITS_PER_BYTE = 10         # start, 8 data bits, stop
REQUEST_OVERHEAD = 8            # sync, command, count, address[4], checksum
RESPONSE_BYTES = 4              # sync, status, count, checksum (a write's reply)


@dataclass(frozen=True)
class HostLink:
    name: str
    cycles_per_word: float       # accelerator cycles one 32-bit word takes, in bursts
    basis: str                   # where the figure comes from

    def cycles(self, words):
        return words * self.cycles_per_word

    def describe(self):
        unit = "cycle" if self.cycles_per_word == 1 else "cycles"
        return f"{self.name}: {self.cycles_per_word:g} {unit} a word, {self.basis}"


def uart_link(name, baud, clock_hz):
    """The UART bridge at `baud` on a `clock_hz` accelerator clock, in full bursts."""
    frame_bytes = REQUEST_OVERHEAD + 4 * MAX_COUNT + RESPONSE_BYTES
    cycles = clock_hz / baud * UART_BITS_PER_BYTE * frame_bytes / MAX_COUNT
    return HostLink(name, cycles, f"UART bridge at {baud} baud, {clock_hz / 1e6:g} MHz clock, "
                                  f"{frame_bytes}-byte frames of {MAX_COUNT} words")


HOST_LINKS = {
    "axi-dma": HostLink("axi-dma", 1.0, "AXI4-Stream DMA, one 32-bit beat a cycle "
                                        "(ARM IHI 0051A; Xilinx PG021)"),
    "uart-ulx3s": uart_link("uart-ulx3s", 115_200, 25e6),
    "uart-icebreaker": uart_link("uart-icebreaker", 115_200, 12e6),
}
DEFAULT_HOST_LINK = "axi-dma"
