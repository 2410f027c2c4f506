"""The conservation laws of synaptic saliency (notebook 02): Fig. 3 on a small net whose
objective, biases, BatchNorm, residual block and activation can each break a law, and
Fig. 4 (average score against layer size) on a paper model.

>>> result = conservation(objective="synflow", arch="conv", bias=True)
>>> result["report"]["network_holds"]        # False: biases break the network-wise law
>>> fig4("vgg16_bn", "synflow")["points"]["slope"]            # -1: every layer the same
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import device as _device
from .. import models, probes
from .common import StudySettings, cached, dataset, for_mode

__all__ = ["Settings", "QUICK", "FULL", "MODES", "settings", "ResidualBlock", "demo_model",
           "probe_batch", "conservation", "breaking_cases", "precompute", "fig4",
           "CONTROL_OPTIONS", "FIG4_MODELS", "OBJECTIVES", "one_unit"]

OBJECTIVES = tuple(probes.OBJECTIVES)  # synflow, loss, magnitude
DEMO = {"conv": dict(depth=4, width=16), "mlp": dict(depth=3, width=32)}
_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "tanh": nn.Tanh}
FIG4_MODELS = ("vgg16_bn", "vgg11_bn", "resnet20", "conv")
# Every value each control of the conservation app can take.
CONTROL_OPTIONS = {"objective": OBJECTIVES, "arch": tuple(DEMO),
                   "activation": tuple(_ACTIVATIONS), "bias": (False, True),
                   "residual": (False, True), "batchnorm": ("none", "eval", "train")}


@dataclass(frozen=True)
class Settings(StudySettings):
    """How notebook 02 measures the laws.

    Args:
        probe_samples: cifar10-mini images of the loss objective on the demo net.
        fig4_samples: cifar10-mini images of the loss objective in Fig. 4 (the paper
            model is large: few images keep it quick on a CPU).
        bias_std: the demo net's nonzero biases are drawn from N(0, bias_std²) (at init
            biases are zero, and a zero bias has zero saliency, so it breaks nothing).
        seed: seeds the nets' initialisation.
        threads: torch threads on the CPU (None: leave as is). One, in quick mode: with
            two, every small op waits at a barrier for a thread that another busy core
            has descheduled (notebook 02 took 21 s instead of 8 with one core busy).
    """

    probe_samples: int = 8
    fig4_samples: int = 4
    bias_std: float = 0.5
    seed: int = 0
    threads: int | None = None


QUICK = Settings("quick", threads=1)
FULL = Settings("full", fig4_samples=100)
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL`, with ``changes``."""
    return for_mode(MODES, mode, **changes)


class ResidualBlock(nn.Module):
    """``relu(body(x) + x)`` with a body of two layers of the same width (Linear or 3x3
    Conv2d, each with optional bias and BatchNorm, a ReLU-like activation between)."""

    def __init__(self, width: int, kind: str = "conv", bias: bool = False,
                 batchnorm: bool = False, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        if kind == "conv":
            layer = lambda: nn.Conv2d(width, width, 3, padding=1, bias=bias)  # noqa: E731
            norm = nn.BatchNorm2d
        else:
            layer = lambda: nn.Linear(width, width, bias=bias)  # noqa: E731
            norm = nn.BatchNorm1d
        parts = [layer()] + ([norm(width)] if batchnorm else []) + [activation(), layer()]
        parts += [norm(width)] if batchnorm else []
        self.body = nn.Sequential(*parts)
        self.act = activation()

    def forward(self, x):
        return self.act(self.body(x) + x)


def demo_model(arch: str = "conv", *, bias: bool = False, batchnorm: str = "none",
               residual: bool = False, activation: str = "relu", seed: int = 0,
               bias_std: float = QUICK.bias_std) -> nn.Module:
    """The small net of the conservation study, built with :func:`nbkit.models.build`.

    Args:
        arch: ``"conv"`` (4 conv layers of 16-32 channels, max-pooling, a Linear head) or
            ``"mlp"`` (two hidden layers of 32).
        bias: give every layer a bias drawn from N(0, bias_std²).
        batchnorm: ``"none"``, ``"eval"`` (BatchNorm layers in eval mode: an affine map
            with the init statistics) or ``"train"`` (batch statistics).
        residual: append a residual block ``relu(body(x) + x)`` before the head.
        activation: ``"relu"``, ``"leaky_relu"`` (both homogeneous) or ``"tanh"`` (not).
    """
    if arch not in DEMO:
        raise ValueError(f"unknown demo net {arch!r}; choose one of {sorted(DEMO)}")
    if batchnorm not in CONTROL_OPTIONS["batchnorm"]:
        raise ValueError(f"batchnorm must be 'none', 'eval' or 'train', got {batchnorm!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{sorted(_ACTIVATIONS)}")
    torch.manual_seed(seed)
    model = models.build(arch, bias=bias, batchnorm=batchnorm != "none",
                         activation=activation, **DEMO[arch])
    if residual:
        width = model.fc.in_features
        model.layers.append(ResidualBlock(width, arch, bias, batchnorm != "none",
                                          _ACTIVATIONS[activation]))
        models.init_weights(model.layers[-1])
    if bias:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * bias_std)
    model.train(batchnorm == "train")
    return model


