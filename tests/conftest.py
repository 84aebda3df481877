"""Shared fixtures, and a summary of what the RTL checks counted (also under xdist)."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_network():
    """A quantised 32-16-10 network and its int8 inputs, as the RTL network tests run it."""
    from firmware.frontend.network import Dense, Network
    from firmware.compiler.quantize import quantize

    def build(seed, samples):
        rng = np.random.default_rng(seed)
        network = Network((Dense("hidden", rng.normal(0, 0.3, (32, 16)), rng.normal(0, 0.1, 16)),
                           Dense("out", rng.normal(0, 0.3, (16, 10)), np.zeros(10), relu=False)))
        x = rng.uniform(0, 1, (samples, 32))
        qnet = quantize(network, x)
        return qnet, qnet.input.quantize(x)
    return build


@pytest.fixture
def residual_mlp():
    """A quantised 64-48-48(+skip from the first layer)-10 network and its int8 inputs."""
    from firmware.frontend.network import Add, Dense, Network
    from firmware.compiler.quantize import quantize

    def build(seed, samples):
        rng = np.random.default_rng(seed)
        network = Network((Dense("fc0", rng.normal(0, 0.2, (64, 48)), rng.normal(0, 0.1, 48)),
                           Dense("fc1", rng.normal(0, 0.2, (48, 48)), rng.normal(0, 0.1, 48)),
                           Add("res", ("fc1", "fc0"), relu=True),
                           Dense("out", rng.normal(0, 0.3, (48, 10)), np.zeros(10), relu=False)))
        x = rng.uniform(0, 1, (samples, 64))
        qnet = quantize(network, x)
        return qnet, qnet.input.quantize(x)
    return build


@pytest.fixture(scope="session")
def sub_batched_mlp():
    """A float MLP 128-48-10 (weights from `rng`) and a config on which its first layer
    runs a batch in sub-batches: wmem's two slots cut it (8 x 3 blocks) into three chunks,
    and amem's 64 entries hold five of their samples (8 input and 3 output entries each)
    but 16 of the last layer's (3 and 1)."""
    from firmware.frontend.network import Dense, Network
    from golden import AccelConfig

    def build(rng):
        return Network((Dense("wide", rng.normal(0, 0.2, (128, 48)), rng.normal(0, 0.1, 48)),
                        Dense("out", rng.normal(0, 0.3, (48, 10)), np.zeros(10), relu=False)))
    return build, AccelConfig(wmem_depth=32, amem_depth=64)


def pytest_terminal_summary(terminalreporter):
    lines = [value for outcome in ("passed", "failed")
             for report in terminalreporter.stats.get(outcome, [])
             if report.when == "call"
             for key, value in report.user_properties if key in ("rtl_check", "isa_coverage")]
    if lines:
        terminalreporter.section("RTL vs golden model")
        for line in sorted(lines):
            terminalreporter.write_line(line)


class FakeBoard:
    """A board at the far end of a pseudo-terminal: the UART bridge's framing
    (golden.bridge) decoded byte by byte and served by a golden device model, so that
    `BoardTarget` and `tessera run --backend board` run their whole path, pyserial
    included, without hardware."""

    def __init__(self, config):
        import os
        import threading

        from firmware.runtime.transports import GoldenBus
        from golden.device import Device

        self.bus = GoldenBus(Device(config))
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        self.frames = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _read(self, n):
        import os
        data = b""
        while len(data) < n:
            data += os.read(self.master, n - len(data))
        return data

    def _serve(self):
        import asyncio
        import os

        from golden import bridge

        loop = asyncio.new_event_loop()
        while True:
            header = self._read(7)                   # sync, command, count, address
            count = header[2]
            rest = self._read(4 * count + 1 if header[1] == bridge.Command.WRITE else 1)
            command, address, count, words = bridge.decode_request(header + rest)
            if command == bridge.Command.WRITE:
                loop.run_until_complete(self.bus.write_burst(address, words))
                reply = bridge.encode_response(bridge.Status.OK)
            else:
                words = loop.run_until_complete(self.bus.read_burst(address, count))
                reply = bridge.encode_response(bridge.Status.OK, words)
            os.write(self.master, reply)
            self.frames += 1


@pytest.fixture
def fake_board():
    """Make a `FakeBoard` of a config; its port is a path `tessera run --port` takes."""
    return FakeBoard
