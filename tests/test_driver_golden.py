"""The driver over the golden bus: discovery, loading, running, errors, SLVERR cases."""

import asyncio

import numpy as np
import pytest

from firmware import BusError, DeviceError, DeviceTimeout, Driver
from firmware.runtime.transports import GoldenBus
from golden import AccelConfig, isa, regmap
from golden.device import Device
from golden.isa import ErrorCode

CONFIG = AccelConfig(tiles=2, imem_depth=16, wmem_depth=64, amem_depth=32, psum_depth=32,
                     qmem_depth=32)


def run(coroutine):
    return asyncio.run(coroutine)


def make_driver():
    device = Device(CONFIG)
    driver = Driver(GoldenBus(device))
    assert run(driver.discover()) == CONFIG
    return driver, device


def test_driver_runs_a_program_and_reads_back():
    driver, device = make_driver()
    rng = np.random.default_rng(0)
    weights, inputs = rng.integers(-128, 128, (16, 16)), rng.integers(-128, 128, (3, 16))
    lanes = np.zeros((16, CONFIG.tiles * 16), np.int64)
    lanes[:, 16:32] = weights                                        # tile 1's lane
    run(driver.write_entries("wmem", 0, lanes))
    run(driver.write_entries("amem", 4, inputs))
    run(driver.load_program([isa.program(1, 0), isa.mvm(1, 3, 4, 10), isa.halt()]))
    status = run(driver.run())
    assert status.ok and status.counters["mvm_products"] == 3
    assert np.array_equal(run(driver.read_entries("psum", 10, 3)), inputs @ weights)
    assert np.array_equal(device.wmem[:16, 16:32], weights)


def test_driver_reports_device_errors():
    driver, _ = make_driver()
    run(driver.load_program([isa.program(5, 0), isa.halt()]))
    with pytest.raises(DeviceError, match="BAD_TILE at pc 0"):
        run(driver.run())
    status = run(driver.run(raise_on_error=False))
    assert status.error == ErrorCode.BAD_TILE and not status.done
    run(driver.soft_reset())
    assert run(driver.status()) == regmap.decode_status(0)


def test_bad_addresses_raise_bus_errors():
    driver, _ = make_driver()
    with pytest.raises(BusError, match=r"bus read at 0x00007c failed: SLVERR"):
        run(driver.bus.read(0x7C))
    with pytest.raises(BusError, match="bus write at 0x000000 failed"):
        run(driver.bus.write(regmap.CSR["ID"], 1))
    with pytest.raises(IndexError, match=r"psum entries 30..33 outside 0..31"):
        run(driver.read_entries("psum", 30, 4))
    with pytest.raises(KeyError, match="no memory 'dmem'"):
        run(driver.read_entries("dmem", 0, 1))


def test_wrong_device_is_refused():
    class Silent:
        async def read(self, address):
            return 0
    with pytest.raises(BusError, match="is not a Tessera accelerator"):
        run(Driver(Silent()).discover())


def test_wait_for_done_times_out():
    class NeverDone(GoldenBus):
        async def wait_done(self, timeout_s):
            return False
    driver = Driver(NeverDone(Device(CONFIG)))
    run(driver.discover())
    with pytest.raises(DeviceTimeout, match="device not done after 0.5 s"):
        run(driver.run(timeout_s=0.5))


def test_bursts_inside_entries_write_what_words_would():
    """A burst that is not whole entries (part of an entry's lanes, or running past an
    entry's end into the window's padding) leaves the device as the same words written one
    by one would: the other lanes kept, the first entry written and SLVERR at the padding.
    On 3 tiles a wmem entry is 12 words in a 16-word stride."""
    config = AccelConfig(tiles=3, imem_depth=16, wmem_depth=8, amem_depth=32, psum_depth=32,
                         qmem_depth=8)
    window = regmap.memory_windows(config)["wmem"]
    rng = np.random.default_rng(3)
    before = rng.integers(-128, 128, (8, 48))
    words = rng.integers(0, 1 << 32, 14)
    devices = []
    for burst in (True, False):
        device = Device(config)
        device.wmem[:] = before
        bus = GoldenBus(device)
        with pytest.raises(BusError, match=f"0x{window.address(2, 0) + 48:06x}"):
            if burst:           # words 5..11 of entry 2, then 12 and 13: the padding
                run(bus.write_burst(window.address(2, 5), words[:9]))
            else:
                for i, word in enumerate(words[:9]):
                    run(bus.write(window.address(2, 5) + 4 * i, word))
        devices.append(device)
    assert np.array_equal(devices[0].wmem, devices[1].wmem)
    changed = np.flatnonzero((devices[0].wmem != before).any(axis=1))
    assert changed.tolist() == [2]
    assert np.array_equal(devices[0].wmem[2, :20], before[2, :20])    # words 0..4: 20 lanes


class _WordsOnly:
    """The golden bus with only the word interface: the path a board or the RTL takes."""

    def __init__(self, bus):
        self._bus, self.max_burst = bus, bus.max_burst

    def __getattr__(self, name):
        if name in ("store_entries", "load_entries"):
            raise AttributeError(name)
        return getattr(self._bus, name)


@pytest.mark.parametrize("memory, lanes", [("wmem", None), ("wmem", 5), ("amem", None),
                                           ("psum", None), ("qmem", None), ("imem", None)])
def test_lane_values_move_as_the_words_would(memory, lanes):
    """The golden bus's `store_entries` and `load_entries` (lane values, no words) leave
    and read the device as the word bursts do, values out of a lane's range and
    partial-lane writes included, and the driver counts the same words."""
    config = AccelConfig(tiles=3, imem_depth=16, wmem_depth=8, amem_depth=32, psum_depth=32,
                         qmem_depth=8)
    window = regmap.memory_windows(config)[memory]
    rng = np.random.default_rng(4)
    before = rng.integers(-(1 << 40), 1 << 40, (window.depth, window.lanes))
    entries = rng.integers(-(1 << 40), 1 << 40, (5, window.lanes))
    devices, reads, counts = [Device(config), Device(config)], [], []
    for device, wrap in zip(devices, (lambda bus: bus, _WordsOnly)):
        driver = Driver(wrap(GoldenBus(device)))
        run(driver.discover())
        getattr(device, memory)[:] = window.unpack(window.pack(before),
                                                   signed=memory not in ("imem", "qmem"))
        run(driver.write_entries(memory, 2, entries, lanes=lanes))
        reads.append(run(driver.read_entries(memory, 1, 7)))
        counts.append(driver.transfer_counts())
    assert np.array_equal(getattr(devices[0], memory), getattr(devices[1], memory))
    assert np.array_equal(reads[0], reads[1]) and counts[0] == counts[1]
    if lanes is not None:            # lanes 0..7 (two words) written, the others kept
        kept = window.unpack(window.pack(before))
        assert np.array_equal(devices[0].wmem[2:7, 8:], kept[2:7, 8:])


def test_lane_values_outside_a_memory_are_refused():
    driver, _ = make_driver()
    with pytest.raises(IndexError, match="amem entries 30..33 outside 0..31"):
        run(driver.write_entries("amem", 30, np.zeros((4, 16), np.int64)))
    with pytest.raises(BusError, match="psum entries 31..32 outside"):
        run(driver.bus.load_entries("psum", 31, 2))