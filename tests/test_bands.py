"""Spatial tiling: a convolution or max pool whose tensors do not fit the activation
memory for one sample runs in bands of its output rows, each band's input rows (its
windows' halo included) written by the host and its output rows read back."""

import numpy as np
import pytest

from firmware.compiler.pipeline import compile_network
from firmware.runtime.executable import ExecutableError, load_executable
from firmware.frontend.network import Conv2d, Dense, Flatten, MaxPool2d, Network
from firmware.compiler.quantize import quantize
from firmware.runtime.targets import GoldenTarget
from golden import AccelConfig

SMALL = AccelConfig(amem_depth=128, psum_depth=128)


def banded(exe):
    """{layer name: [segment indices]} of the segments that run bands."""
    found = {}
    for i, image in enumerate(exe.segments):
        if " band" in image.limit or " tiles of " in image.limit:
            found.setdefault(image.layers[0], []).append(i)
    return found


def tile_shape(limit, out_h, out_w):
    """(band heights, tile width) that a tiled step's `limit` names."""
    import re
    found = re.search(r"tiles of up to (\d+) rows x (\d+) columns", limit)
    height, width = (map(int, found.groups()) if found else
                     (int(re.search(r"bands? of (?:up to )?(\d+) output rows", limit).group(1)),
                      out_w))
    return [min(height, out_h - y) for y in range(0, out_h, height)], width


def conv3x3_writes(limit, out_h, out_w):
    """By hand: the input entries (one a pixel) a stride-1 3x3 convolution's tiles write:
    a tile of h x w outputs reads (h + 2) x (w + 2) pixels; the last column tile is moved
    left to keep the width."""
    heights, width = tile_shape(limit, out_h, out_w)
    return sum((h + 2) * (width + 2) for h in heights) * -(-out_w // width)


def image_network(rng):
    """12x12x1 -> conv 1x1 (4 ch, host-fed: 144 patches + 144 output entries) -> conv 3x3
    (10x10, rows of pitch 12) -> max pool 2 -> dense: on 128 activation entries the
    convolutions and the pool run in bands."""
    return Network((Conv2d("c1", rng.normal(0, 1, (1, 1, 1, 4)), rng.normal(0, 0.1, 4)),
                    Conv2d("c2", rng.normal(0, 0.4, (3, 3, 4, 8)), rng.normal(0, 0.1, 8)),
                    MaxPool2d("pool", 2), Flatten("flat"),
                    Dense("out", rng.normal(0, 0.2, (200, 5)), np.zeros(5), relu=False)),
                   (12, 12, 1))


def test_convolutions_too_big_for_amem_run_in_bands_equal_to_the_int8_reference():
    rng = np.random.default_rng(1)
    qnet = quantize(image_network(rng), rng.uniform(0, 1, (16, 12, 12, 1)))
    exe = compile_network(qnet, SMALL)
    bands = banded(exe)
    # (the pool's whole input, compacted to its 10 valid columns, then fits at once)
    assert set(bands) == {"c1", "c2", "pool"} and len(bands["c1"]) > 1 and len(bands["c2"]) > 1
    x_q = qnet.input.quantize(rng.uniform(0, 1, (5, 12, 12, 1)))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))
    runs = exe.plans[1]
    # c1 is host-fed: its 144 patches (one entry each) are written once, its 144 output
    # pixels read once, whatever the bands.
    assert sum(t.entries for i in bands["c1"] for t in runs[i].writes) == 144
    assert sum(t.entries for i in bands["c1"] for t in runs[i].reads) == 144
    # c2 (3x3, stride 1, 10 x 10 outputs): each tile's input with its halo
    limit = exe.segments[bands["c2"][0]].limit
    assert sum(t.entries for i in bands["c2"] for t in runs[i].writes) == \
        conv3x3_writes(limit, 10, 10)
    # later bands share the first band's weights: stored and loaded once
    assert all(exe.segments[i].images_from == bands["c2"][0] for i in bands["c2"][1:])


