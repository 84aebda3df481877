"""onnxruntime as the independent second model: its quantiser makes the int8 models users
have, and its *reference mode* runs any model with results that do not depend on the CPU.

Why a named mode. onnxruntime's optimised int8 kernels multiply uint8 activations by int8
weights with ``vpmaddubsw`` on x86-64 CPUs without VNNI (SSE4.1, AVX2, AVX-512 before
Cascade Lake, AMD before Zen 4), which saturates each pair of products at 16 bits: the same
model gives other int8 outputs on another machine (onnxruntime issues 5849, 12072, 14642).
Two things make a run exact on every CPU, and the reference mode does both:

- graph optimisations off (``ORT_DISABLE_ALL``): a QDQ model runs as written, dequantise,
  float operator, quantise, instead of being fused into an integer kernel;
- an integer kernel that remains (QOperator's QLinearConv, QLinearMatMul, QGemm;
  MatMulInteger, ConvInteger) with uint8 activations gets its int8 weights as uint8 with
  128 added to the values and the zero point: (x - zx)(w + 128 - (zw + 128)) is the same
  product, and onnxruntime's uint8 x uint8 kernels widen to 16 bits before multiplying,
  so nothing saturates. onnxruntime's own ``session.x64quantprecision`` makes this
  rewrite, but only inside its graph optimiser and only for some operators.

The optimised mode (:func:`run_optimised`) is kept for measuring how far onnxruntime's fast
kernels stray on this CPU (:func:`optimised_kernel_deviation`); it is never the reference.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["REFERENCE_MODE", "reference_model", "reference_session", "run_reference", "run_reference_tensors",
           "run_optimised", "cpu_has_vnni", "optimised_kernel_deviation", "KernelDeviation",
           "quantize_with_onnxruntime"]

REFERENCE_MODE = ("onnxruntime reference mode (graph optimisations off, integer kernels on "
                  "uint8 x uint8 weights): the same result on every CPU")

# op type -> (weight input index, weight zero-point input index); in all of them the
# activation is input 0 and its zero point input 2
_INTEGER_KERNELS = {"QLinearConv": (3, 5), "QLinearMatMul": (3, 5), "QGemm": (3, 5),
                    "MatMulInteger": (1, 3), "ConvInteger": (1, 3)}
_BATCH = 512                    # samples per session.run: bounds the memory of big inputs


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("comparing with onnxruntime needs it: pip install onnxruntime") \
            from None
    return onnxruntime


def _load(model):
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model))


def _element_types(model):
    """tensor name -> ONNX element type, from the graph's declarations and shape inference;
    for the operators it does not know (onnxruntime's contrib QLinear ops, and what
    follows them), the type of their activation input (a QLinearConcat's: its output zero
    point's)."""
    import onnx
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {t.name: t.type.tensor_type.elem_type
             for t in [*graph.input, *graph.value_info, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.output and not types.get(node.output[0]):
            like = node.input[1] if node.op_type == "QLinearConcat" else node.input[0]
            types[node.output[0]] = types.get(like, onnx.TensorProto.FLOAT)
    return types


def reference_model(model):
    """`model` (a path or ModelProto) with every integer kernel's int8 weights moved to
    uint8 + 128 where its activations are uint8, so that no CPU saturates the product.
    Returns a new ModelProto; the input is not changed."""
    import onnx
    from onnx import TensorProto, numpy_helper
    model = _load(model)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    graph = rewritten.graph
    initializers = {t.name: t for t in graph.initializer}
    types = _element_types(rewritten)
    replaced = set()
    for index, node in enumerate(graph.node):
        if node.op_type not in _INTEGER_KERNELS:
            continue
        weight_at, zero_at = _INTEGER_KERNELS[node.op_type]
        weight = initializers.get(node.input[weight_at])
        # the activation's type: its zero point's, or shape inference's (no contrib types)
        activation = (node.input[2] if len(node.input) > 2 and node.input[2] else node.input[0])
        if (weight is None or weight.data_type != TensorProto.INT8
                or types.get(activation) != TensorProto.UINT8):
            continue
        has_zero = len(node.input) > zero_at and node.input[zero_at]
        zero = (numpy_helper.to_array(initializers[node.input[zero_at]]) if has_zero
                else np.zeros((), np.int8))
        suffix = f"__u8_{index}"
        graph.initializer.append(numpy_helper.from_array(
            (numpy_helper.to_array(weight).astype(np.int16) + 128).astype(np.uint8),
            weight.name + suffix))
        graph.initializer.append(numpy_helper.from_array(
            (zero.astype(np.int16) + 128).astype(np.uint8), f"weight_zero_point{suffix}"))
        inputs = list(node.input) + [""] * (zero_at + 1 - len(node.input))
        replaced.update(inputs[i] for i in (weight_at, zero_at) if inputs[i])
        inputs[weight_at], inputs[zero_at] = weight.name + suffix, f"weight_zero_point{suffix}"
        del node.input[:]
        node.input.extend(inputs)
    # drop the int8 originals no node reads any more (onnxruntime warns of each otherwise)
    read = {name for node in graph.node for name in node.input}
    read |= {output.name for output in graph.output}
    kept = [t for t in graph.initializer if t.name in read or t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return rewritten


def reference_session(model):
    """An onnxruntime session in the reference mode, checked to be in it."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(reference_model(model).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    level = session.get_session_options().graph_optimization_level
    if level != ort.GraphOptimizationLevel.ORT_DISABLE_ALL:
        raise RuntimeError(f"onnxruntime reference session runs with {level}, "
                           "not ORT_DISABLE_ALL: its int8 results would depend on the CPU")
    return session


def _run(session, x):
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + _BATCH]})[0]
                           for i in range(0, len(x), _BATCH)])


def run_reference(model, x):
    """The model's first output for inputs `x`, in the reference mode."""
    return _run(reference_session(model), x)


def run_reference_tensors(model, x, names):
    """{name: array} of the model's tensors `names` for inputs `x`, in the reference mode
    (intermediate results too: to compare a layer at a time)."""
    import onnx
    model = _load(model)
    types = _element_types(model)
    outputs = {o.name for o in model.graph.output}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, types[name], None)
                              for name in names if name not in outputs)
    session = reference_session(model)
    input_name, wanted = session.get_inputs()[0].name, list(names)
    batches = [session.run(wanted, {input_name: x[i:i + _BATCH]}) for i in range(0, len(x), _BATCH)]
    return {name: np.concatenate([batch[j] for batch in batches]) for j, name in enumerate(wanted)}


def run_optimised(model, x):
    """The model's first output with onnxruntime's default (optimised) session, as a user's
    deployment would run it: CPU-dependent, for measuring only."""
    ort = _ort()
    model = _load(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return _run(session, x)


def cpu_has_vnni():
    """Whether this CPU has AVX-512 VNNI or AVX-VNNI (so onnxruntime's optimised int8
    kernels are exact here); None where /proc/cpuinfo cannot tell."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni"))


@dataclass(frozen=True)
class KernelDeviation:
    """How far onnxruntime's optimised kernels stray from its reference mode, in LSBs of
    the model's output scale, over `values` output values."""
    values: int
    off: int                   # values that differ at all
    max_lsb: float
    vnni: bool | None

    def describe(self):
        cpu = {True: "has VNNI", False: "has no VNNI", None: "VNNI unknown"}[self.vnni]
        if self.off == 0:
            return (f"onnxruntime's optimised int8 kernels equal its reference mode on all "
                    f"{self.values:,} output values on this CPU ({cpu})")
        return (f"onnxruntime's optimised int8 kernels differ from its reference mode on "
                f"{self.off:,} of {self.values:,} output values, by up to {self.max_lsb:.0f} "
                f"LSB, on this CPU ({cpu}): a fact about onnxruntime here, not about Tessera")


def optimised_kernel_deviation(model, x, output_scale, reference=None):
    """Measure the optimised session against the reference mode on inputs `x`; `reference`
    may pass the reference outputs already computed."""
    if reference is None:
        reference = run_reference(model, x)
    lsb = np.rint(np.abs(run_optimised(model, x) - reference) / output_scale)
    return KernelDeviation(int(lsb.size), int(np.count_nonzero(lsb)),
                           float(lsb.max(initial=0)), cpu_has_vnni())


def quantize_with_onnxruntime(float_path, out_path, calibration, preprocess=False, **options):
    """`float_path` quantised by onnxruntime's `quantize_static` to `out_path`, calibrated
    on `calibration` (one sample a batch). With `preprocess`, onnxruntime's recommended
    `quant_pre_process` runs first (shape inference and graph optimisation, which folds
    each BatchNormalization into the Conv before it). `options` go to `quantize_static`;
    weights are int8 unless they say otherwise."""
    import logging
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    import onnx
    input_name = onnx.load(str(float_path)).graph.input[0].name
    if preprocess:
        from onnxruntime.quantization.shape_inference import quant_pre_process
        prepared = Path(out_path).with_suffix(".prepared.onnx")
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        float_path = prepared

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter([{input_name: calibration[i:i + 1]}
                                 for i in range(len(calibration))])

        def get_next(self):
            return next(self.samples, None)

    options.setdefault("weight_type", QuantType.QInt8)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        quantize_static(str(float_path), str(out_path), Reader(), **options)
    finally:
        # The quantiser configures the root logger (a handler at INFO): put it back.
        root.handlers[:] = handlers
        root.setLevel(level)
    return Path(out_path)
