"""A byte link over cocotbext-uart models, for firmware.runtime.transports.SerialBus in simulation."""

from cocotb.triggers import SimTimeoutError, with_timeout

__all__ = ["CocotbUartLink"]


class CocotbUartLink:
    """`write` sends through a UartSource; `read` collects from a UartSink. Timeouts are in
    simulated time (`timeout_ns`), whatever the caller's wall-clock timeout says."""

    def __init__(self, source, sink, timeout_ns):
        self.source, self.sink, self.timeout_ns = source, sink, timeout_ns

    async def write(self, data):
        await self.source.write(data)
        await self.source.wait()

    async def read(self, n, timeout_s=None):
        data = bytearray()
        try:
            while len(data) < n:
                # read() waits for at least one byte and returns at most the count asked
                data += await with_timeout(self.sink.read(1), self.timeout_ns, "ns")
        except SimTimeoutError:
            raise TimeoutError(f"read {len(data)} of {n} bytes from the UART") from None
        return bytes(data)
