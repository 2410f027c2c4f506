"""Where saliency flows: per layer, per cut, per hidden unit, and per pruning step.

All functions take a saliency dict ``S`` from :func:`nbkit.probes.saliency`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import layers as _layers
from .graph import _CHANNELWISE_OPS, BATCHNORM, CHANNELWISE, PRUNABLE, LayerGraph, Site, trace

__all__ = ["layer_sizes", "layer_totals", "fig4_points", "neuron_flows", "flow_ratio"]


def _prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    _layers.refuse(model, "probes", what="the conservation probes cannot measure this model")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise ValueError("the model has no prunable layer (nn.Linear or nn.Conv2d)")
    return layers


def _key(name: str, tensor: str = "weight") -> str:
    return f"{name}.{tensor}".lstrip(".")


def _get(S, key):
    if key not in S:
        raise ValueError(f"the saliency has no entry {key!r}; compute it for this model with "
                         "nbkit.probes.saliency(model, ...)")
    return S[key]


def _on(S, device):
    """``S`` on ``device`` (None: where it is)."""
    if device is None:
        return S
    from .. import device as _device

    dev = _device.get(device)
    return {k: v.to(dev) for k, v in S.items()}


def layer_sizes(model: nn.Module) -> dict[str, int]:
    """Number of weights of every prunable layer, keyed by its weight's name."""
    return {_key(n): m.weight.numel() for n, m in _prunable(model)}


def _resolve_shape(model, input_shape):
    from .. import pruning

    return pruning.resolve_input_shape(model, input_shape)


def layer_totals(model: nn.Module, S: dict, *, by: str = "layer", input_shape=None,
                 device=None, graph: LayerGraph | None = None) -> dict[str, float]:
    """Total saliency of the weights of every prunable layer (``by="layer"``), or of
    every minimal cut (``by="cut"``).

    With ``by="layer"`` the keys are the weights' names. With ``by="cut"`` a cut made
    of several layers (a residual block's main path with its shortcut) is keyed by
    their weight names joined with ``"+"``; a layer that no cut contains (a conv that
    an identity skip bypasses) does not appear. In a chain, both views agree.
    Network-wise conservation says all the values are equal (biases excluded).
    Finding cuts traces the model once (``input_shape`` as in
    :func:`nbkit.probes.saliency`). The sums run where ``S`` lives, or on ``device``.
    """
    S = _on(S, device)
    if by == "layer":
        return {_key(n): float(_get(S, _key(n)).sum()) for n, _ in _prunable(model)}
    if by != "cut":
        raise ValueError(f'by must be "layer" or "cut", got {by!r}')
    graph = graph or trace(model, _resolve_shape(model, input_shape))
    out = {}
    for cut in graph.cuts():
        keys = [graph.layers[n].weight for n in cut]
        out["+".join(keys)] = float(sum(_get(S, k).sum() for k in keys))
    return out


def layer_abs_totals(model, S, *, graph: LayerGraph | None = None, by="layer"):
    """Like :func:`layer_totals` but summing |S| (the scale that rounding errors follow)."""
    if by == "layer":
        return {_key(n): float(_get(S, _key(n)).abs().sum()) for n, _ in _prunable(model)}
    out = {}
    for cut in graph.cuts():
        keys = [graph.layers[n].weight for n in cut]
        out["+".join(keys)] = float(sum(_get(S, k).abs().sum() for k in keys))
    return out


def fig4_points(model: nn.Module, S: dict, *, device=None) -> dict:
    """The paper's Fig. 4: each prunable layer's average score against its size.

    Returns ``{"layer": [names], "size": array, "average": array, "slope": float}``,
    where ``slope`` is the least-squares slope of log(average) against log(size)
    (NaN unless every average is positive and there are two sizes). Network-wise
    conservation makes every layer's total equal, so the slope is -1.
    """
    totals = layer_totals(model, S, device=device)
    sizes = layer_sizes(model)
    names = list(totals)
    size = np.array([sizes[n] for n in names], dtype=np.float64)
    average = np.array([totals[n] / sizes[n] for n in names], dtype=np.float64)
    slope = math.nan
    if (average > 0).all() and len(set(size.tolist())) > 1:
        slope = float(np.polyfit(np.log(size), np.log(average), 1)[0])
    return {"layer": names, "size": size, "average": average, "slope": slope}