def test_the_tallest_band_that_fits_is_chosen():
    """Fewer bands move fewer halo rows; the compiler takes the tallest that fits, so one
    row more would not fit."""
    from firmware.compiler.pipeline import map_network
    from firmware.compiler.mapper import band_step
    rng = np.random.default_rng(2)
    qnet = quantize(image_network(rng), rng.uniform(0, 1, (16, 12, 12, 1)))
    network_map = map_network(qnet, SMALL)
    c2 = [seg for seg in network_map.segments if seg.band is not None
          and network_map.steps[seg.steps[0]].name == "c2"]
    height = c2[0].band.rows[1] - c2[0].band.rows[0]
    taller = band_step(network_map, c2[0].steps[0], (0, height + 1))
    # one sample's band input and output entries beyond 128 (a constant-free segment)
    inputs = sum(window.entries for window in taller.inputs)
    assert inputs + taller.output_entries > SMALL.amem_depth \
        or taller.step.positions * taller.step.n_blocks > SMALL.psum_depth


def test_a_max_pool_too_big_for_amem_runs_in_bands(tmp_path):
    rng = np.random.default_rng(3)
    # 16x16x16 -> 3x3/1 max pool of 14x14: 256 + 196 entries (16 channels a pixel), beyond 256
    network = Network((Conv2d("c", rng.normal(0, 1, (1, 1, 1, 16)), rng.normal(0, 0.1, 16)),
                       MaxPool2d("pool", 3, 1), Flatten("flat"),
                       Dense("out", rng.normal(0, 0.1, (14 * 14 * 16, 3)), np.zeros(3),
                             relu=False)), (16, 16, 1))
    qnet = quantize(network, rng.uniform(0, 1, (8, 16, 16, 1)))
    config = AccelConfig(amem_depth=256, psum_depth=256, wmem_depth=4096, qmem_depth=64)
    exe = compile_network(qnet, config)
    assert "pool" in banded(exe)
    x_q = qnet.input.quantize(rng.uniform(0, 1, (3, 16, 16, 1)))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))
    path = exe.save(tmp_path / "bands.tessera")
    assert np.array_equal(GoldenTarget().run(load_executable(path), x_q).outputs, qnet.forward(x_q))


def test_a_band_sharing_a_later_segments_images_is_refused(tmp_path):
    from file_edits import edited_copy
    rng = np.random.default_rng(1)
    qnet = quantize(image_network(rng), rng.uniform(0, 1, (16, 12, 12, 1)))
    path = compile_network(qnet, SMALL).save(tmp_path / "bands.tessera")

    def forward(manifest):
        manifest["segments"][1]["images_from"] = 3
    with pytest.raises(ExecutableError, match=r"segments\[1\]\.images_from: must be an earlier "
                                              r"segment, not 3"):
        load_executable(edited_copy(path, tmp_path / "edited.tessera", manifest_edit=forward))


@pytest.mark.parametrize("architecture, options", [
    ("resnet", dict(width=1 / 8, blocks=(1, 1))),
    ("inception", dict(width=1 / 8, modules=2)),
    ("densenet", dict(width=0.5, layers=(2, 1)))])
def test_branching_models_at_16px_on_256_entries_run_every_kind_of_step_in_bands(
        tmp_path, architecture, options):
    """Borders, compactions, adds and concatenations of images run in bands too: on 256
    activation entries, 16x16 ResNet, Inception and DenseNet stages need them all."""
    onnx = pytest.importorskip("onnx")
    from firmware.compiler.pipeline import map_network
    from firmware.frontend.onnx_io import load_onnx_model
    from tessera.zoo import build
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 3, 16, 16)).astype(np.float32)
    model, _ = build(architecture, x, size=16, **options)
    onnx.save(model, tmp_path / "model.onnx")
    qnet = quantize(load_onnx_model(tmp_path / "model.onnx").network, x.transpose(0, 2, 3, 1))
    config = AccelConfig(amem_depth=256, psum_depth=256)
    network_map = map_network(qnet, config)
    tiled = [network_map.steps[seg.steps[0]] for seg in network_map.segments if seg.band]
    kinds = {"merge" if getattr(step, "source_groups", None) else type(step).__name__
             for step in tiled}
    assert {"LayerMap", "PadMap", "merge"} <= kinds, kinds
    x_q = qnet.input.quantize(x[:2].transpose(0, 2, 3, 1))
    assert np.array_equal(GoldenTarget().run(compile_network(qnet, config), x_q).outputs,
                          qnet.forward(x_q))


