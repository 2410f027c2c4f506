"""Widgets of the conservation-laws notebook: toggle what breaks the laws, and Fig. 4.

- :func:`conservation_app`: a small net whose objective, biases, BatchNorm mode, residual
  block and activation are controls; draws Fig. 3 beside the layer totals, and prints
  :func:`nbkit.probes.conservation_report`'s verdict under the figure.
- :func:`fig4_app`: average score against layer size on a paper model (vgg16_bn).

Every computation is cached on its control values, so moving back to a setting seen
before only redraws.
"""

from __future__ import annotations

import html
from functools import lru_cache

import ipywidgets as W
import torch
from torch import nn

from .. import models, probes
from ..viz import probes as vp
from .app import App

__all__ = ["demo_model", "ResidualBlock", "probe_batch", "conservation", "precompute", "fig4",
           "breaking_cases", "conservation_app", "fig4_app", "OBJECTIVE_LABELS", "BIAS_STD",
           "CONTROL_OPTIONS"]

OBJECTIVE_LABELS = {"synflow": "SynFlow R_SF", "loss": "loss (cross-entropy)",
                    "magnitude": "magnitude ½‖θ‖²"}
BIAS_STD = 0.5          # biases are zero at init and then carry no saliency: give them some
LOSS_SAMPLES = 8        # cifar10-mini images for the loss objective
DEMO = {"conv": dict(depth=4, width=16), "mlp": dict(depth=3, width=32)}


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


_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.1), "tanh": nn.Tanh}


def demo_model(arch: str = "conv", *, bias: bool = False, batchnorm: str = "none",
               residual: bool = False, activation: str = "relu", seed: int = 0) -> nn.Module:
    """The small net of the conservation widget, built with :func:`nbkit.models.build`.

    Args:
        arch: ``"conv"`` (4 conv layers of 16-32 channels, max-pooling, a Linear head) or
            ``"mlp"`` (two hidden layers of 32).
        bias: give every layer a bias drawn from N(0, BIAS_STD²). (At init biases are
            zero, and a zero bias has zero saliency, so it breaks nothing.)
        batchnorm: ``"none"``, ``"eval"`` (BatchNorm layers in eval mode: an affine map
            with the init statistics) or ``"train"`` (batch statistics).
        residual: append a residual block ``relu(body(x) + x)`` before the head.
        activation: ``"relu"``, ``"leaky_relu"`` (both homogeneous) or ``"tanh"`` (not).
    """
    if arch not in DEMO:
        raise ValueError(f"unknown demo net {arch!r}; choose one of {sorted(DEMO)}")
    if batchnorm not in ("none", "eval", "train"):
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
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * BIAS_STD)
    model.train(batchnorm == "train")
    return model