# --------------------------------------------------------------------- neuron flows

def _check_site(graph: LayerGraph, site: Site) -> None:
    where = f"between {'+'.join(site.producers)!r} and {', '.join(site.consumers)!r}"
    joined = [op for op in site.ops if op.startswith("CatBackward")]
    if joined:
        raise _layers.UnsupportedLayerError(
            f"neuron flows cannot follow a concatenation (torch.cat) {where}: it stacks the "
            "channels of several layers (as DenseNet's blocks and SqueezeNet's fire modules "
            "do), so a hidden channel has no single layer on each side; the saliency itself "
            "(nbkit.probes.saliency) is still defined")
    for name in site.modules:
        m = graph.modules[name]
        if not isinstance(m, CHANNELWISE):
            raise ValueError(
                f"neuron flows cannot pass through layer {name!r} ({type(m).__name__}) {where}: "
                "only per-channel layers (activations, BatchNorm, pooling, Flatten, Dropout) "
                "and residual adds may sit between two prunable layers")
        if isinstance(m, BATCHNORM) and m.num_features != site.channels:
            raise ValueError(f"BatchNorm {name!r} has {m.num_features} features but the layers "
                             f"before it give {site.channels} channels ({where})")
    for op in site.ops:
        if op.startswith("parameter "):
            raise ValueError(f"{op} is used outside any prunable layer {where}; neuron flows "
                             "only support Linear/Conv2d with per-channel layers in between")
        if not op.startswith(_CHANNELWISE_OPS):
            raise ValueError(f"neuron flows cannot pass through the operation "
                             f"{op.split('/')[0]} {where}: it may mix channels")
    sizes = {p: graph.layers[p].channels for p in site.producers}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"layers {sizes} are added together but have different widths")


def _incoming(graph: LayerGraph, site: Site, S):
    inc = inc_abs = 0
    for name in site.producers:
        lay = graph.layers[name]
        s = _get(S, lay.weight).flatten(1)
        inc, inc_abs = inc + s.sum(1), inc_abs + s.abs().sum(1)
        if lay.bias is not None:
            b = _get(S, lay.bias)
            inc, inc_abs = inc + b, inc_abs + b.abs()
    for name in site.modules:  # a BatchNorm shift acts as the unit's bias
        m = graph.modules[name]
        if isinstance(m, BATCHNORM) and m.affine:
            b = _get(S, _key(name, "bias"))
            inc, inc_abs = inc + b, inc_abs + b.abs()
    return inc, inc_abs