def test_a_layer_too_big_in_weights_and_tensors_runs_in_bands_of_chunks():
    """A padded 3x3 convolution of 32 to 32 channels on 12x12: 36 weight blocks in 9 jobs
    beyond wmem's 4 slots, and its image beyond 256 activation entries. Each band runs in the
    same chunks of its jobs (partial sums stay on chip between a band's chunks)."""
    from firmware.compiler.pipeline import map_network
    from firmware.compiler.mapper import band_step
    rng = np.random.default_rng(9)
    network = Network((Conv2d("a", rng.normal(0, 0.5, (1, 1, 1, 32)), rng.normal(0, .1, 32)),
                       Conv2d("b", rng.normal(0, 0.1, (3, 3, 32, 32)), rng.normal(0, .1, 32),
                              pads=(1, 1, 1, 1)),
                       MaxPool2d("pool", 2), Flatten("flat"),
                       Dense("out", rng.normal(0, 0.1, (6 * 6 * 32, 3)), np.zeros(3),
                             relu=False)), (12, 12, 1))
    qnet = quantize(network, rng.uniform(0, 1, (8, 12, 12, 1)))
    config = AccelConfig(amem_depth=256, psum_depth=256, wmem_depth=64)
    network_map = map_network(qnet, config)
    b = [seg for seg in network_map.segments if network_map.steps[seg.steps[0]].name == "b"]
    assert b[0].band.index[1] > 1 and b[0].part[1] > 1
    assert len(b) == b[0].band.index[1] * b[0].part[1]
    # a band of the border step's first row alone would read no input: only the fill
    border = next(s for s, step in enumerate(network_map.steps) if step.name == "b.pad")
    first = band_step(network_map, border, (0, 1))
    assert first.inputs == () and first.step.in_h == 0 and first.step.out_h == 1
    exe = compile_network(qnet, config)
    x_q = qnet.input.quantize(rng.uniform(0, 1, (2, 12, 12, 1)))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))


def test_a_row_too_wide_for_amem_runs_in_tiles_of_columns_moving_the_halo_by_hand():
    rng = np.random.default_rng(4)
    # 3x3 over rows of 40 pixels of one entry: one output row reads 3 x 40 entries, beyond 64
    network = Network((Conv2d("a", rng.normal(size=(1, 1, 1, 4)), np.zeros(4)),
                       Conv2d("b", rng.normal(size=(3, 3, 4, 4)), np.zeros(4)),
                       MaxPool2d("pool", 2), Flatten("flat"),
                       Dense("out", rng.normal(size=(19 * 4, 2)), np.zeros(2))), (4, 40, 1))
    qnet = quantize(network, rng.uniform(0, 1, (4, 4, 40, 1)))
    exe = compile_network(qnet, AccelConfig(amem_depth=64, psum_depth=64))
    x_q = qnet.input.quantize(rng.uniform(0, 1, (3, 4, 40, 1)))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))
    tiles = banded(exe)["b"]
    limit = exe.segments[tiles[0]].limit
    heights, width = tile_shape(limit, 2, 38)
    assert width < 38 and len(tiles) == len(heights) * -(-38 // width)
    # b makes 2 x 38 outputs
    assert sum(t.entries for i in tiles for t in exe.plans[1][i].writes) == \
        conv3x3_writes(limit, 2, 38)


def test_a_pixel_too_big_for_any_tile_is_refused_saying_what_it_needs():
    from firmware.compiler.pipeline import map_network
    from firmware.compiler.mapper import MappingError
    rng = np.random.default_rng(4)
    # 3x3 over 64 channels (4 entries a pixel): one output pixel reads 9 x 4 entries
    network = Network((Conv2d("a", rng.normal(size=(1, 1, 1, 64)), np.zeros(64)),
                       Conv2d("b", rng.normal(size=(3, 3, 64, 4)), np.zeros(4)),
                       Flatten("flat"), Dense("out", rng.normal(size=(4 * 8 * 4, 2)), np.zeros(2))),
                      (6, 10, 1))
    qnet = quantize(network, rng.uniform(0, 1, (4, 6, 10, 1)))
    with pytest.raises(MappingError, match=r"layer 'b': even one output pixel's tile needs \d+ "
                                           r"amem entries, beyond amem_depth 32 \(tiles split "
                                           r"rows and columns, not channels\): give --amem-depth "
                                           r"64 or fewer channels"):
        map_network(qnet, AccelConfig(amem_depth=32, psum_depth=64))


@pytest.mark.parametrize("wmem_depth", [256, 64])
def test_a_global_pool_whose_pixel_window_does_not_fit_runs_in_bands_of_its_channels(wmem_depth):
    """A 6x6 global average pool of 64 channels (4 entries a pixel) reads 144 entries at
    once, beyond 64: each band of its output channels reads just those channels' entries
    of every pixel (a piece a pixel), and the outputs equal the int8 reference. On 64
    wmem entries each band's 36 weight blocks run in chunks too."""
    from firmware.frontend.network import AvgPool2d
    rng = np.random.default_rng(5)
    network = Network((Conv2d("a", rng.normal(size=(1, 1, 1, 64)), rng.normal(0, 0.1, 64)),
                       AvgPool2d("gap", 6), Flatten("flat"),
                       Dense("out", rng.normal(size=(64, 3)), np.zeros(3), relu=False)), (6, 6, 1))
    qnet = quantize(network, rng.uniform(0, 1, (8, 6, 6, 1)))
    exe = compile_network(qnet, AccelConfig(amem_depth=64, psum_depth=64, wmem_depth=wmem_depth))
    x_q = qnet.input.quantize(rng.uniform(0, 1, (3, 6, 6, 1)))
    assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))
    tiles = banded(exe)["gap"]
    limit = exe.segments[tiles[0]].limit
    assert "channels" in limit and len(tiles) > 1
    assert (exe.segments[tiles[0]].part is not None) == (wmem_depth == 64)
    # By hand: a band of b entries a pixel writes 36 * b entries, so all bands together
    # write each of the 36 x 4 input entries once, and read back the 4 output entries once.
    runs = exe.plans[1]
    assert sum(t.entries for i in tiles for t in runs[i].writes) == 36 * 4
    assert sum(t.entries for i in tiles for t in runs[i].reads) == 4


