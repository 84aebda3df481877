"""The firmware driver's bus over cocotbext-axi's AXI4-Lite manager, for RTL simulation."""

import logging
import os

from cocotb.clock import Clock
from cocotb.triggers import (ClockCycles, FallingEdge, First, RisingEdge, SimTimeoutError,
                             Timer, with_timeout)
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from firmware.runtime.driver import BusError

__all__ = ["CocotbAxiBus", "DesignClock", "start_accelerator", "accelerator_of"]


class DesignClock:
    """The accelerator's clock as the runner set it up (``TESSERA_CLOCK``, see
    `sim.runner.run_cocotb`):

    - ``gpi``: cocotb's GPI clock on the ``clk`` port, toggled in C.
    - ``switched``: the GPI clock while the host moves data, handed over to the clock
      the runner's wrapper makes in the HDL while the device runs a program
      (`sleep_until`): Verilator then advances it with no call into Python or VPI.
      cocotbext-axi only ever sees the GPI clock (on the HDL's clock a `RisingEdge`
      returns after the edge's register updates, and its handshakes went wrong).
    - ``hdl``: the wrapper's clock throughout (the speed bench only).
    """

    def __init__(self, dut, period_ns):
        self.dut, self.period_ns = dut, period_ns
        self.mode = os.environ.get("TESSERA_CLOCK", "gpi")
        self.signal = dut.hdl_clock if self.mode == "hdl" else dut.clk
        self.gpi = None if self.mode == "hdl" else Clock(dut.clk, period_ns, unit="ns",
                                                          impl="gpi")

    def start(self):
        if self.mode != "gpi":
            self.dut.hdl_clock_run.value = int(self.mode == "hdl")
        if self.gpi is not None:
            self.gpi.start()

    async def sleep_until(self, trigger):
        """Await `trigger` (the device's done line, raced against a timer) with the
        clock in the HDL where the runner wrapped the design. The switches happen while
        both clocks are low, so that neither makes an edge: the GPI clock stops on a
        falling edge, the HDL's is switched on a nanosecond later and rises half a period
        after that; back, the GPI clock restarts on the HDL's falling edge and rises half
        a period after it. Only the simulated time between edges changes, never a cycle."""
        if self.mode != "switched":
            await trigger
            return
        await FallingEdge(self.dut.clk)
        self.gpi.stop()
        await Timer(1, unit="ns")
        self.dut.hdl_clock_run.value = 1
        await trigger
        await FallingEdge(self.dut.hdl_clock)
        self.dut.hdl_clock_run.value = 0
        self.gpi.start(start_high=False)


def accelerator_of(dut):
    """The accelerator itself: `dut`, or the runner's clock wrapper's instance of it."""
    return dut if os.environ.get("TESSERA_CLOCK", "gpi") == "gpi" else dut.wrapped


async def start_accelerator(dut, clock_ns):
    """Start the accelerator's clock (a `DesignClock`), hold reset 5 cycles, and return
    (an AXI4-Lite manager on its ``axi_`` ports, its one-line-per-word log quietened;
    the clock)."""
    clock = DesignClock(dut, clock_ns)
    clock.start()
    dut.rst.value = 1
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axi_"), clock.signal, dut.rst)
    for interface in (master.write_if, master.read_if):
        interface.log.setLevel(logging.WARNING)
    await ClockCycles(clock.signal, 5)
    dut.rst.value = 0
    return master, clock


class CocotbAxiBus:
    """`read`/`write` are AXI4-Lite transactions; `wait_done` sleeps on the done line
    (raced against a timer, on the `DesignClock`'s HDL clock where the runner made one),
    so Python does not wake while the device runs. A burst is
    one cocotbext-axi call (AXI4-Lite has no bursts: the manager issues its words back to
    back)."""

    max_burst = 1024

    def __init__(self, master, done, clock, max_wait_cycles=2_000_000,
                 transaction_timeout_cycles=10_000):
        self.master, self.done, self.clock = master, done, clock
        self.clock_period_ns = clock.period_ns
        self.max_wait_cycles = max_wait_cycles
        self.transaction_timeout_ns = transaction_timeout_cycles * clock.period_ns

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
        await self.clock.sleep_until(First(RisingEdge(self.done),
                                           Timer(cycles * self.clock_period_ns, unit="ns")))
        return bool(self.done.value)