def _outgoing(graph: LayerGraph, site: Site, S):
    c = site.channels
    out = out_abs = 0
    for name in site.consumers:
        lay = graph.layers[name]
        m, s = lay.module, _get(S, lay.weight)
        if isinstance(m, nn.Conv2d):
            if m.in_channels != c:
                raise ValueError(f"{name!r} reads {m.in_channels} channels but the layers "
                                 f"before it give {c}")
            s = s.reshape(m.groups, m.out_channels // m.groups, m.in_channels // m.groups, -1)
            dims = (1, 3)
        else:
            if m.in_features % c:
                raise ValueError(f"{name!r} reads {m.in_features} features, which cannot be "
                                 f"grouped into the {c} channels before it")
            s, dims = s.reshape(m.out_features, c, m.in_features // c), (0, 2)
        out = out + s.sum(dims).reshape(c)
        out_abs = out_abs + s.abs().sum(dims).reshape(c)
    return out, out_abs


def hidden_sites(graph: LayerGraph) -> list[Site]:
    """Sites whose units are hidden: read by some layer, fed by no input, and not
    part of the output."""
    return [s for s in graph.sites
            if s.consumers and not s.touches_input and not s.touches_output]


def neuron_flows(model: nn.Module, S: dict, *, input_shape=None, device=None,
                 graph: LayerGraph | None = None) -> list[dict]:
    """Incoming and outgoing saliency of every hidden unit (Fig. 3).

    For a neuron, "incoming" is the saliency of its weights plus its bias (plus the
    shift of a BatchNorm after it), and "outgoing" that of the next layers' weights
    that read it. A conv channel sums its filter over (in, kh, kw); its outgoing
    sums the next conv's weights over (out, kh, kw), or, after a flatten, the next
    Linear's columns of that channel. Pooling, activations, BatchNorm and residual
    adds may sit in between. Layers added together by a residual connection form one
    hidden layer, named ``"a+b"``; an identity skip carries its flow on, so in and
    out still balance per channel.

    Returns one dict per hidden layer, in execution order: ``{"layer": module name(s),
    "consumers": [...], "incoming": ndarray, "outgoing": ndarray, "scale": ndarray}``,
    where ``scale`` sums the absolute saliencies involved (what rounding errors scale
    with). Neuron-wise conservation says ``incoming == outgoing``.

    The sums run where ``S`` lives, or on ``device``. Raises ValueError naming any
    layer between two prunable layers that may mix channels (or that has parameters
    of its own).
    """
    S = _on(S, device)
    graph = graph or trace(model, _resolve_shape(model, input_shape))
    result = []
    for site in hidden_sites(graph):
        _check_site(graph, site)
        inc, inc_abs = _incoming(graph, site, S)
        out, out_abs = _outgoing(graph, site, S)
        scale = torch.maximum(inc_abs, out_abs)
        result.append({
            "layer": "+".join(site.producers),
            "consumers": list(site.consumers),
            "incoming": inc.detach().double().cpu().numpy(),
            "outgoing": out.detach().double().cpu().numpy(),
            "scale": scale.detach().double().cpu().numpy(),
        })
    return result


# ----------------------------------------------------------------------- flow ratio

def flow_ratio(history, *, denominator: str = "min_layer") -> np.ndarray:
    """The synaptic-flow ratio of every pruning iteration (the paper's Fig. 7): the
    summed score of the weights removed in that iteration over the total flow of a cut.

    Args:
        history: the list that ``nbkit.pruning.prune(..., history=[])`` fills, one dict
            per iteration with ``"removed_score"`` and ``"layer_score_totals"`` (and
            ``"objective"``).
        denominator: ``"min_layer"`` (default) divides by the smallest layer total of
            that iteration, the weakest cut; ``"objective"`` divides by R, which is the
            flow of every cut in a bias-free network.

    Once the ratio stays below 1, an iteration never removes a whole cut's flow, which
    is how iterative SynFlow avoids layer collapse.
    """
    if denominator not in ("min_layer", "objective"):
        raise ValueError(f'denominator must be "min_layer" or "objective", got {denominator!r}')
    history = list(history)
    if not history:
        raise ValueError("the pruning history is empty; pass history=[] to "
                         "nbkit.pruning.prune and give that list here")
    ratios = []
    for i, h in enumerate(history):
        need = ("removed_score", "layer_score_totals" if denominator == "min_layer"
                else "objective")
        missing = [k for k in need if not isinstance(h, dict) or k not in h]
        if missing:
            raise ValueError(f"pruning history entry {i} lacks {missing}; it must come from "
                             "nbkit.pruning.prune(..., history=[])")
        if denominator == "min_layer":
            den = min(float(v) for v in h["layer_score_totals"].values())
        else:
            den = float(h["objective"])
        ratios.append(float(h["removed_score"]) / den if den else math.inf)
    return np.asarray(ratios, dtype=np.float64)
