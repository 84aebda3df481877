"""The driver's bus over a serial link to the UART bridge (framing: golden.bridge)."""

import asyncio
import time

from golden import bridge, regmap

from ..driver import BusError

__all__ = ["SerialBus", "PySerialLink"]


class SerialBus:
    """Word reads and writes as bridge frames over `link`, an object with
    ``async write(data: bytes)`` and ``async read(n: int, timeout_s: float) -> bytes``
    (raising TimeoutError). There is no interrupt line: `wait_done` polls STATUS. A
    burst is one frame of up to `bridge.MAX_COUNT` words."""

    max_burst = bridge.MAX_COUNT

    def __init__(self, link, timeout_s=1.0, poll_interval_s=0.0):
        self.link, self.timeout_s, self.poll_interval_s = link, timeout_s, poll_interval_s

    async def _transaction(self, frame, address, operation):
        await self.link.write(frame)
        try:
            header = await self.link.read(3, self.timeout_s)
            if header[0] != bridge.RESPONSE_SYNC:
                raise BusError(address, operation, f"bad response sync byte 0x{header[0]:02x}")
            rest = await self.link.read(4 * header[2] + 1, self.timeout_s)
        except TimeoutError:
            raise BusError(address, operation, "no response from the bridge (timeout)") from None
        try:
            status, words = bridge.decode_response(header + rest)
        except bridge.FramingError as error:
            raise BusError(address, operation, str(error)) from None
        if status != bridge.Status.OK:
            raise BusError(address, operation, status.name)
        return words

    async def read(self, address):
        words = await self._transaction(bridge.encode_request(bridge.Command.READ, address, 1),
                                        address, "read")
        return words[0]

    async def write(self, address, value):
        await self._transaction(bridge.encode_request(bridge.Command.WRITE, address, words=[value]),
                                address, "write")

    async def read_burst(self, address, count):
        words = []
        for first in range(0, count, self.max_burst):
            n = min(self.max_burst, count - first)
            at = address + 4 * first
            words += await self._transaction(bridge.encode_request(bridge.Command.READ, at, n),
                                             at, "read")
        return words

    async def write_burst(self, address, words):
        for first in range(0, len(words), self.max_burst):
            at = address + 4 * first
            await self._transaction(bridge.encode_request(
                bridge.Command.WRITE, at, words=words[first:first + self.max_burst]), at, "write")

    async def wait_done(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while True:
            status = await self.read(regmap.CSR["STATUS"])
            if status & (regmap.STATUS_DONE | regmap.STATUS_ERROR):
                return True
            if time.monotonic() >= deadline:
                return False
            if self.poll_interval_s:      # else the STATUS read's round trip paces the polls
                await asyncio.sleep(self.poll_interval_s)


class PySerialLink:
    """A board's serial port through pyserial (blocking calls moved off the event loop)."""

    def __init__(self, port, baudrate=115200):
        import serial      # pyserial; only a host that talks to a board needs it
        self.port = serial.Serial(port, baudrate, timeout=0)

    async def write(self, data):
        await asyncio.to_thread(self.port.write, data)

    async def read(self, n, timeout_s):
        def blocking_read():
            self.port.timeout = timeout_s
            return self.port.read(n)
        data = await asyncio.to_thread(blocking_read)
        if len(data) < n:
            raise TimeoutError(f"read {len(data)} of {n} bytes in {timeout_s} s")
        return data

    def close(self):
        self.port.close()
