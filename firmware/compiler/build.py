"""From a network as the front end reads it to an `Executable`: quantise (or take the
model's own int8 parameters), then compile. The one way every command, demo, sweep and
bench builds what it runs."""

from dataclasses import dataclass

from .pipeline import compile_network
from .quantize import QuantizedNetwork, quantize

__all__ = ["Build", "build_executable"]


@dataclass(frozen=True)
class Build:
    quantized: QuantizedNetwork      # the int8 network: its `forward` is the int8 reference
    executable: object               # the `Executable` compiled from it


def build_executable(network, config, calibration=None, *, given=None, method="minmax",
                     percentile=99.99, input_layout="vector", input_order=None, head=None,
                     batch=None, adc_calibration=None, progress=None, faults=None,
                     fault_pairs=False):
    """`network` (a float `Network`, quantised here on the `calibration` samples or with
    the `given` parameters of an int8 model; or a `QuantizedNetwork`, taken as it is)
    compiled for `config`. The rest are `quantize`'s and `compile_network`'s options."""
    if isinstance(network, QuantizedNetwork):
        qnet = network
    else:
        qnet = quantize(network, calibration, method, percentile, given=given)
    exe = compile_network(qnet, config, batch=batch, input_layout=input_layout, head=head,
                          adc_calibration=adc_calibration, input_order=input_order,
                          progress=progress, faults=faults, fault_pairs=fault_pairs)
    return Build(qnet, exe)
