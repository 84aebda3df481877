"""cocotb testbench: the accelerator's error codes, its recovery by soft reset, and its bus
errors, against golden.device.Device (environment as `sim.accelerator_tb`)."""

import cocotb

from firmware.runtime.driver import BusError
from golden import isa, regmap
from golden.isa import ErrorCode

from .accelerator_tb import AcceleratorBench, compare_runs, load_settings, save_figures
from .isa_coverage import isa_coverage


def error_programs(config):
    """One program per error code, each failing at a known pc."""
    c = config
    bad_opcode = isa.Instruction(opcode=15)
    return {
        ErrorCode.ILLEGAL_OPCODE: [isa.mvm(0, 1, 0, 0), bad_opcode, isa.halt()],
        ErrorCode.BAD_TILE: [isa.program(c.tiles, 0), isa.halt()],
        "BAD_TILE_RANGE": [isa.program(0, 0, tiles=c.tiles + 1), isa.halt()],
        "BAD_TILE_ALIGN": [isa.mvm(1, 1, 0, 0, ktiles=2), isa.halt()],
        "BAD_TILE_MVM": [isa.mvm(0, 1, 0, 0, replicas=1 << c.tiles.bit_length()), isa.halt()],
        ErrorCode.BAD_ADDRESS: [isa.mvm(0, 2, c.amem_depth - 1, 0), isa.halt()],
        "BAD_ADDRESS_K": [isa.mvm(0, 1, c.amem_depth - 1, 0, ktiles=2, k_stride=1), isa.halt()],
        "BAD_ADDRESS_QMEM": [isa.requant(1, 0, 0, c.qmem_depth), isa.halt()],
        "BAD_ADDRESS_MAX_OTHER": [isa.vmax(2, 0, c.amem_depth - 2, 0, other_stride=2), isa.halt()],
        ErrorCode.MISALIGNED: [isa.program(0, 1), isa.halt()],
        # Checked after the tiles and before the addresses, as golden.device does.
        ErrorCode.BAD_SHIFT: [isa.mvm(1, 2, c.amem_depth - 1, 0, adc_shift=c.max_adc_shift + 1),
                              isa.halt()],
        "MISALIGNED_LANE": [isa.requant(1, 0, 0, 0, lane_block=c.rows // c.cols), isa.halt()],
        ErrorCode.PC_OVERFLOW: [isa.mvm(0, 0, 0, 0)] * c.imem_depth,
        ErrorCode.BAD_FLAGS: [isa.Instruction(isa.Opcode.MVM, count=1, dst=8,
                                              flags=isa.FLAG_REQUANTIZE | isa.FLAG_ACCUMULATE),
                              isa.halt()],
        "BAD_ADDRESS_QENTRY": [isa.mvm(0, 1, 0, 8, qentry=c.qmem_depth), isa.halt()],
        ErrorCode.OVERLAP: [isa.mvm(0, 3, 0, 6, src_stride=3, qentry=0), isa.halt()],
    }


def flipped_bit_programs():
    """(label, words) of [I, HALT] for I a legal one-entry instruction of each executing
    opcode with one bit flipped, every bit of the 128 but the opcode's: the decoder must
    accept or refuse each as golden does, and every bit of the instruction word moves."""
    bases = (isa.program(0, 0), isa.mvm(0, 1, 0, 0), isa.requant(1, 0, 0, 0),
             isa.vmax(1, 0, 0, 0))
    bits = 32 * isa.WORDS_PER_INSTRUCTION
    halt = isa.encode(isa.halt())
    for base in bases:
        value = sum(word << (32 * i) for i, word in enumerate(isa.encode(base)))
        for bit in range(isa.FIELDS["opcode"][1], bits):
            flipped = value ^ (1 << bit)
            yield (f"{base.opcode.name} with bit {bit} flipped",
                   [(flipped >> (32 * i)) & 0xFFFF_FFFF for i in range(bits // 32)] + halt)


async def check_flipped_bits(bench):
    """Every program of `flipped_bit_programs` ends as on golden, counters included, and
    the memories match afterwards. Returns (programs, how many golden refused)."""
    programs = refused = 0
    for label, words in flipped_bit_programs():
        expected, actual = await bench.run_words(words)
        problems = compare_runs(expected, actual)
        assert not problems, f"{label}: " + "; ".join(problems)
        programs += 1
        refused += expected.error != ErrorCode.NONE
    for memory in ("psum", "amem"):
        bad = await bench.differing_entries(memory)
        assert not len(bad), f"{memory} entries {bad[:8].tolist()} differ after the flips"
    return programs, refused


@cocotb.test()
async def errors_stop_and_soft_reset_recovers(dut):
    config, _, rng = load_settings()
    bench = AcceleratorBench(dut, config, rng)
    await bench.start()
    seen = {}
    for case, instructions in error_programs(config).items():
        expected, actual = await bench.run_program(instructions)
        problems = compare_runs(expected, actual)
        assert expected.error != ErrorCode.NONE, f"{case}: golden did not fail"
        assert not problems, f"{case}: " + "; ".join(problems)
        seen[str(case)] = actual.error.name
        assert dut.done.value == 1, "done/interrupt line low after an error"
        await bench.soft_reset()
        status = await bench.driver.status()
        assert not (status["error"] or status["done"] or status["busy"]), status
        # The device works again: a good program after the reset matches the golden model.
        await bench.run_matching([isa.program(0, 0), isa.mvm(0, 2, 0, 0, accumulate=True),
                                  isa.requant(2, 0, 2, 0), isa.halt()])
        assert not await bench.compare_entries("amem", [2, 3])
        # A soft reset keeps the tiles' weights (non-volatile cells): an MVM without PROGRAM.
        await bench.soft_reset()
        await bench.run_matching([isa.mvm(0, 2, 0, 0), isa.requant(2, 0, 2, 0), isa.halt()])
        assert not await bench.compare_entries("amem", [2, 3])
    # (OVERLAP needs requantizing MVMs; a config with fewer requantisers refuses their flags)
    assert set(seen.values()) == {e.name for e in ErrorCode if e != ErrorCode.NONE and (
        e != ErrorCode.OVERLAP or config.requantizing_mvms)}, seen

    # Bus errors answer SLVERR and change nothing.
    bus_errors = 0
    for address, operation in [(0x7C, "read"), (regmap.CSR["ID"], "write"),
                               (bench.driver.windows["psum"].address(config.psum_depth - 1)
                                + bench.driver.windows["psum"].entry_stride, "read"),
                               (6 * regmap.WINDOW_SPAN, "read")]:
        try:
            if operation == "read":
                await bench.driver.bus.read(address)
            else:
                await bench.driver.bus.write(address, 0)
        except BusError:
            bus_errors += 1
    assert bus_errors == 4, f"only {bus_errors} of 4 bad accesses answered SLVERR"
    # Memory access while running: start a long program and poke memory immediately.
    all_tiles = 1 << (config.tiles.bit_length() - 1)
    long_program = [isa.mvm(0, 16, 0, 0, 0, 0, replicas=all_tiles)] * (config.imem_depth - 1) \
        + [isa.halt()]
    await bench.driver.load_program(long_program)
    await bench.driver.start()
    try:
        await bench.driver.bus.write(bench.driver.windows["amem"].address(0), 0)
        busy_write_refused = False
    except BusError:
        busy_write_refused = True
    assert busy_write_refused, "a memory write while running was accepted"
    assert await bench.driver.bus.wait_done(1e-3)
    bench.golden.load_program(isa.encode_program(long_program))    # the same writes
    bench.golden.run()
    await bench.soft_reset()
    flipped, refused = await check_flipped_bits(bench)
    save_figures("errors", dict(cases=len(seen), bus_errors=bus_errors,
                                flipped_bit_programs=flipped, flipped_refused=refused))
    save_figures("isa_coverage", isa_coverage())      # so far in this simulation
