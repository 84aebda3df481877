"""The firmware driver's bus over cocotbext-axi's AXI4-Lite manager, for RTL simulation."""

import logging
import os

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, SimTimeoutError, Timer, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from firmware.runtime.driver import BusError

__all__ = ["CocotbAxiBus", "start_accelerator"]


async def start_accelerator(dut, clock_ns):
    """Start the accelerator's clock (cocotb's GPI clock, toggled in C) unless the runner
    wrapped the design in a module that makes it (TESSERA_CLOCK=hdl, for the speed bench
    only: see `sim.runner.run_cocotb`), hold reset 5 cycles, and return an AXI4-Lite
    manager on its ``axi_`` ports, its one-line-per-word log quietened."""
    if os.environ.get("TESSERA_CLOCK") != "hdl":
        Clock(dut.clk, clock_ns, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axi_"), dut.clk, dut.rst)
    for interface in (master.write_if, master.read_if):
        interface.log.setLevel(logging.WARNING)
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    return master


class CocotbAxiBus:
    """`read`/`write` are AXI4-Lite transactions; `wait_done` sleeps on the done line
    (raced against a timer), so Python does not wake while the device runs. A burst is
    one cocotbext-axi call (AXI4-Lite has no bursts: the manager issues its words back to
    back)."""

    max_burst = 1024

    def __init__(self, master, done, clock_period_ns, max_wait_cycles=2_000_000,
                 transaction_timeout_cycles=10_000):
        self.master, self.done = master, done
        self.clock_period_ns = clock_period_ns
        self.max_wait_cycles = max_wait_cycles
        self.transaction_timeout_ns = transaction_timeout_cycles * clock_period_ns

    async def _transaction(self, address, operation, transaction, words=1):
        try:
            return await with_timeout(transaction, self.transaction_timeout_ns * words, "ns")
        except SimTimeoutError:
            raise BusError(address, operation, "no response (timeout)") from None

    async def read(self, address):
        response = await self._transaction(address, "read", self.master.read(address, 4))
        if response.resp != AxiResp.OKAY:
            raise BusError(address, "read", response.resp.name)
        return int.from_bytes(response.data, "little")

    async def write(self, address, value):
        response = await self._transaction(
            address, "write", self.master.write(address, int(value).to_bytes(4, "little")))
        if response.resp != AxiResp.OKAY:
            raise BusError(address, "write", response.resp.name)

    async def read_burst(self, address, count):
        response = await self._transaction(address, "read", self.master.read(address, 4 * count),
                                           count)
        if response.resp != AxiResp.OKAY:
            raise BusError(address, "read", response.resp.name)
        data = bytes(response.data)
        return [int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(count)]

    async def write_burst(self, address, words):
        data = b"".join((int(w) & 0xFFFF_FFFF).to_bytes(4, "little") for w in words)
        response = await self._transaction(address, "write", self.master.write(address, data),
                                           len(words))
        if response.resp != AxiResp.OKAY:
            raise BusError(address, "write", response.resp.name)

    async def wait_done(self, timeout_s):
        """`timeout_s` is simulated time, capped at `max_wait_cycles`."""
        if self.done.value:
            return True
        cycles = min(int(timeout_s * 1e9 / self.clock_period_ns), self.max_wait_cycles)
        await First(RisingEdge(self.done), Timer(cycles * self.clock_period_ns, unit="ns"))
        return bool(self.done.value)
