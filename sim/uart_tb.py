"""cocotb testbench: the accelerator behind the UART bridge, driven by the firmware's
serial transport. Checks the bridge's framing and error replies, then runs a network.

Environment: TESSERA_CONFIG, TESSERA_DIVISOR, TESSERA_EXECUTABLE, TESSERA_INPUTS (.npy),
TESSERA_RESULTS.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles
from cocotbext.uart import UartSink, UartSource

from firmware.runtime.driver import BusError, Driver
from firmware.runtime.executable import load_executable
from firmware.runtime.run import run_executable
from firmware.runtime.transports.serial_bus import SerialBus
from golden import bridge, regmap

from .uart_link import CocotbUartLink
from .runner import CLOCK_NS


async def exchange(link, frame):
    await link.write(frame)
    header = await link.read(3)
    rest = await link.read(4 * header[2] + 1)
    return bridge.decode_response(header + rest)


@cocotb.test()
async def network_over_uart(dut):
    divisor = int(os.environ["TESSERA_DIVISOR"])
    exe = load_executable(os.environ["TESSERA_EXECUTABLE"])
    x_q = np.load(os.environ["TESSERA_INPUTS"], allow_pickle=False)
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    baud = 1e9 / (CLOCK_NS * divisor)
    source, sink = UartSource(dut.rx, baud=baud), UartSink(dut.tx, baud=baud)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 5)
    link = CocotbUartLink(source, sink, timeout_ns=CLOCK_NS * divisor * 10 * 2000)

    # Framing: a burst each way, then each error reply.
    windows = regmap.memory_windows(__import__("golden").AccelConfig.from_json(os.environ["TESSERA_CONFIG"]))
    base = windows["psum"].address(0)
    words = [0x1234_5678, 0xDEAD_BEEF, 7, 0xFFFF_FFFF]
    assert await exchange(link, bridge.encode_request(bridge.Command.WRITE, base, words=words)) \
        == (bridge.Status.OK, [])
    assert await exchange(link, bridge.encode_request(bridge.Command.READ, base, 4)) \
        == (bridge.Status.OK, words)
    # The longest frames (4 x 255 data bytes: the bridge's byte index must reach 1,020).
    longest = [(0x0101_0101 * i) ^ 0xA5A5_0000 for i in range(bridge.MAX_COUNT)]
    assert await exchange(link, bridge.encode_request(bridge.Command.WRITE, base, words=longest)) \
        == (bridge.Status.OK, [])
    assert await exchange(link, bridge.encode_request(bridge.Command.READ, base, bridge.MAX_COUNT)) \
        == (bridge.Status.OK, longest)
    await exchange(link, bridge.encode_request(bridge.Command.WRITE, base, words=words))
    damaged = bytearray(bridge.encode_request(bridge.Command.WRITE, base, words=[0]))
    damaged[-2] ^= 0xFF
    assert await exchange(link, bytes(damaged)) == (bridge.Status.BAD_CHECKSUM, [])
    assert await exchange(link, bridge.encode_request(bridge.Command.READ, base, 1)) \
        == (bridge.Status.OK, words[:1]), "a damaged write changed memory"
    bad_command = bytes([bridge.REQUEST_SYNC, 9, 1, 0, 0, 0, 0])
    bad_command += bytes([bridge.checksum(bad_command[1:])])
    assert await exchange(link, bad_command) == (bridge.Status.BAD_COMMAND, [])
    assert (await exchange(link, bridge.encode_request(bridge.Command.READ, 0x7C, 1)))[0] \
        == bridge.Status.BUS_ERROR
    framing_checks = 8

    driver = Driver(SerialBus(link))
    await driver.discover()
    try:
        await driver.bus.read(0x7C)
        raise AssertionError("SLVERR not reported through the serial transport")
    except BusError:
        pass
    run = await run_executable(driver, exe, x_q)
    with open(os.environ["TESSERA_RESULTS"], "w") as f:
        json.dump({"outputs": run.outputs.tolist(), "counters": run.counters, "runs": run.runs,
                   "host_words": run.host_words,
                   "framing_checks": framing_checks}, f)
