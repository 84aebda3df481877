"""Compiled executables through the firmware driver on the RTL: outputs, every device
counter and every host transfer count identical to the same file on the golden model."""

import numpy as np
import pytest

from firmware.compiler.pipeline import compile_network
from firmware.compiler.quantize import QuantizedConcat, quantize
from firmware.runtime.run import compare_runs
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig
from sim.check_configs import DEEP_LOSSY
from sim.network import RTLTarget, check_backdoor

# Its own memory sizes, so its build never races the accelerator tests' builds.
CONFIG = AccelConfig(imem_depth=16, wmem_depth=48, amem_depth=32, psum_depth=32, qmem_depth=8)


def check_on_rtl(qnet, x_q, config, record_property, what, adc_calibration=None,
                 fast_load=False):
    """Run the executable on the golden and RTL targets (the RTL's testbench loads it from
    its file; memory images over AXI4-Lite, or with `fast_load` through the backdoor);
    record and assert that they agree field by field (and, when the config is lossless,
    equal the int8 reference), and that `compare_runs` finds no difference."""
    exe = compile_network(qnet, config, adc_calibration=adc_calibration)
    golden = GoldenTarget().run(exe, x_q)
    rtl = RTLTarget(log=lambda message: None, fast_load=fast_load).run(exe, x_q)
    same = (np.array_equal(rtl.outputs, golden.outputs) and rtl.counters == golden.counters
            and rtl.host_words == golden.host_words)
    moved = sum(n for way in golden.host_words.values() for n in way.values())
    record_property("rtl_check", f"{what} on {config.name}"
                                 f"{' (fast load)' if fast_load else ''}: {len(x_q)} samples, "
                                 f"{len(exe.segments)} segment(s), {golden.runs} device runs; "
                                 f"outputs, {len(rtl.counters)} counters and {moved} host words "
                                 f"{'identical' if same else 'DIFFERENT'}")
    if config.is_lossless:
        assert np.array_equal(golden.outputs, qnet.forward(x_q))
    assert np.array_equal(rtl.outputs, golden.outputs)
    assert rtl.counters == golden.counters
    assert rtl.host_words == golden.host_words
    assert rtl.setup_counters == golden.setup_counters
    assert (rtl.batches, rtl.runs) == (golden.batches, golden.runs)
    assert compare_runs(golden, rtl) == []
    return exe, golden


def test_network_on_rtl_equals_golden(small_network, record_property):
    qnet, x_q = small_network(seed=9, samples=20)
    exe, golden = check_on_rtl(qnet, x_q, CONFIG, record_property,
                               "network 32-16-10")
    assert len(exe.segments) == 1 and golden.batches == [8, 8, 4]    # the tail compiled for 4


def test_segmented_network_on_rtl_equals_golden(residual_mlp, record_property):
    """Segments (fc1 and the residual add in parts, the add's skip read back to the host
    and written again) of batches of their own, some in sub-batches, weights and programs
    reloaded every batch."""
    qnet, x_q = residual_mlp(seed=1, samples=7)
    exe, golden = check_on_rtl(qnet, x_q, CONFIG, record_property,
                               "residual MLP 64-48-48(+skip)-10, segmented")
    assert len(exe.segments) >= 3 and golden.batches == [4, 2, 1]
    assert min(exe.segment_batches) < 4 < exe.batch      # a batch of 4 in sub-batches


def test_fast_load_runs_as_the_axi_path_does(residual_mlp, record_property):
    """The backdoor (`--fast-load`) on the segmented network: weights with partial lanes,
    parameters, programs, psum zeros, a skip read back and written again, every batch;
    outputs, counters and host words equal golden's, as the AXI path's are above."""
    qnet, x_q = residual_mlp(seed=1, samples=7)
    check_on_rtl(qnet, x_q, CONFIG, record_property,
                 "residual MLP 64-48-48(+skip)-10, segmented", fast_load=True)


