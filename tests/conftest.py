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


def pytest_terminal_summary(terminalreporter):
    lines = [value for outcome in ("passed", "failed")
             for report in terminalreporter.stats.get(outcome, [])
             if report.when == "call"
             for key, value in report.user_properties if key == "rtl_check"]
    if lines:
        terminalreporter.section("RTL vs golden model")
        for line in sorted(lines):
            terminalreporter.write_line(line)