@cached(maxsize=4)
def probe_batch(n: int = QUICK.probe_samples) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` class-balanced cifar10-mini training images (no augmentation) and labels."""
    return dataset("cifar10-mini", device="cpu").pruning_batches(n, batch_size=n,
                                                                 augment=False)[0]


def _data_for(objective: str, n: int):
    return probe_batch(n) if probes.OBJECTIVES[objective].needs_data else None


def conservation(objective: str = "synflow", arch: str = "conv", bias: bool = False,
                 batchnorm: str = "none", residual: bool = False, activation: str = "relu",
                 seed: int | None = None, settings: Settings = QUICK) -> dict:
    """Both laws on :func:`demo_model` for ``objective`` (cached on the values, however
    they are passed): ``{"flows"`` (per hidden layer, incoming and outgoing saliency of
    every neuron, Fig. 3), ``"totals"`` (per layer), ``"cut_totals"``, ``"input_flow"``,
    ``"report"`` (:func:`nbkit.probes.conservation_report`) and ``"setting"}``."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {list(OBJECTIVES)}")
    seed = settings.seed if seed is None else int(seed)
    return _conservation(objective, arch, bool(bias), batchnorm, bool(residual), activation,
                         seed, settings)


@cached(maxsize=256)
def _conservation(objective, arch, bias, batchnorm, residual, activation, seed, settings):
    with _device.cpu_threads(settings.threads, "cpu"):
        return _measure(objective, arch, bias, batchnorm, residual, activation, seed, settings)


def _measure(objective, arch, bias, batchnorm, residual, activation, seed, settings):
    model = demo_model(arch, bias=bias, batchnorm=batchnorm, residual=residual,
                       activation=activation, seed=seed, bias_std=settings.bias_std)
    data = _data_for(objective, settings.probe_samples)
    report = probes.conservation_report(model, objective, data=data)
    saliency = probes.saliency(model, objective, data=data)
    flows = probes.neuron_flows(model, saliency)
    return {"flows": flows, "totals": report["layer_totals"], "cut_totals": report["cut_totals"],
            "input_flow": report["input_flow"], "report": report,
            "setting": dict(objective=objective, arch=arch, bias=bias, batchnorm=batchnorm,
                            residual=residual, activation=activation)}


BREAKING_CASES = (
    ("ReLU conv net, SynFlow", dict()),
    ("+ nonzero biases", dict(bias=True)),
    ("+ BatchNorm, eval mode", dict(batchnorm="eval")),
    ("+ BatchNorm, train mode, loss", dict(batchnorm="train", objective="loss")),
    ("+ residual block", dict(residual=True)),
    ("tanh instead of ReLU", dict(activation="tanh")),
    ("magnitude objective", dict(objective="magnitude")),
)


def breaking_cases(settings: Settings = QUICK) -> list[tuple[str, dict]]:
    """The notebook's tour: one setting per thing that breaks a law, with its result.
    Returns ``[(label, conservation(...) result), ...]``."""
    return [(label, conservation(**kw, settings=settings)) for label, kw in BREAKING_CASES]


DEFAULTS = dict(objective="synflow", arch="conv", bias=False, batchnorm="none", residual=False,
                activation="relu")


def precompute(settings: Settings = QUICK, **defaults) -> int:
    """Compute (and cache) :func:`conservation` for the defaults and every setting one
    control away from them, so that the first move of any control only redraws.
    Returns how many settings are cached."""
    base = {**DEFAULTS, **defaults}
    cases = [base] + [{**base, name: value} for name, options in CONTROL_OPTIONS.items()
                      for value in options if value != base[name]]
    for case in cases:
        conservation(**case, settings=settings)
    return len(cases)


def fig4(model: str = "vgg16_bn", objective: str = "synflow",
         settings: Settings = QUICK) -> dict:
    """Fig. 4's points for ``model`` at init (eval mode) and ``objective`` (cached):
    ``{"points": nbkit.probes.fig4_points(...), "model", "objective"}``. The loss uses
    ``settings.fig4_samples`` cifar10-mini images; float32 keeps vgg16_bn quick on a CPU."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {list(OBJECTIVES)}")
    with _device.cpu_threads(settings.threads, "cpu"):
        return _fig4(model, objective, settings.seed, settings.fig4_samples)


@cached(maxsize=32)
def _fig4(model, objective, seed, samples) -> dict:
    torch.manual_seed(seed)
    net = models.build(model).eval()
    saliency = probes.saliency(net, objective, data=_data_for(objective, samples),
                               dtype=torch.float32)
    return {"points": probes.fig4_points(net, saliency), "model": model, "objective": objective}


def one_unit(objective: str = "synflow", *, arch: str = "mlp", seed: int = 0) -> dict:
    """The synaptic saliency of every weight into and out of one hidden unit of the demo
    MLP (the first hidden layer's unit with the largest incoming total):
    ``{"incoming", "outgoing", "unit"}`` for :func:`nbkit.viz.diagrams.neuron_diagram`."""
    if arch != "mlp":
        raise ValueError("one_unit reads one unit's weights from an MLP's rows and columns; "
                         f"use arch='mlp', not {arch!r}")
    model = demo_model("mlp", seed=seed)
    data = probe_batch() if probes.OBJECTIVES[objective].needs_data else None
    S = probes.saliency(model, objective, data)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    w_in, w_out = S[f"{linears[0]}.weight"], S[f"{linears[1]}.weight"]
    unit = int(w_in.sum(dim=1).abs().argmax())
    return {"incoming": w_in[unit].numpy(), "outgoing": w_out[:, unit].numpy(),
            "unit": f"hidden layer 1, unit {unit + 1}"}
