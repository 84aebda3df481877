"""The golden device's fused plan against its instruction-by-instruction interpreter.

On an ideal lossless device, `golden.device` runs a program as a plan: PROGRAMs deferred,
weights gathered from wmem, consecutive MVMs on the same weights fused into one product.
The same programs run one instruction at a time (the interpreter the RTL was first
checked against, and that lossy and analog devices still use) must leave every memory,
every tile's weights and every counter the same. A `DeviceStack` runs the same plan for
several devices at once: each must end as that device alone, one instruction at a time,
would."""

import numpy as np
import pytest

from golden import AccelConfig, isa
from golden import device as device_module
from golden.crossbar import crossbar_mvm
from golden.device import Device, DeviceStack, _ProgramPlan
from sim.random_programs import random_memories, random_program

CONFIGS = [AccelConfig(), AccelConfig(tiles=8, rows=16, cols=8, adc_share=2),
           AccelConfig(tiles=4, rows=8, cols=8, cell_bits=4, dac_bits=2)]


def _fusable_program(config, rng, length):
    """Programs the fusion acts on: a PROGRAM of a tile range (one lane each, or a period
    of lanes: replicas on the same weights), then a run of MVMs on those tiles that
    share their weights (new vectors), their inputs (new weights, new outputs) or their
    outputs (new weights, new inputs, accumulating), their writes sometimes overlapping,
    sometimes on tiles programmed before the run; some requantising into the top of amem,
    where a later MVM of the run may read what an earlier one wrote."""
    program = []
    for _ in range(length):
        total = int(rng.integers(0, config.tiles.bit_length()))
        klog = int(rng.integers(0, total + 1))
        nlog = int(rng.integers(0, total - klog + 1))
        ktiles, ngroups, replicas = 1 << klog, 1 << nlog, 1 << (total - klog - nlog)
        first = ktiles * int(rng.integers(0, (config.tiles - (1 << total)) // ktiles + 1))
        lanes = None if rng.random() < 0.5 else ktiles * ngroups

        def reprogram():
            if rng.random() < 0.9:
                image = int(rng.integers(config.wmem_depth // config.rows))
                tiles = (1 << total) if rng.random() < 0.8 else max(1, (1 << total) // 2)
                program.append(isa.program(first, config.rows * image, tiles=tiles,
                                           lanes=lanes))

        reprogram()
        requantize = config.requantizing_mvms and rng.random() < 0.4
        shares = rng.choice(["weights", "inputs"] + ([] if requantize else ["outputs"]))
        offset = bool(rng.random() < 0.5)
        count, dst_stride = int(rng.integers(1, 7)), int(rng.integers(0, 3))
        n_stride = count * max(dst_stride, 1)
        src, dst = int(rng.integers(0, config.amem_depth - 64)), int(rng.integers(0, 64))
        if requantize:          # outputs from amem's top 64 entries, inputs up to them
            dst += config.amem_depth - 64 - n_stride * ngroups
            src = int(rng.integers(dst - 40, dst - count - 1))
        accumulate = bool(rng.random() < 0.5) and not requantize
        qentry, max_into = int(rng.integers(0, 8)), bool(rng.random() < 0.5)
        for _ in range(int(rng.integers(2, 6))):
            program.append(isa.mvm(first, count, src, dst, 1, dst_stride, k_stride=1,
                                   n_stride=n_stride, ktiles=ktiles, ngroups=ngroups,
                                   replicas=replicas, offset_inputs=offset,
                                   accumulate=accumulate,
                                   qentry=qentry if requantize else None,
                                   max_into=max_into and requantize))
            if requantize and rng.random() < 0.5:
                qentry = int(rng.integers(0, 8))
            step = 0 if rng.random() < 0.2 else n_stride * ngroups + int(rng.integers(0, 3))
            if shares == "weights":
                src, dst = src + count, dst + step
                if rng.random() < 0.2:
                    count = int(rng.integers(1, 7))
            elif shares == "inputs":
                reprogram()
                dst += step
            else:
                reprogram()
                src, accumulate = src + int(rng.integers(0, 9)), rng.random() < 0.9
        for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.5 else 0):
            # runs of REQUANTs, some writing lanes another of the run writes
            blocks = config.rows // config.cols
            program.append(isa.requant(
                int(rng.integers(0, 5)), int(rng.integers(0, 64)), int(rng.integers(0, 16)),
                int(rng.integers(0, config.qmem_depth)), int(rng.integers(0, blocks)),
                src_stride=int(rng.integers(0, 3)), dst_stride=int(rng.integers(0, 3))))
    return program + [isa.halt()]


def _run_both(config, memories, program, tile_weights):
    """(devices, results) of `program` fused and one instruction at a time."""
    devices, results = [], []
    for fuse in (True, False):
        device = Device(config)
        for name, array in memories.items():
            getattr(device, name)[:] = array
        device.tile_weights[:] = tile_weights
        device.load_program(isa.encode_program(program))
        plan = _ProgramPlan(device.imem, config, fuse)
        for step, argument in plan.steps:
            step(device, argument)
        devices.append(device)
        results.append(plan)
    return devices, results


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("kind", ["fusable", "random"])
def test_fused_plan_equals_instruction_by_instruction(config, kind):
    rng = np.random.default_rng(hash((config.name, kind)) % 2**32)
    programs, merged = 0, set()
    for _ in range(40):
        memories = random_memories(config, rng)
        tile_weights = rng.integers(-128, 128, (config.tiles, config.rows, config.cols))
        program = (_fusable_program(config, rng, 6) if kind == "fusable"
                   else random_program(config, rng, 30))
        (fast, slow), (plan, reference) = _run_both(config, memories, program, tile_weights)
        for name in ("psum", "amem", "tile_weights"):
            assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
        assert plan.counters == reference.counters and plan.trace == reference.trace
        programs += 1
        merged |= _merges(plan, program)
    assert programs == 40
    if kind == "fusable":           # every kind of merge was exercised
        assert merged == {"weights", "inputs", "outputs", "requants", "requantizing"}


def test_accumulating_past_int32_wraps_as_psum_does():
    """Partial sums within 2**16 of int32's ends, and MVMs (fused: a product of int32 sums
    added in int32) accumulating products of either sign onto them: each entry wraps as
    the 32-bit register does, by hand in Python's integers, and as the interpreter does."""
    config, rng = AccelConfig(), np.random.default_rng(5)
    memories = random_memories(config, rng)
    ends = rng.choice([-(1 << 31), (1 << 31) - (1 << 16)], (config.psum_depth, config.cols))
    memories["psum"] = ends + rng.integers(0, 1 << 16, ends.shape)
    memories["amem"] = np.full_like(memories["amem"], 127)
    memories["wmem"] = rng.choice([-128, 127], memories["wmem"].shape)
    program = [isa.program(0, 0, tiles=4),
               isa.mvm(0, 6, 0, 0, src_stride=4, k_stride=1, ktiles=4, accumulate=True),
               isa.mvm(0, 6, 0, 6, src_stride=4, k_stride=1, ktiles=4, accumulate=True,
                       offset_inputs=True),
               isa.halt()]
    (fast, slow), _ = _run_both(config, memories, program, np.zeros((4, 16, 16), np.int64))
    weights = np.vstack([memories["wmem"][:16, 16 * t:16 * t + 16] for t in range(4)])
    x = memories["amem"][:24].reshape(6, 64).astype(object)
    for first, offset in ((0, 0), (6, 128)):
        total = memories["psum"][first:first + 6].astype(object) + (x + offset).dot(
            weights.astype(object))
        wrapped = (total + (1 << 31)) % (1 << 32) - (1 << 31)
        assert (wrapped != total).any()                         # some entries do wrap
        assert fast.psum[first:first + 6].tolist() == wrapped.tolist()
    assert np.array_equal(fast.psum, slow.psum)


def _merges(plan, program):
    """Which kinds of merge made the plan's products: rows (vectors on the same weights),
    columns (weights on the same inputs) or K blocks (inputs onto the same outputs), and
    whether any of them requantised; and whether REQUANTs ran as one."""
    widest = {"k": max((i.ktiles for i in program if i.opcode == isa.Opcode.MVM), default=1),
              "g": max((i.ngroups for i in program if i.opcode == isa.Opcode.MVM), default=1),
              "n": max((i.count for i in program if i.opcode == isa.Opcode.MVM), default=1)}
    kinds = set()
    for _, step in plan.steps:
        if hasattr(step, "parts"):                      # REQUANTs run as one
            kinds.add("requants")
        if hasattr(step, "entries"):
            vectors, k = step.entries.shape
            merged = ({"weights"} if vectors > widest["n"] else set()) | (
                {"outputs"} if k > widest["k"] else set()) | (
                {"inputs"} if step.addresses.shape[1] > widest["g"] else set())
            kinds |= merged | ({"requantizing"} if merged and step.requantize else set())
    return kinds


def test_run_uses_the_interpreter_on_a_lossy_device():
    """A lossy ADC makes each tile's result its own: no stacked product may stand in."""
    config = AccelConfig(adc_bits=6)
    device = Device(config)
    device.load_program(isa.encode_program([isa.program(0, 0, tiles=4),
                                            isa.mvm(0, 2, 0, 0, k_stride=2, ktiles=4), isa.halt()]))
    rng = np.random.default_rng(1)
    device.wmem[:] = rng.integers(-128, 128, device.wmem.shape)
    device.amem[:] = rng.integers(-128, 128, device.amem.shape)
    assert device.run().done
    expected = sum(crossbar_mvm(config, device.amem[2 * k:2 * k + 2], device.tile_weights[k])
                   for k in range(4))
    assert np.array_equal(device.psum[:2], expected)


def test_remembered_weights_follow_what_wmem_holds():
    """A product reuses the float weights it made while the wmem rows they came from hold
    the same bytes, and only then: a weight changed where the fingerprint does not look
    (the same key) must reach the next run's sums. Expected sums: the int64 product of
    amem and wmem's lanes, by hand."""
    config = AccelConfig()
    program = isa.encode_program([isa.program(0, 0, tiles=4),
                                  isa.mvm(0, 2, 0, 0, k_stride=2, ktiles=4), isa.halt()])
    rng = np.random.default_rng(5)
    wmem = rng.integers(-128, 128, (config.wmem_depth, config.tiles * config.cols))
    amem = rng.integers(-128, 128, (config.amem_depth, config.rows))
    remembered = device_module._REMEMBERED_WEIGHTS.entries

    def sums(weights):
        device = Device(config)
        device.wmem[:], device.amem[:] = weights, amem
        device.load_program(program)
        assert device.run().done
        return device.psum[:2].copy()

    def by_hand(weights):          # tile k holds rows 0..rows-1 of lane k; vector v reads
        C = config.cols            # amem entries 2k + v
        return sum(amem[2 * k:2 * k + 2] @ weights[:config.rows, k * C:(k + 1) * C]
                   for k in range(config.tiles))

    changed = wmem.copy()
    changed[0, 1] = -changed[0, 1] - 1          # byte 1: between fingerprint samples
    assert not np.array_equal(by_hand(changed), by_hand(wmem))
    assert np.array_equal(sums(wmem), by_hand(wmem))
    made = next(reversed(remembered.values()))[1]
    assert np.array_equal(sums(wmem), by_hand(wmem))
    assert next(reversed(remembered.values()))[1] is made           # reused, not made again
    assert np.array_equal(sums(changed), by_hand(changed))
    assert np.array_equal(sums(wmem), by_hand(wmem))


def test_remembered_values_need_equal_content_and_stay_within_the_budget():
    remembered = device_module._Remembered(budget=200)     # an entry holds at most 50
    value = lambda n: np.zeros(n, np.int8)                  # n bytes
    remembered.put("a", b"1234", value(16))                 # 20 bytes held
    assert remembered.get("a", b"1235") is None             # same key, other content
    assert remembered.get("a", b"1234") is not None
    remembered.put("b", b"5678", value(16), also_held=20)   # 40
    remembered.put("c", b"9abc", value(16))                 # 20: 80 in all
    remembered.get("a", b"1234")                            # "b" is now the oldest
    remembered.put("d", b"def0", value(46))                 # 50: 130
    remembered.put("f", b"f000", value(46))                 # 50: 180
    remembered.put("g", b"g000", value(36))                 # 40: past 200, "b" goes
    assert list(remembered.entries) == ["c", "a", "d", "f", "g"]
    assert remembered.held == 180
    remembered.put("e", b"e000", value(47))                 # over a quarter: not kept
    assert "e" not in remembered.entries and remembered.held == 180


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_a_stack_of_devices_ends_as_each_device_alone(config):
    """Three devices with their own amem and psum, sharing weights, program and tiles:
    the stack's one fused run against each device's interpreted run."""
    rng = np.random.default_rng(7)
    for trial in range(12):
        shared = random_memories(config, rng)
        tile_weights = rng.integers(-128, 128, (config.tiles, config.rows, config.cols))
        program = isa.encode_program(_fusable_program(config, rng, 6) if trial % 2
                                     else random_program(config, rng, 30))
        stack = DeviceStack(config, 3)
        stack.wmem[:], stack.qmem[:], stack.tile_weights[:] = \
            shared["wmem"], shared["qmem"], tile_weights
        stack.load_program(program)
        alone = []
        for i in range(3):
            own = random_memories(config, rng)
            stack.amem[i], stack.psum[i] = own["amem"], own["psum"]
            device = Device(config)
            for name, array in {**shared, "amem": own["amem"], "psum": own["psum"]}.items():
                getattr(device, name)[:] = array
            device.tile_weights[:] = tile_weights
            device.load_program(program)
            plan = _ProgramPlan(device.imem, config, fuse=False)
            for step, argument in plan.steps:
                step(device, argument)
            alone.append((device, plan.counters))
        result = stack.run()
        for i, (device, counters) in enumerate(alone):
            assert np.array_equal(stack.amem[i], device.amem), (trial, i)
            assert np.array_equal(stack.psum[i], device.psum), (trial, i)
            assert result.counters == counters
        assert np.array_equal(stack.tile_weights, alone[0][0].tile_weights)


def test_a_stack_refuses_a_lossy_config_and_a_device_it_lacks():
    with pytest.raises(ValueError, match="lossless"):
        DeviceStack(AccelConfig(adc_bits=6), 2)
    stack = DeviceStack(AccelConfig(), 2)
    with pytest.raises(ValueError, match="2 devices, not 3"):
        stack.use(3)
