"""The accelerator behind the UART bridge: what a board top wraps around its pins."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden import regmap

from .accelerator import Accelerator
from .uart_bridge import UartBridge

__all__ = ["UartAccelerator"]


class UartAccelerator(wiring.Component):
    """Attributes: rx In(1), tx Out(1), done Out(1)."""

    def __init__(self, config, divisor):
        self.config, self.divisor = config, divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = Accelerator(self.config)
        m.submodules.bridge = bridge = UartBridge(self.divisor, regmap.ADDRESS_BITS)
        wiring.connect(m, bridge.axi, accelerator.axi)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx), self.done.eq(accelerator.done)]
        return m