def test_the_backdoor_leaves_every_memory_as_axi_words_do(record_property):
    """Every memory filled over AXI4-Lite, then runs written through the backdoor (wmem's
    leading lanes only, as the driver writes a slot), read back both ways: equal to the
    golden bus given the same writes."""
    run = check_backdoor(CONFIG, log=lambda message: None)
    figures = run.results.get("backdoor", {})
    record_property("rtl_check", f"backdoor on {CONFIG.name}: {figures.get('memories')} "
                                 f"memories, {figures.get('entries')} entries read back, "
                                 f"{figures.get('mismatches')} differ from the golden bus")
    assert run.tests == 1 and not run.failed, run.log_tail()
    assert figures["mismatches"] == 0 and figures["entries"] > 0


# A config of its own again (its own Verilator build).
CNN_CONFIG = AccelConfig(imem_depth=64, wmem_depth=256, amem_depth=128, psum_depth=64, qmem_depth=8)


CNNS = {
    # Host-fed 3x3 conv, a strided 2x2 conv reading the image in place (wide rows), then a
    # max pool of that wide image (its MVMs requantise into the window maxima: on
    # CNN_CONFIG, 3 of them take the maximum).
    "conv3x3-conv2x2/2-maxpool2-dense": [(3, 8, 1), (2, 16, 2), ("maxpool", 2)],
    # A residual add of two on-device images (a 1x1 conv's and the conv 3x3's), then a pool.
    "conv3x3-(conv1x1 + skip)-maxpool2-dense": [(3, 16, 1), ("residual",), ("maxpool", 2)],
    # A padded convolution of an on-device image and an overlapping, padded max pool: both
    # read a copy bordered by MAX runs from constant entries (zero point, -128).
    "conv3x3-conv3x3pad1-maxpool3/2pad1-dense": [(3, 8, 1), (3, 16, 1, 1), ("maxpool", 3, 2, 1)],
}


@pytest.mark.parametrize("name", CNNS)
def test_cnn_on_rtl_equals_golden(record_property, name):
    from firmware.compiler.prune import prune_blocks
    from firmware.frontend.train import init_cnn

    rng = np.random.default_rng(12)
    network = init_cnn((6, 6, 1), CNNS[name], 10, rng)
    network, _ = prune_blocks(network, 0.5, CNN_CONFIG.rows, CNN_CONFIG.cols)
    x = rng.uniform(0, 1, (9, 6, 6, 1))
    qnet = quantize(network, x)
    check_on_rtl(qnet, qnet.input.quantize(x), CNN_CONFIG,
                 record_property, f"CNN {name}, half its blocks pruned")


# DEEP_LOSSY: 16x16 tiles with a 4-bit ADC (7 lossless): the layers convert at their own
# shifts.


def test_calibrated_lossy_cnn_on_rtl_equals_golden(record_property):
    from firmware.frontend.train import init_cnn
    from golden import isa

    rng = np.random.default_rng(3)
    network = init_cnn((6, 6, 1), CNNS["conv3x3-conv2x2/2-maxpool2-dense"], 10, rng)
    # The first conv's weights all near full scale on uniform inputs: its column counts
    # clip at shift 0 in either input encoding, so calibration gives it a larger shift;
    # a ReLU-fed layer takes offset-binary inputs.
    layers = list(network.layers)
    layers[0] = layers[0].with_matrix(rng.uniform(0.8, 1, layers[0].matrix.shape))
    network = network.with_layers(layers)
    x = rng.uniform(0, 1, (9, 6, 6, 1))
    qnet = quantize(network, x)
    exe, _ = check_on_rtl(qnet, qnet.input.quantize(x), DEEP_LOSSY,
                          record_property, "CNN conv3x3-conv2x2/2-maxpool2-dense, ADC calibrated "
                          "per layer", adc_calibration=x)
    ranges = {(isa.decode(words).offset_inputs, isa.decode(words).adc_shift)
              for run in exe.plans[1] for words in run.program
              if isa.decode(words).opcode == isa.Opcode.MVM}
    assert len(ranges) > 1 and any(shift for _, shift in ranges), \
        f"(offset inputs, ADC shift) of every MVM: {ranges}: not exercised"


