"""Model registry: the CIFAR architectures of the SynFlow paper, plus small demo nets.

>>> model = build("vgg16_bn", num_classes=10)
>>> names()[:3]
['conv', 'mlp', 'resnet110']

Every model built here records the input shape it expects in ``model.input_shape``
(channels, height, width), so that data-free pruners and probes can feed it.
Parameter names follow the paper's reference code: ``layers.0.conv.weight`` ...
``fc.weight`` for VGG, ``stem.conv.weight`` ... ``fc.weight`` for ResNets.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import partial

from torch import nn

__all__ = ["build", "names", "count_weights", "VGG_PLANS"]

# ----------------------------------------------------------------------------- VGG

VGG_PLANS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512],
}


class ConvBlock(nn.Module):
    """3x3 conv (with bias), optional BatchNorm, ReLU."""

    def __init__(self, c_in: int, c_out: int, batchnorm: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(c_out) if batchnorm else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class VGG(nn.Module):
    """CIFAR VGG as in the SynFlow paper: conv blocks and max-pools, then
    global average pooling (the paper's AvgPool2d(2) on a 2x2 map) and one Linear."""

    def __init__(self, plan, num_classes=10, in_channels=3, batchnorm=True):
        super().__init__()
        layers, c = [], in_channels
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(ConvBlock(c, item, batchnorm))
                c = item
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(x))))


# -------------------------------------------------------------------------- ResNet

class BasicBlock(nn.Module):
    """Two 3x3 convs (no bias) with BN; the shortcut is a 1x1 strided conv + BN when
    the shape changes and the identity otherwise. ``out = relu(main(x) + shortcut(x))``."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet. ``stages`` lists (channels, blocks, stride) per stage."""

    def __init__(self, stages, num_classes=10, in_channels=3, stem_channels=None):
        super().__init__()
        c = stem_channels or stages[0][0]
        self.stem = nn.Sequential()
        self.stem.conv = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        self.stem.bn = nn.BatchNorm2d(c)
        self.stem.relu = nn.ReLU()
        blocks = []
        for width, n, stride in stages:
            for i in range(n):
                blocks.append(BasicBlock(c, width, stride if i == 0 else 1))
                c = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


def _resnet_cifar(depth: int, base: int):
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return [(base, n, 1), (2 * base, n, 2), (4 * base, n, 2)]


