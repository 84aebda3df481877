"""Published classification architectures as float ONNX models, built with onnx's helper
API: seeded He-initialised weights and BatchNormalization statistics measured on the data
they will see (each BN's mean and variance are its input's over a calibration batch, as
a trained network's running statistics would be). They are what users bring, for the
zoo bench and the tests of branches, concatenation and grouped convolutions.

Each builder takes ``size`` (the input's height and width), ``classes`` and a ``width``
multiplier (channels scaled down for fast tests), and returns a `GraphBuilder` whose
`model()` is the ONNX model.
"""

import numpy as np

__all__ = ["GraphBuilder", "ARCHITECTURES", "build"]


class GraphBuilder:
    """Nodes in topological order, NCHW tensors; each method returns its output's name."""

    def __init__(self, name, channels, size, seed=0):
        self.name, self.rng = name, np.random.default_rng(seed)
        self.nodes, self.constants, self.batchnorms = [], {}, []
        self.shapes = {"x": (channels, size, size)}
        self.input = ("x", channels, size)

    def _tensor(self, op):
        return f"{op.lower()}{len(self.nodes)}"

    def _node(self, op, inputs, shape, **attrs):
        from onnx import helper
        out = self._tensor(op)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    def _constant(self, label, array):
        name = f"{label}.{len(self.constants)}"
        self.constants[name] = np.asarray(array, np.float32)
        return name

    def conv(self, x, channels, kernel, stride=1, pad=None, group=1, bn=True, relu=True):
        cin, height, width = self.shapes[x]
        pad = kernel // 2 if pad is None else pad
        fan_in = cin // group * kernel * kernel
        weights = self.rng.normal(0, np.sqrt(2 / fan_in), (channels, cin // group, kernel, kernel))
        inputs = [x, self._constant("w", weights)]
        if not bn:
            inputs.append(self._constant("b", self.rng.normal(0, 0.01, channels)))
        size = lambda n: (n + 2 * pad - kernel) // stride + 1
        y = self._node("Conv", inputs, (channels, size(height), size(width)),
                       kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4,
                       group=group)
        if bn:
            y = self.batchnorm(y)
        return self.relu(y) if relu else y

    def batchnorm(self, x):
        channels = self.shapes[x][0]
        y = self._node("BatchNormalization", [
            x, self._constant("gamma", self.rng.uniform(0.5, 1.5, channels)),
            self._constant("beta", self.rng.normal(0, 0.1, channels)),
            self._constant("mean", np.zeros(channels)), self._constant("var", np.ones(channels))],
            self.shapes[x], epsilon=1e-5)
        self.batchnorms.append(len(self.nodes) - 1)
        return y

    def relu(self, x):
        return self._node("Relu", [x], self.shapes[x])

    def _pool_shape(self, x, kernel, stride, pad):
        channels, height, width = self.shapes[x]
        size = lambda n: (n + 2 * pad - kernel) // stride + 1
        return channels, size(height), size(width)

    def maxpool(self, x, kernel, stride=None, pad=0):
        stride = stride or kernel
        return self._node("MaxPool", [x], self._pool_shape(x, kernel, stride, pad),
                          kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)

    def avgpool(self, x, kernel, stride=None, pad=0, count_include_pad=1):
        stride = stride or kernel
        return self._node("AveragePool", [x], self._pool_shape(x, kernel, stride, pad),
                          kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4,
                          count_include_pad=count_include_pad)

    def global_pool(self, x):
        return self._node("GlobalAveragePool", [x], (self.shapes[x][0], 1, 1))

    def add(self, *xs, relu=True):
        y = self._node("Add" if len(xs) == 2 else "Sum", xs, self.shapes[xs[0]])
        return self.relu(y) if relu else y

    def concat(self, *xs):
        channels = sum(self.shapes[x][0] for x in xs)
        return self._node("Concat", xs, (channels, *self.shapes[xs[0]][1:]), axis=1)

    def flatten(self, x):
        return self._node("Flatten", [x], (int(np.prod(self.shapes[x])),), axis=1)

    def gemm(self, x, outputs):
        features = self.shapes[x][0]
        weights = self.rng.normal(0, np.sqrt(1 / features), (features, outputs))
        return self._node("Gemm", [x, self._constant("fc", weights),
                                   self._constant("fcb", np.zeros(outputs))], (outputs,))

    def classifier(self, x, classes):
        """Flatten, then a Gemm to the classes."""
        return self.gemm(self.flatten(x), classes)

    def lrn(self, x):
        return self._node("LRN", [x], self.shapes[x], size=5, alpha=1e-4, beta=0.75, bias=2.0)

    def _graph(self, nodes, output):
        from onnx import TensorProto, helper, numpy_helper
        name, channels, size = self.input
        used = {tensor for node in nodes for tensor in node.input}
        return helper.make_model(helper.make_graph(
            nodes, self.name,
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, size, size])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in self.constants.items() if k in used]),
            opset_imports=[helper.make_opsetid("", 17)])

    def model(self, output, samples):
        """The ONNX model ending at `output`, each BatchNormalization's statistics set to
        its input's mean and variance over `samples` (NCHW float32), in graph order."""
        from firmware.frontend.onnx_reference import run_reference
        for index in self.batchnorms:
            node = self.nodes[index]
            seen = run_reference(self._graph(self.nodes[:index], node.input[0]), samples)
            self.constants[node.input[3]] = seen.mean(axis=(0, 2, 3)).astype(np.float32)
            self.constants[node.input[4]] = seen.var(axis=(0, 2, 3)).astype(np.float32)
        return self._graph(self.nodes, output)


