"""The UART bridge in simulation: framing, error replies, and a network run end to end
over the firmware's serial transport, identical to the golden model."""

import numpy as np
import pytest

from firmware.compiler.pipeline import compile_network
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig, bridge
from rtl.boards import BOARD_CONFIGS
from sim.uart import run_executable_over_uart

CONFIG = AccelConfig(tiles=2, imem_depth=16, wmem_depth=48, amem_depth=32, psum_depth=32,
                     qmem_depth=8)


def test_frames_round_trip_and_checks():
    frame = bridge.encode_request(bridge.Command.WRITE, 0x10, words=[1, 0xFFFF_FFFF])
    # By hand from the format: sync, WRITE, 2 words, address 0x10 and the words little-
    # endian, then 0xEF: the body's bytes sum to 1041 = 17 mod 256, and 17 + 0xEF = 256.
    assert frame == bytes.fromhex("a5 02 02 10000000 01000000 ffffffff ef")
    assert bridge.decode_request(frame) == (2, 0x10, 2, [1, 0xFFFF_FFFF])
    response = bridge.encode_response(bridge.Status.OK, [5])
    assert response == bytes.fromhex("5a 00 01 05000000 fa")     # 0 + 1 + 5 + 0xFA = 256
    assert bridge.decode_response(response) == (bridge.Status.OK, [5])
    with pytest.raises(bridge.FramingError, match="1..255 words, not 0"):
        bridge.encode_request(bridge.Command.READ, 0, 0)
    with pytest.raises(bridge.FramingError, match="word-aligned"):
        bridge.encode_request(bridge.Command.READ, 2, 1)
    damaged = bytearray(frame)
    damaged[4] ^= 1
    with pytest.raises(bridge.FramingError, match="bad checksum"):
        bridge.decode_request(bytes(damaged))


# A small config of its own, and each board's config (rtl/boards.py) as `tessera build`
# makes it: what runs behind the bridge on the board.
UART_CONFIGS = {"small": CONFIG,
                **{board: AccelConfig(**fields) for board, fields in BOARD_CONFIGS.items()}}


@pytest.mark.parametrize("name", UART_CONFIGS)
def test_network_over_uart_equals_golden(small_network, record_property, tmp_path, name):
    config = UART_CONFIGS[name]
    qnet, x_q = small_network(seed=12, samples=10)
    exe = compile_network(qnet, config)
    golden = GoldenTarget().run(exe, x_q)
    run = run_executable_over_uart(exe.save(tmp_path / "mlp.tessera"), x_q,
                                   log=lambda message: None)
    assert run.tests == 1 and run.failed == 0, run.log_tail()
    outputs = np.array(run.results["outputs"])
    record_property("rtl_check", f"UART bridge on {name} ({config.name}): "
                                 f"{run.results['framing_checks']} "
                                 f"framing/error replies checked, {len(x_q)} samples over the serial "
                                 f"transport, outputs and counters "
                                 f"{'identical' if np.array_equal(outputs, golden.outputs) and run.results['counters'] == golden.counters else 'DIFFERENT'}")
    assert np.array_equal(outputs, golden.outputs)
    assert run.results["counters"] == golden.counters
    assert run.results["host_words"] == golden.host_words