# ------------------------------------------------------------------------ small nets

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": partial(nn.LeakyReLU, 0.1),
    "identity": nn.Identity,
    "tanh": nn.Tanh,
}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """Flatten, then ``depth`` Linear layers (``depth - 1`` hidden of ``width``)."""

    def __init__(self, input_shape, num_classes=10, depth=3, width=256, bias=True,
                 batchnorm=False, activation="relu"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"mlp depth must be >= 1, got {depth}")
        self.flatten = nn.Flatten()
        layers, d = [], math.prod(input_shape)
        for _ in range(depth - 1):
            layers.append(nn.Linear(d, width, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(_activation(activation))
            d = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(d, num_classes, bias=bias)

    def forward(self, x):
        return self.fc(self.layers(self.flatten(x)))


class ConvNet(nn.Module):
    """A small convnet: ``depth`` 3x3 conv layers of ``width`` channels (doubling after
    each pool), a pool after every second conv, global average pooling and a Linear."""

    def __init__(self, input_shape, num_classes=10, depth=4, width=32, bias=True,
                 batchnorm=True, activation="relu", pool="max"):
        super().__init__()
        if depth < 1:
            raise ValueError(f"conv depth must be >= 1, got {depth}")
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
        if pool not in pools:
            raise ValueError(f"unknown pool {pool!r}; choose 'max' or 'avg'")
        c, h = input_shape[0], input_shape[1]
        layers = []
        for i in range(depth):
            out = width * 2 ** (i // 2)
            layers.append(nn.Conv2d(c, out, 3, padding=1, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(_activation(activation))
            c = out
            if i % 2 == 1 and h >= 4:
                layers.append(pools[pool](2))
                h //= 2
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes, bias=bias)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.layers(x))))


# -------------------------------------------------------------------------- registry

def _vgg(plan, batchnorm):
    def make(num_classes, input_shape, width_divisor=1):
        if int(width_divisor) != width_divisor or width_divisor < 1:
            raise ValueError(f"width_divisor must be a whole number >= 1, got {width_divisor}")
        narrow = [c if c == "M" else max(1, c // int(width_divisor)) for c in VGG_PLANS[plan]]
        return VGG(narrow, num_classes, input_shape[0], batchnorm)
    return make


def _resnet(depth, base):
    def make(num_classes, input_shape, width_divisor=1):
        if not isinstance(width_divisor, int) or width_divisor < 1 or base % width_divisor:
            raise ValueError(f"width_divisor must be a positive int dividing {base}, got "
                             f"{width_divisor!r}")
        return ResNet(_resnet_cifar(depth, base // width_divisor), num_classes, input_shape[0])
    return make


def _resnet18(num_classes, input_shape):
    stages = [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]
    return ResNet(stages, num_classes, input_shape[0])


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    **{f"{p}{s}": _vgg(p, bn) for p in VGG_PLANS for s, bn in (("", False), ("_bn", True))},
    **{f"resnet{d}": _resnet(d, 16) for d in (20, 32, 44, 56, 110)},
    **{f"wide_resnet{d}": _resnet(d, 32) for d in (20, 32)},
    "resnet18": _resnet18,
    "mlp": lambda num_classes, input_shape, **kw: MLP(input_shape, num_classes, **kw),
    "conv": lambda num_classes, input_shape, **kw: ConvNet(input_shape, num_classes, **kw),
}


def _options(factory) -> set[str] | None:
    """The options a registry entry takes, read from its signature; None when it takes
    any keyword (the small nets, which check their own)."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params} - {"num_classes", "input_shape"}


def names() -> list[str]:
    """Every name that :func:`build` accepts, sorted."""
    return sorted(_REGISTRY)


def init_weights(model: nn.Module) -> nn.Module:
    """The paper's initialisation: Kaiming-normal conv and linear weights (fan-in,
    ReLU gain), zero biases, BatchNorm with weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def build(name: str, num_classes: int = 10, input_shape=(3, 32, 32), device=None,
          **kwargs) -> nn.Module:
    """Build a freshly initialised model by name.

    Args:
        name: one of :func:`names`.
        num_classes: size of the classifier output.
        input_shape: (channels, height, width) of one input; recorded as
            ``model.input_shape``.
        device: where to put the model (default: CPU; see :func:`nbkit.device.get`).
        **kwargs: architecture options. The small nets take ``depth``, ``width``,
            ``bias``, ``batchnorm``, ``activation`` and (conv only) ``pool``. The VGGs
            and the CIFAR ResNets take ``width_divisor=k``: every layer k times narrower
            (same depth and plan, about k² times fewer weights), e.g.
            ``build("vgg16_bn", width_divisor=8)``, ``build("resnet56", width_divisor=2)``.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names are: {', '.join(names())}")
    allowed = _options(_REGISTRY[name])
    if allowed is not None and not set(kwargs) <= allowed:
        takes = f"only {sorted(allowed)}" if allowed else "no options"
        raise ValueError(f"model {name!r} takes {takes}, got {sorted(kwargs)}; 'mlp' and "
                         "'conv' take depth/width/bias/... options")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model = init_weights(_REGISTRY[name](num_classes=num_classes, input_shape=input_shape,
                                         **kwargs))
    model.input_shape = input_shape
    model.arch = name
    if device is not None:
        from .device import get as _get_device
        model = model.to(_get_device(device))
    return model


def count_weights(model: nn.Module) -> int:
    """Number of Linear and Conv2d weights (the default prunable parameters)."""
    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)))