def _scaled(channels, width):
    return max(2, int(round(channels * width)))


def resnet(size=32, classes=10, width=1.0, blocks=(2, 2, 2, 2), bottleneck=False, seed=0,
           stem="cifar"):
    """ResNet-18 (blocks 2,2,2,2), ResNet-34 (3,4,6,3), ResNet-50 (3,4,6,3, bottleneck):
    residual blocks with projection shortcuts where the shape changes; the ImageNet stem
    (7x7/2 conv, 3x3/2 max pool) or the CIFAR one (3x3 conv)."""
    g = GraphBuilder("resnet", 3, size, seed)
    c = _scaled(64, width)
    x = (g.maxpool(g.conv("x", c, 7, 2), 3, 2, 1) if stem == "imagenet" else g.conv("x", c, 3))
    for stage, count in enumerate(blocks):
        out = _scaled(64 * 2 ** stage, width) * (4 if bottleneck else 1)
        for block in range(count):
            stride = 2 if stage and not block else 1
            if bottleneck:
                mid = out // 4
                y = g.conv(x, mid, 1)
                y = g.conv(y, mid, 3, stride)
                y = g.conv(y, out, 1, relu=False)
            else:
                y = g.conv(g.conv(x, out, 3, stride), out, 3, relu=False)
            shortcut = x if stride == 1 and g.shapes[x][0] == out else \
                g.conv(x, out, 1, stride, relu=False)
            x = g.add(y, shortcut)
    return g, g.classifier(g.global_pool(x), classes)


