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
# DESIGN.md's defaults). Measured with instruction set 1, the UP5K held eight 8x1 tiles
# with 256-entry memories: 5,076 of 5,280 LCs, 24 of 30 RAMs, all 8 DSPs, 18.9 MHz against
# 12 MHz. Instruction set 2's MVM engines cost about 500 LCs more (one 2x1 tile now takes
# 5,234), so this config no longer fits; it is re-measured with the board work.
BOARD_CONFIGS = {
    "icebreaker": dict(tiles=8, rows=8, cols=1, amem_depth=256, psum_depth=256),
    "ulx3s": {},
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
