"""Tessera's golden model against IBM's aihwkit on the same networks, a batch of 256.

aihwkit (PyTorch, its own C++ tiles) is the field's reference simulator of analog
in-memory inference. Both run the same layer shapes: aihwkit's inference tiles ideal
(`is_perfect`: no noise, no converters) and set up like Tessera's default crossbar (tiles
of 16 x 16, 8-bit inputs, 7-bit outputs, noise off); Tessera's golden model runs the
compiled int8 executable through the driver, counters and host traffic included. Both
take the fastest of 5 runs of a batch of 256, on one thread each.

aihwkit needs PyTorch, which the project does not depend on: run this in a venv of its
own. aihwkit 1.1.0 ships one wheel, for CPython 3.11 (1.2.0 is source only); of the torch
releases on PyPI, 2.10.0 is the one it runs with here (2.9.1 lacks a symbol it links,
2.13 and 2.14 refuse its CPU tensors):

    python3.11 -m venv /tmp/aihw && /tmp/aihw/bin/pip install aihwkit==1.1.0 torch==2.10.0
    PYTHONPATH=. /tmp/aihw/bin/python bench/peer_aihwkit.py
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np                                                   # noqa: E402

from firmware.compiler.build import build_executable                 # noqa: E402
from firmware.frontend.network import Conv2d, Dense, Flatten, MaxPool2d   # noqa: E402
from firmware.frontend.train import init_mlp                         # noqa: E402
from firmware.runtime.report import format_table                     # noqa: E402
from firmware.runtime.targets import GoldenTarget                    # noqa: E402
from golden import AccelConfig                                       # noqa: E402
from tessera.experiments.digits import MODELS                        # noqa: E402
from tessera.experiments.mnist import lenet5                         # noqa: E402

from efficiency import REPEATS, fastest                              # noqa: E402  (bench/)

BATCH = 256


def networks(rng):
    digits_mlp, digits_cnn = (model.build(rng) for model in MODELS)
    return [("digits MLP 64-32-10", digits_mlp, (64,)), ("digits CNN", digits_cnn, (8, 8, 1)),
            ("MNIST LeNet-5", lenet5(rng), (28, 28, 1)),
            ("MLP 784-1024-1024-10", init_mlp([784, 1024, 1024, 10], rng), (784,))]


def rpu_config(like_tessera):
    from aihwkit.simulator.configs import InferenceRPUConfig
    rpu = InferenceRPUConfig()
    rpu.mapping.max_input_size = rpu.mapping.max_output_size = 16
    if like_tessera:
        rpu.forward.inp_res = 1 / (2 ** 8 - 2)
        rpu.forward.out_res = 1 / (2 ** 7 - 2)
        rpu.forward.out_noise = rpu.forward.w_noise = 0.0
    else:
        rpu.forward.is_perfect = True
    return rpu


def torch_model(network, shape, like_tessera):
    """The network's layers as aihwkit analog layers (NCHW), its weights copied in."""
    import torch
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    layers, channels_last = [], len(shape) == 3
    for layer in network.layers:
        if isinstance(layer, Dense):
            analog = AnalogLinear(*layer.weights.shape, rpu_config=rpu_config(like_tessera))
            analog.set_weights(torch.tensor(layer.weights.T, dtype=torch.float32),
                               torch.tensor(layer.bias, dtype=torch.float32))
            layers.append(analog)
        elif isinstance(layer, Conv2d):
            kh, kw, cin, cout = layer.weights.shape
            if len(set(layer.pads)) > 1:
                raise SystemExit(f"{layer.name}: uneven padding is not mapped to torch here")
            analog = AnalogConv2d(cin, cout, (kh, kw), stride=layer.stride,
                                  padding=layer.pads[0], rpu_config=rpu_config(like_tessera))
            analog.set_weights(torch.tensor(layer.weights.transpose(3, 2, 0, 1), dtype=torch.float32),
                               torch.tensor(layer.bias, dtype=torch.float32))
            layers.append(analog)
        elif isinstance(layer, MaxPool2d):
            layers.append(torch.nn.MaxPool2d(layer.size, layer.stride or layer.size))
            continue
        elif isinstance(layer, Flatten):
            layers.append(torch.nn.Flatten())
            continue
        else:
            raise SystemExit(f"{layer.name}: {type(layer).__name__} is not mapped to torch here")
        if getattr(layer, "relu", False):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).eval()
    return model, channels_last


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    import aihwkit
    import torch
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    for name, network, shape in networks(rng):
        print(f"{name} ...", flush=True)
        x = rng.uniform(0, 1, (BATCH, *shape))
        exe = build_executable(network, AccelConfig(), x[:64]).executable
        x_q = exe.input.quantize(x)
        golden = GoldenTarget()
        golden.run(exe, x_q[:exe.batch])                                   # warm-up
        _, golden_s = fastest(lambda: golden.run(exe, x_q))
        row = {"network": name, "batch": exe.batch, "golden ms": 1e3 * golden_s / BATCH}
        for like_tessera, key in ((False, "ideal"), (True, "like")):
            model, channels_last = torch_model(network, shape, like_tessera)
            inputs = torch.tensor(x.transpose(0, 3, 1, 2) if channels_last else x,
                                  dtype=torch.float32)
            with torch.no_grad():
                model(inputs[:8])                                          # warm-up
                _, seconds = fastest(lambda: model(inputs))
            row[key + " ms"] = 1e3 * seconds / BATCH
            row[key + " x"] = seconds / golden_s
        rows.append(row)
    columns = [("network", "network", "{}"), ("golden batch", "batch", "{}"),
               ("golden ms/inf", "golden ms", "{:.3f}"),
               ("aihwkit ideal ms/inf", "ideal ms", "{:.3f}"), ("ideal / golden", "ideal x", "{:.2f}x"),
               ("aihwkit like Tessera ms/inf", "like ms", "{:.3f}"),
               ("like / golden", "like x", "{:.2f}x")]
    print(f"\n{BATCH} inferences each, the fastest of {REPEATS} runs, one thread; golden on "
          f"{AccelConfig().name} in its executable's batches; aihwkit {aihwkit.__version__}, "
          f"torch {torch.__version__}, 16 x 16 tiles (above 1x: golden is faster)")
    print(format_table(rows, columns))


if __name__ == "__main__":
    main()
