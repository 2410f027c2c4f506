"""Notebook 07, your own model: a torchvision architecture pruned at initialization by
every pruner, with what nbkit supports of it, its layer collapse and its effective
density (the share of kept weights still on an input-output path).

Each pruner starts from the same freshly initialised copy. A pruner that cannot score the
model says why (torchvision's ViT starts with an all-zero head, so no gradient and no flow
reaches any layer: SNIP, GraSP and SynFlow refuse it); SynFlow on a net with saturating
activations (MobileNetV2's ReLU6) scores the linearised network.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from torch import nn

from .. import device as _device
from .. import layers, pruning, seed
from ..pruning.functional import SATURATING
from .common import StudySettings, cached, dataset, for_mode

__all__ = ["Settings", "QUICK", "FULL", "MODES", "settings", "MODELS", "build",
           "support", "prune_all", "protected", "describe_layer"]

SHAPE = (3, 32, 32)
def _tv():
    import torchvision  # on first use: importing nbkit.studies stays quick

    return torchvision.models


MODELS = {
    "mobilenet_v2": ("MobileNetV2 (width ×0.5)",
                     lambda: _tv().mobilenet_v2(num_classes=10, width_mult=0.5)),
    "squeezenet1_1": ("SqueezeNet 1.1", lambda: _tv().squeezenet1_1(num_classes=10)),
    "resnet18": ("ResNet-18 (torchvision)", lambda: _tv().resnet18(num_classes=10)),
    "vit": ("ViT (2 layers, 32 wide, 8×8 patches)",
            lambda: _tv().VisionTransformer(
                image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                mlp_dim=64, num_classes=10)),
}


@dataclass(frozen=True)
class Settings(StudySettings):
    """How each pruner runs.

    Args:
        samples: cifar10-mini training images for SNIP and GraSP (class-balanced).
        synflow_iterations: SynFlow's iterations (the paper: 100).
        log10_rhos: the compressions offered.
        threads: torch threads on the CPU (None: leave as is). One, in quick mode: with
            two, every small op waits at a barrier for a thread that another busy core
            has descheduled (the notebook took 143 s instead of 12 with one core busy).
    """

    samples: int = 20
    synflow_iterations: int = 10
    log10_rhos: tuple = field(default=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0))
    seed: int = 0
    threads: int | None = None


QUICK = Settings("quick", threads=1)
FULL = Settings("full", samples=100, synflow_iterations=100)
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL`, with ``changes``."""
    return for_mode(MODES, mode, **changes)


def build(name: str, seed_: int = 0) -> nn.Module:
    """A freshly initialised model of :data:`MODELS` for 10 classes of 32×32 images."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    seed(seed_)
    model = MODELS[name][1]()
    model.input_shape = SHAPE
    return model


def support(name: str) -> list[dict]:
    """One row per kind of layer with a weight in the model: how many layers, how many
    weights, and what pruning, the rules and the probes make of it (``"yes"``, or the
    reason they refuse)."""
    model = build(name)
    rows: dict[tuple, dict] = {}
    for _, m, kind in layers.weight_layers(model):
        verdicts = {use: re.sub(r"^groups=\d+", "groups > 1", layers.why_not(m, kind, use)
                                or "yes") for use in layers.USES}
        label = kind.name + (" grouped" if getattr(m, "groups", 1) != 1 else "")
        row = rows.setdefault((label, *verdicts.values()), {
            "kind": label, "layers": 0, "weights": 0, **verdicts})
        row["layers"] += 1
        row["weights"] += sum(getattr(m, a).numel() for a in kind.weights(m))
    return list(rows.values())


@cached(maxsize=16)
def prune_all(name: str, log10_rho: float, s: Settings = QUICK) -> dict:
    """Every pruner on a fresh copy of the model at compression 10^log10_rho:
    ``{"model", "label", "layers": [names], "sizes": [...], "pruners": {method:
    {"density": [per layer], "effective": float or None, "collapsed": [layer numbers],
    "linearized": bool} or {"error": text}}, "density", "effective_error" (why the
    effective density is missing, when it is)}``."""
    with _device.cpu_threads(s.threads, "cpu"):
        return _prune_all(name, log10_rho, s)


def _prune_all(name: str, log10_rho: float, s: Settings) -> dict:
    base = build(name, s.seed)
    density = 10.0 ** -float(log10_rho)
    batches = dataset("cifar10-mini", device="cpu").pruning_batches(
        s.samples, batch_size=s.samples, augment=False)
    out = {"model": name, "label": MODELS[name][0], "density": density, "pruners": {}}
    saturates = any(isinstance(m, SATURATING) for m in base.modules())
    for method in pruning.methods():
        model = copy.deepcopy(base)
        # saturating activations stop SynFlow's all-ones flow: score the linearised net
        linear = saturates and pruning.SCORERS[method].linearizable
        kw = {"data": batches, "linearize": linear,
              "iterations": pruning.iterations_for(method, s.synflow_iterations)}
        try:
            masks = pruning.prune(model, method, density, **kw)
        except (ValueError, TypeError) as e:
            out["pruners"][method] = {"error": str(e)}
            continue
        names = list(masks)
        d = [float(m.float().mean()) for m in masks.values()]
        out["layers"], out["sizes"] = names, [m.numel() for m in masks.values()]
        try:
            eff = pruning.effective_density(model, SHAPE)
        except ValueError as e:  # a layer the path count cannot follow (LayerNorm, say)
            eff, out["effective_error"] = None, str(e)
        out["pruners"][method] = {"density": d, "effective": eff, "linearized": linear,
                                  "collapsed": [i + 1 for i, v in enumerate(d) if v == 0]}
    if "layers" not in out:  # every pruner refused: name the layers anyway
        params = pruning.prunable_parameters(base)
        out["layers"], out["sizes"] = list(params), [p.numel() for p in params.values()]
    return out


def protected(result: dict, floor: float = 0.5, keeper: str = "synflow",
              against: tuple = ("magnitude", "snip", "grasp")) -> list[dict]:
    """Layers ``keeper`` keeps at least ``floor`` × the nominal density while one of the
    ``against`` pruners empties them or keeps under a tenth of it: ``[{"layer": number,
    "name", "synflow": keeper's density, "worst": (pruner, density)}]``."""
    runs = {m: r for m, r in result["pruners"].items() if "density" in r}
    others = [m for m in against if m in runs]
    if keeper not in runs or not others:
        return []
    nominal, out = result["density"], []
    for i, name in enumerate(result["layers"]):
        kept = runs[keeper]["density"][i]
        worst = min(((m, runs[m]["density"][i]) for m in others), key=lambda t: t[1])
        if kept >= floor * nominal and worst[1] < 0.1 * nominal:
            out.append({"layer": i + 1, "name": name, "synflow": kept, "worst": worst})
    return out


def describe_layer(name: str, weight: str) -> str:
    """What the layer holding ``weight`` is, in words: "Conv2d 3×3, depthwise (48
    channels)", "Conv2d 1×1 (16 → 64)", "Linear (1280 → 10)", "attention in_proj"."""
    module, attr = pruning.locate(build(name), weight)
    if isinstance(module, nn.Conv2d):
        k = "×".join(map(str, module.kernel_size))
        if module.groups > 1 and module.groups == module.in_channels:
            return f"Conv2d {k}, depthwise ({module.in_channels} channels)"
        return f"Conv2d {k} ({module.in_channels} → {module.out_channels})"
    if isinstance(module, nn.Linear):
        return f"Linear ({module.in_features} → {module.out_features})"
    return f"{type(module).__name__} {attr}"