def test_banded_layers_convert_at_their_calibrated_adc_ranges():
    """On a lossy ADC, a layer run in bands converts at the range calibrated for it: its
    outputs equal those of the same network compiled with room for it whole."""
    rng = np.random.default_rng(6)
    qnet = quantize(image_network(rng), rng.uniform(0, 1, (16, 12, 12, 1)))
    calibration = rng.uniform(0, 1, (8, 12, 12, 1))
    whole = compile_network(qnet, AccelConfig(adc_bits=4, amem_depth=1024, psum_depth=1024),
                            adc_calibration=calibration)
    tiled = compile_network(qnet, AccelConfig(adc_bits=4, amem_depth=128, psum_depth=128),
                            adc_calibration=calibration)
    assert not banded(whole) and "c2" in banded(tiled)
    # calibrated away from the default (two's-complement inputs at shift 0)
    assert any(line.strip().startswith("c2: offset-binary") for line in tiled.summary)
    x_q = qnet.input.quantize(rng.uniform(0, 1, (4, 12, 12, 1)))
    assert np.array_equal(GoldenTarget().run(tiled, x_q).outputs, GoldenTarget().run(whole, x_q).outputs)


def test_a_dense_layer_whose_input_does_not_fit_runs_in_bands_of_its_k_blocks():
    """Flatten of 8x8x16 (64 entries) into a Dense of 40 outputs does not fit 48 entries:
    the Dense runs in bands of its K blocks, each band's input entries written once, the
    partial sums zeroed by the host before the first band and kept in psum between them,
    the output read after the last. Outputs equal the int8 reference."""
    rng = np.random.default_rng(7)
    network = Network((Conv2d("c", rng.normal(size=(1, 1, 1, 16)), rng.normal(0, 0.1, 16)),
                       Flatten("flat"),
                       Dense("fc", rng.normal(0, 0.1, (1024, 40)), np.zeros(40), relu=False)),
                      (8, 8, 1))
    qnet = quantize(network, rng.uniform(0, 1, (8, 8, 8, 1)))
    for wmem_depth in (1024, 64):            # the bands' weights whole, then in chunks
        exe = compile_network(qnet, AccelConfig(amem_depth=48, psum_depth=64,
                                                wmem_depth=wmem_depth))
        x_q = qnet.input.quantize(rng.uniform(0, 1, (3, 8, 8, 1)))
        assert np.array_equal(GoldenTarget().run(exe, x_q).outputs, qnet.forward(x_q))
        bands = [i for i, image in enumerate(exe.segments)
                 if image.layers == ["fc"] and "input blocks" in image.limit]
        assert len(bands) > 1
        runs = exe.plans[1]
        assert sum(t.entries for i in bands for t in runs[i].writes) == 64
        assert [len(runs[i].reads) for i in bands] == [0] * (len(bands) - 1) + [1]
        # 40 outputs are 3 output blocks of partial sums, zeroed once
        assert [len(runs[i].zero_psum) for i in bands] == [3] + [0] * (len(bands) - 1)