@lru_cache(maxsize=4)
def probe_batch(n: int = LOSS_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` class-balanced cifar10-mini training images (no augmentation) and labels."""
    from .. import data

    return data.load("cifar10-mini").pruning_batches(n, batch_size=n, augment=False)[0]


def conservation(objective: str = "synflow", arch: str = "conv", bias: bool = False,
                 batchnorm: str = "none", residual: bool = False, activation: str = "relu",
                 seed: int = 0) -> dict:
    """Both laws on :func:`demo_model` for ``objective``: the neuron flows (Fig. 3), the
    layer and cut totals, the input flow and the conservation report (cached on the
    values, however they are passed)."""
    return _conservation(objective, arch, bool(bias), batchnorm, bool(residual), activation,
                         int(seed))


@lru_cache(maxsize=256)
def _conservation(objective, arch, bias, batchnorm, residual, activation, seed) -> dict:
    model = demo_model(arch, bias=bias, batchnorm=batchnorm, residual=residual,
                       activation=activation, seed=seed)
    data = probe_batch() if objective == "loss" else None
    report = probes.conservation_report(model, objective, data=data)
    S = probes.saliency(model, objective, data=data)
    flows = probes.neuron_flows(model, S)
    return {"flows": flows, "totals": report["layer_totals"], "cut_totals": report["cut_totals"],
            "input_flow": report["input_flow"], "report": report,
            "setting": dict(objective=objective, arch=arch, bias=bias, batchnorm=batchnorm,
                            residual=residual, activation=activation)}


def _title(setting: dict) -> str:
    parts = [{"conv": "small conv net", "mlp": "MLP"}[setting["arch"]],
             setting["activation"].replace("_", " ")]
    if setting["bias"]:
        parts.append("biases")
    if setting["batchnorm"] != "none":
        parts.append(f"BatchNorm ({setting['batchnorm']} mode)")
    if setting["residual"]:
        parts.append("residual block")
    return f"{OBJECTIVE_LABELS[setting['objective']]} on a {', '.join(parts)}"


def _build_conservation(result: dict):
    return vp.conservation_figure(result["flows"], result["totals"],
                                  input_flow=result["input_flow"],
                                  cut_totals=result["cut_totals"],
                                  title=_title(result["setting"]))


def _describe_report(result: dict) -> str:
    report = result["report"]
    lines = []
    for line in str(report).splitlines():
        color = "#1B5E20" if ": holds" in line else "#B00020" if "breaks" in line else "#333"
        lines.append(f"<span style='color:{color}'>{html.escape(line)}</span>")
    return "<div style='font-family:monospace;font-size:13px'>" + "<br>".join(lines) + "</div>"


def breaking_cases(seed: int = 0) -> list[tuple[str, dict]]:
    """The notebook's tour: one setting per thing that breaks a law, with its report.
    Returns ``[(label, conservation(...) result), ...]``."""
    cases = [
        ("ReLU conv net, SynFlow", dict()),
        ("+ nonzero biases", dict(bias=True)),
        ("+ BatchNorm, eval mode", dict(batchnorm="eval")),
        ("+ BatchNorm, train mode, loss", dict(batchnorm="train", objective="loss")),
        ("+ residual block", dict(residual=True)),
        ("tanh instead of ReLU", dict(activation="tanh")),
        ("magnitude objective", dict(objective="magnitude")),
    ]
    return [(label, conservation(**{"seed": seed, **kw})) for label, kw in cases]


CONTROL_OPTIONS = {"objective": tuple(OBJECTIVE_LABELS), "arch": tuple(DEMO),
                   "activation": tuple(_ACTIVATIONS), "bias": (False, True),
                   "residual": (False, True), "batchnorm": ("none", "eval", "train")}


def precompute(seed: int = 0, **defaults) -> int:
    """Compute (and cache) :func:`conservation` for the defaults and every setting one
    control away from them, so that the first move of any control only redraws.
    Returns how many settings are cached."""
    base = dict(objective="synflow", arch="conv", bias=False, batchnorm="none",
                residual=False, activation="relu")
    base.update(defaults)
    settings = [base] + [{**base, name: value} for name, options in CONTROL_OPTIONS.items()
                         for value in options if value != base[name]]
    for setting in settings:
        conservation(**setting, seed=seed)
    return len(settings)


def conservation_app(*, objective: str = "synflow", arch: str = "conv", bias: bool = False,
                     batchnorm: str = "none", residual: bool = False,
                     activation: str = "relu") -> App:
    """Fig. 3 and the layer totals of a small net, with a control for everything that
    can break the conservation laws; the report's verdict is printed under the figure."""
    style = {"description_width": "initial"}
    controls = {
        "objective": W.Dropdown(options=[(v, k) for k, v in OBJECTIVE_LABELS.items()],
                                value=objective, description="objective", style=style),
        "arch": W.Dropdown(options=[("small conv net", "conv"), ("MLP", "mlp")], value=arch,
                           description="network", style=style),
        "activation": W.Dropdown(options=[("ReLU", "relu"), ("leaky ReLU", "leaky_relu"),
                                          ("tanh", "tanh")], value=activation,
                                 description="activation", style=style),
        "bias": W.Checkbox(value=bias, description="nonzero biases", indent=False),
        "residual": W.Checkbox(value=residual, description="residual block", indent=False),
        "batchnorm": W.ToggleButtons(options=[("no BatchNorm", "none"), ("BN eval", "eval"),
                                              ("BN train", "train")], value=batchnorm,
                                     style={"button_width": "115px"}),
    }
    return App(controls, conservation, _build_conservation, describe=_describe_report)


# ------------------------------------------------------------------------ Fig. 4

FIG4_MODELS = ("vgg16_bn", "vgg11_bn", "resnet20", "conv")


def fig4(model: str = "vgg16_bn", objective: str = "synflow", seed: int = 0,
         loss_samples: int = 4) -> dict:
    """Fig. 4's points for ``model`` at init (eval mode) and ``objective`` (cached):
    ``{"points": fig4_points(...), "model": name, "objective": name}``. The loss uses
    ``loss_samples`` cifar10-mini images; float32 keeps vgg16_bn quick on a CPU."""
    return _fig4(model, objective, int(seed), int(loss_samples))


@lru_cache(maxsize=32)
def _fig4(model, objective, seed, loss_samples) -> dict:
    torch.manual_seed(seed)
    net = models.build(model).eval()
    data = probe_batch(loss_samples) if objective == "loss" else None
    S = probes.saliency(net, objective, data=data, dtype=torch.float32)
    return {"points": probes.fig4_points(net, S), "model": model, "objective": objective}


def _build_fig4(result: dict):
    points = result["points"]
    return vp.layer_size_figure(
        points, title=(f"Fig. 4: {OBJECTIVE_LABELS[result['objective']]} on "
                       f"{result['model']} at init, slope {points['slope']:.3f}"))


def _describe_fig4(result: dict) -> str:
    slope = result["points"]["slope"]
    verdict = ("every layer carries the same total score, so single-shot pruning empties "
               "the largest layers first" if abs(slope + 1) < 0.05 else
               "the layer totals differ: this objective is not conserved layer by layer here")
    return f"fitted log-log slope <b>{slope:.3f}</b>: {html.escape(verdict)}"


def fig4_app(*, model: str = "vgg16_bn", objective: str = "synflow",
             models_: tuple = FIG4_MODELS, loss_samples: int = 4) -> App:
    """Average score against layer size (Fig. 4) for a chosen model and objective
    (the loss on ``loss_samples`` cifar10-mini images)."""
    options = list(dict.fromkeys([model, *models_]))
    controls = {
        "model": W.Dropdown(options=options, value=model, description="model"),
        "objective": W.Dropdown(options=[(v, k) for k, v in OBJECTIVE_LABELS.items()],
                                value=objective, description="objective"),
    }
    compute = lambda model, objective: fig4(model, objective,  # noqa: E731
                                            loss_samples=loss_samples)
    return App(controls, compute, _build_fig4, describe=_describe_fig4)
