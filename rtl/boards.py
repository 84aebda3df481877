"""Board tops: the accelerator behind the UART bridge on a board's USB serial port."""

from amaranth.hdl import Elaboratable, Module

from .uart_top import UartAccelerator

__all__ = ["BoardTop", "BOARDS", "BOARD_CONFIGS", "board_platform"]

# name -> (amaranth-boards module, platform class, family)
BOARDS = {
    "icebreaker": ("amaranth_boards.icebreaker", "ICEBreakerPlatform", "ice40"),
    "ulx3s": ("amaranth_boards.ulx3s", "ULX3S_85F_Platform", "ecp5"),
}

# What `tessera build --board B` builds unless told otherwise (AccelConfig fields over
# AccelConfig's defaults): the largest configs measured to build, with YoWASP's tools on this
# machine, in a bounded time (closing note of issue 14).
# - iCEBreaker: 1 tile of 4x1 with 256-entry memories, 4,640 of 5,280 LCs, 25 of 30 RAMs,
#   7 of 8 DSPs, 16.4 MHz against 12 MHz, built in 0.9 min (2026-12-07). 2 tiles of 4x1
#   (5,128 LCs) and 1 tile of 8x1 (5,053, 29 RAMs) fit too, but `make test` builds this
#   config with the newest YoWASP tools on every run: 88 % leaves room for a release that
#   maps a little worse. Most of the UP5K is fixed logic: the 17 32-bit counters, the
#   CSRs, the UART bridge, the requantiser and the sequencer.
# - ULX3S: the default crossbar, 4 tiles of 16x16, with 4 requantisers for the 16 columns
#   (requant_lanes 4: a REQUANT entry in 4 cycles), an ADC set per 4 columns (adc_share 4)
#   and 256-entry amem and psum: 35,913 LUT4s, 109 of 208 DP16KDs, 19 of 156 MULT18X18Ds,
#   35.8 MHz against 25 MHz, routed in 9.3 min (2026-12-07; 36.9 MHz in 11.5 min that
#   evening, without requantizing MVMs, which need a requantiser per column: with them
#   router2 still had 6,295 wires overused at iteration 15). With 16 requantisers it did
#   not route in 25 min (their 33x32 multipliers were the most congested nets); with 4 but
#   an ADC set per column (50,672 LUT4s) router2 had 2,597 wires overused at 24 min.
BOARD_CONFIGS = {
    "icebreaker": dict(tiles=1, rows=4, cols=1, amem_depth=256, psum_depth=256),
    "ulx3s": dict(tiles=4, rows=16, cols=16, adc_share=4, requant_lanes=4, amem_depth=256,
                  psum_depth=256),
}


def board_platform(board):
    import importlib

    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; boards are {sorted(BOARDS)}")
    module, name, _ = BOARDS[board]
    return getattr(importlib.import_module(module), name)()


class BoardTop(Elaboratable):
    """UART pins to the bridge, `done` to LED 0, the board's default clock as `sync`."""

    def __init__(self, config, baud=115200):
        self.config, self.baud = config, baud

    def elaborate(self, platform):
        m = Module()
        divisor = round(platform.default_clk_frequency / self.baud)
        m.submodules.core = core = UartAccelerator(self.config, divisor)
        uart = platform.request("uart", 0)
        led = platform.request("led", 0)
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx), led.o.eq(core.done)]
        return m