def inception(size=32, classes=10, width=1.0, modules=2, seed=0):
    """GoogLeNet-style: a stem (at 64 px and above GoogLeNet's: 7x7/2 conv, 3x3/2 max
    pool, 1x1 and 3x3 convs, 3x3/2 max pool; below, a 3x3 conv and a 3x3/2 max pool),
    then modules of four branches (1x1; 1x1-3x3; 1x1-5x5; 3x3 max pool-1x1)
    concatenated on channels, a 3x3/2 max pool after the 2nd and the 7th module (as
    GoogLeNet's 3b and 4e), a global pool."""
    g = GraphBuilder("inception", 3, size, seed)
    if size >= 64:
        x = g.maxpool(g.conv("x", _scaled(64, width), 7, 2), 3, 2, 1)
        x = g.maxpool(g.conv(g.conv(x, _scaled(64, width), 1), _scaled(192, width), 3), 3, 2, 1)
    else:
        x = g.maxpool(g.conv("x", _scaled(64, width), 3), 3, 2, 1)
    for module in range(modules):
        if module in (2, 7):
            x = g.maxpool(x, 3, 2, 1)
        c = _scaled(32 * (module + 1), width)
        x = g.concat(g.conv(x, c, 1),
                     g.conv(g.conv(x, c, 1), c, 3),
                     g.conv(g.conv(x, max(2, c // 2), 1), max(2, c // 2), 5),
                     g.conv(g.maxpool(x, 3, 1, 1), c, 1))
    return g, g.classifier(g.global_pool(x), classes)


def densenet(size=32, classes=10, width=1.0, layers=(2, 2), growth=12, seed=0):
    """DenseNet-BC style: each layer's BN-ReLU-1x1-BN-ReLU-3x3 output concatenated to its
    input; transitions of 1x1 conv and 2x2 average pooling."""
    g = GraphBuilder("densenet", 3, size, seed)
    k = _scaled(growth, width)
    x = g.conv("x", 2 * k, 3)
    for stage, count in enumerate(layers):
        for _ in range(count):
            y = g.conv(g.relu(g.batchnorm(x)), 4 * k, 1, bn=False, relu=False)
            y = g.conv(g.relu(g.batchnorm(y)), k, 3, bn=False, relu=False)
            x = g.concat(x, y)
        if stage < len(layers) - 1:
            x = g.avgpool(g.conv(g.relu(g.batchnorm(x)), g.shapes[x][0] // 2, 1, bn=False,
                                 relu=False), 2)
    return g, g.classifier(g.global_pool(g.relu(g.batchnorm(x))), classes)


def vgg(size=32, classes=10, width=1.0, layers=19, seed=0):
    """VGG-16 or -19: 3x3 convolutions in five stages, each ending in a 2x2 max pool, then
    two hidden fully connected layers (4096 wide at width 1)."""
    stages = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}[layers]
    g = GraphBuilder(f"vgg{layers}", 3, size, seed)
    x = "x"
    for stage, count in enumerate(stages):
        for _ in range(count):
            x = g.conv(x, _scaled(64 * 2 ** min(stage, 3), width), 3, bn=False)
        x = g.maxpool(x, 2)
    hidden = _scaled(4096, width)
    x = g.relu(g.classifier(x, hidden))
    x = g.relu(g.gemm(x, hidden))
    return g, g.gemm(x, classes)


def mobilenet(size=32, classes=10, width=1.0, seed=0):
    """MobileNet-v1: a 3x3/2 convolution, then 13 depthwise-separable blocks (a depthwise
    3x3, group = channels, and a pointwise 1x1), global pooling and a classifier."""
    g = GraphBuilder("mobilenet", 3, size, seed)
    x = g.conv("x", _scaled(32, width), 3, 2)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 \
        + [(1024, 2), (1024, 1)]
    for channels, stride in plan:
        x = g.conv(x, g.shapes[x][0], 3, stride, group=g.shapes[x][0])
        x = g.conv(x, _scaled(channels, width), 1)
    return g, g.classifier(g.global_pool(x), classes)


def squeezenet(size=32, classes=10, width=1.0, seed=0):
    """SqueezeNet 1.1: fire modules (a 1x1 squeeze, then 1x1 and 3x3 expands concatenated),
    and the 1x1-convolution + global-pool classifier ending."""
    g = GraphBuilder("squeezenet", 3, size, seed)
    x = g.maxpool(g.conv("x", _scaled(64, width), 3, 2, pad=0, bn=False), 3, 2)
    for module, (squeeze, expand) in enumerate([(16, 64), (16, 64), (32, 128), (32, 128),
                                                 (48, 192), (48, 192), (64, 256), (64, 256)]):
        s = g.conv(x, _scaled(squeeze, width), 1, bn=False)
        x = g.concat(g.conv(s, _scaled(expand, width), 1, bn=False),
                     g.conv(s, _scaled(expand, width), 3, bn=False))
        if module in (1, 3):
            x = g.maxpool(x, 3, 2)
    x = g.conv(x, classes, 1, bn=False)
    return g, g.flatten(g.global_pool(x))


def alexnet(size=64, classes=10, width=1.0, seed=0):
    """AlexNet as published: local response normalisation after its first two convolutions
    (which Tessera refuses, saying why)."""
    g = GraphBuilder("alexnet", 3, size, seed)
    x = g.maxpool(g.lrn(g.conv("x", _scaled(64, width), 11, 4, pad=2, bn=False)), 3, 2)
    x = g.maxpool(g.lrn(g.conv(x, _scaled(192, width), 5, bn=False)), 3, 2)
    for channels in (384, 256, 256):
        x = g.conv(x, _scaled(channels, width), 3, bn=False)
    return g, g.classifier(g.global_pool(x), classes)


ARCHITECTURES = {"resnet": resnet, "inception": inception, "densenet": densenet, "vgg": vgg,
                 "mobilenet": mobilenet, "squeezenet": squeezenet, "alexnet": alexnet}


def build(architecture, samples, **options):
    """(ONNX model, builder) of `architecture` with its BatchNorm statistics measured on
    `samples` (NCHW float32)."""
    builder, output = ARCHITECTURES[architecture](**options)
    return builder.model(output, samples), builder