# Branching graphs from tessera.zoo at 6x6: a residual stage with a projection shortcut
# (stride 2), and three Inception modules (four-way concatenations, a padded 3x3 max pool):
# the first Concat copied by a step (its 5x5 branch has 8 channels, half a block), the
# second costing nothing (whole blocks: the max pool before the third module runs branch
# by branch and its readers read them where they are), the last copied for the global pool.
GRAPHS = {"ResNet, projection shortcut": ("resnet", dict(width=1 / 8, blocks=(1, 1))),
          "Inception, three four-way concats": ("inception", dict(width=1 / 2, modules=3))}


@pytest.mark.parametrize("name", GRAPHS)
def test_branching_graph_on_rtl_equals_golden(record_property, tmp_path, name):
    import onnx

    from firmware.frontend.onnx_io import load_onnx_model
    from tessera.zoo import build

    architecture, options = GRAPHS[name]
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (12, 3, 6, 6)).astype(np.float32)
    model, _ = build(architecture, x, size=6, **options)
    onnx.save(model, tmp_path / "graph.onnx")
    network = load_onnx_model(tmp_path / "graph.onnx").network
    qnet = quantize(network, x.transpose(0, 2, 3, 1))
    x_q = qnet.input.quantize(x[:3].transpose(0, 2, 3, 1))
    exe, _ = check_on_rtl(qnet, x_q, CNN_CONFIG, record_property,
                          f"graph {name}")
    assert any(len(reads) > 1 for reads in qnet.reads)
    if architecture == "inception":
        concats = [layer.name for layer in qnet.layers if isinstance(layer, QuantizedConcat)]
        steps = {name for segment in exe.segments for name in segment.layers}
        assert [name in steps for name in concats] == [True, False, True], (concats, steps)


def test_banded_convolution_on_rtl_equals_golden(record_property):
    """A 12x12 image's host-fed 3x3 convolution (100 patches and 100 output pixels) does not
    fit 128 activation entries: it runs in bands of rows, each band's rows through the host."""
    from firmware.frontend.train import init_cnn

    rng = np.random.default_rng(8)
    network = init_cnn((12, 12, 1), [(3, 4, 1), ("maxpool", 2)], 10, rng)
    x = rng.uniform(0, 1, (8, 12, 12, 1))
    qnet = quantize(network, x)
    exe, _ = check_on_rtl(qnet, qnet.input.quantize(x[:3]), CNN_CONFIG,
                          record_property, "CNN conv3x3 (in bands)-maxpool2-dense")
    assert "bands" in exe.segments[0].limit and exe.segments[1].layers == exe.segments[0].layers


@pytest.mark.slow
def test_cifar_resnet18_on_rtl_equals_golden(record_property, tmp_path):
    """ResNet-18 for 32x32 images (CIFAR stem, four stages of two residual blocks, 1x1
    projection shortcuts where the shape changes, global pool), at 1/8 width, on the
    default config: its 32x32 convolutions run in tiles through the host, its global
    pool in bands of channels; 2 samples on the RTL equal golden, counters and host words
    included (and golden equals the int8 reference)."""
    import onnx

    from firmware.frontend.onnx_io import load_onnx_model
    from tessera.zoo import build

    rng = np.random.default_rng(18)
    x = rng.uniform(0, 1, (8, 3, 32, 32)).astype(np.float32)
    model, _ = build("resnet", x[:4], size=32, width=1 / 8, blocks=(2, 2, 2, 2))
    onnx.save(model, tmp_path / "resnet18.onnx")
    qnet = quantize(load_onnx_model(tmp_path / "resnet18.onnx").network, x.transpose(0, 2, 3, 1))
    x_q = qnet.input.quantize(x[:2].transpose(0, 2, 3, 1))
    exe, _ = check_on_rtl(qnet, x_q, AccelConfig(),
                          record_property, "CIFAR ResNet-18 at 1/8 width")
    projections = [layer for layer, reads in zip(qnet.layers, qnet.reads)
                   if getattr(layer, "kernel", None) == (1, 1) and reads]
    assert len(projections) == 3
    assert any(" band" in image.limit or " tiles of " in image.limit for image in exe.segments)
