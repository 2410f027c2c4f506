"""One number per conservation law, and the reason when a law breaks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .flows import _resolve_shape, hidden_sites, layer_abs_totals, layer_totals, neuron_flows
from .graph import _NONHOMOGENEOUS_OPS, BATCHNORM, HOMOGENEOUS, LayerGraph, trace
from .saliency import OBJECTIVES, Saliency, _batches, compute

__all__ = ["conservation_report", "ConservationReport"]


class ConservationReport(dict):
    """A dict of the report's numbers whose ``str`` is the human-readable summary."""

    def __str__(self):
        return self["summary"]


def _rel(diff, scale):
    """|diff| / scale elementwise, 0 where nothing flows at all."""
    diff, scale = np.abs(np.asarray(diff, float)), np.asarray(scale, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(scale > 0, diff / np.where(scale > 0, scale, 1), np.where(diff > 0, 1, 0))
    return float(r.max()) if r.size else 0.0


def _network_residual(totals, abs_totals, ref, ref_abs):
    """Worst |total - ref| / scale over cuts, where ref is <dR/dx, x> when known."""
    names = list(totals)
    if ref is None:
        ref, ref_abs = totals[names[0]], abs_totals[names[0]]
    return max(_rel(totals[n] - ref, max(abs_totals[n], ref_abs or 0.0, abs(ref)))
               for n in names)


def layer_numbers(model: nn.Module, graph: LayerGraph) -> dict[str, int]:
    """Module name -> the number a reader sees: prunable layers count 1, 2, ... from the
    input, as the figures number them; any other module takes the number of the last
    prunable layer before it (0 before the first)."""
    numbers, k = {}, 0
    for name, _ in model.named_modules():
        if name in graph.layers:
            k += 1
        numbers[name] = k
    return numbers


def _layers(numbers: dict, names, after: bool = False) -> str:
    """Plain words for some modules (or their parameters): "layers 1, 3 and 6", or "after
    layer 2" for modules between prunable layers; at most three, then "...". """
    ks = sorted({numbers.get(n, numbers.get(n.rpartition(".")[0], 0)) for n in names})
    shown = ", ".join(map(str, ks[:3])) + (" ..." if len(ks) > 3 else "")
    word = "layer" if len(ks) == 1 else "layers"
    return f"after {word} {shown}" if after else f"{word} {shown}"


def _causes(model: nn.Module, graph: LayerGraph, sal: Saliency, S) -> dict[str, list[str]]:
    """What in this model and objective breaks each law (by what theory says), naming
    layers by number as the figures do (:func:`layer_numbers`)."""
    neuron, network = [], []
    numbers = layer_numbers(model, graph)
    mods = {n for site in graph.sites for n in site.modules} | set(graph.output_modules)
    ops = {o for site in graph.sites for o in site.ops} | set(graph.output_ops)
    objective = OBJECTIVES.get(sal.objective)
    affine_bn = objective is not None and objective.batchnorm_as_affine
    if objective is not None and not objective.flows:
        msg = (f"the {objective.name} objective {objective.formula} does not flow "
               "through the network")
        return {"neuron": [msg], "network": [msg]}
    bad = [n for n in sorted(mods) if not isinstance(graph.modules[n], (*HOMOGENEOUS, *BATCHNORM))]
    bad += sorted({o.split("Backward")[0] for o in ops if o.startswith(_NONHOMOGENEOUS_OPS)})
    if bad:
        kinds = sorted({type(graph.modules[n]).__name__ if n in graph.modules else n for n in bad})
        mods_bad = [n for n in bad if n in graph.modules]
        where = f" {_layers(numbers, mods_bad, after=True)}" if mods_bad else ""
        msg = f"non-homogeneous activation ({', '.join(kinds)}{where})"
        neuron.append(msg)
        network.append(msg)
    bns = [n for n in sorted(mods) if isinstance(graph.modules[n], BATCHNORM)]
    train_bn = [n for n in bns if graph.modules[n].training and not affine_bn]
    if train_bn:
        msg = f"BatchNorm in train mode ({_layers(numbers, train_bn, after=True)})"
        neuron.append(msg)
        network.append(msg)
    shifted = []
    for n in bns:
        m = graph.modules[n]
        if n in train_bn:
            continue
        if m.track_running_stats and m.running_mean is not None and \
                bool((m.running_mean != 0).any()):
            shifted.append(n)
            neuron_msg = f"BatchNorm running mean ({_layers(numbers, [n], after=True)})"
            if neuron_msg not in neuron:
                neuron.append(neuron_msg)
        elif m.affine and bool((m.bias != 0).any()):
            shifted.append(n)
    if shifted:
        network.append(f"BatchNorm shifts ({_layers(numbers, shifted, after=True)})")
    biased = [lay.bias for lay in graph.layers.values()
              if lay.bias is not None and bool((S[lay.bias] != 0).any())]
    if biased:
        network.append(f"biases ({_layers(numbers, biased)})")
    adds = [o for o in ops if o.startswith("AddBackward") and o.endswith("/1")]
    if adds:
        msg = "a constant added inside the network"
        neuron.append(msg)
        network.append(msg)
    lonely = [n for n in graph.layers if not graph.is_cut([n])]
    if lonely:
        verb = "is not a cut by itself" if len(lonely) == 1 else "are not cuts by themselves"
        network.append(f"residual connection: {_layers(numbers, lonely)} {verb}: a skip "
                       "path carries flow around them (see layer_totals(..., by='cut'))")
    return {"neuron": neuron, "network": network}


def conservation_report(model: nn.Module, objective="synflow", data=None, *, input_shape=None,
                        dtype=torch.float64, device=None, tol: float | None = None
                        ) -> ConservationReport:
    """Measure both conservation laws on ``model`` for ``objective`` (as in
    :func:`nbkit.probes.saliency`) and say whether they hold, and if not, why.

    Returns a :class:`ConservationReport` (a dict) with:

    - ``"neuron"``: the worst relative residual |in - out| / max(|in|, |out|) over
      hidden units (absolute sums in the denominator), from :func:`neuron_flows`;
    - ``"network"``: the worst relative residual between a prunable layer's total
      saliency and the input flow <dR/dx, x> (or the first layer's total when R has
      no input);
    - ``"cut"``: the same over minimal cuts (``layer_totals(by="cut")``), which is
      what still holds in a residual network;
    - ``"input_flow"``, ``"objective_value"``, ``"layer_totals"``, ``"cut_totals"``;
    - ``"neuron_holds"``, ``"network_holds"``, ``"holds"`` (both) at ``tol``
      (1e-9 in float64, 1e-4 otherwise);
    - ``"cause"``: None when both laws hold, else what breaks them (biases,
      BatchNorm in train mode, a residual connection, a non-homogeneous activation),
      naming layers by number as the figures do: 1 is the first prunable layer;
    - ``"layers"``: layer number -> module name, to find a named layer in the model;
    - ``"summary"``: lines like "neuron-wise: holds to 3e-12", also the ``str``.
    """
    if tol is None:
        tol = 1e-9 if dtype == torch.float64 else 1e-4
    needs_data = isinstance(objective, str) and OBJECTIVES[objective].needs_data
    if needs_data:
        data = _batches(data)  # once: an iterator is read only once
    sal = compute(model, objective, data, input_shape=input_shape, dtype=dtype, device=device)
    S = sal.scores
    if needs_data:
        shape = tuple(data[0][0].shape[1:])
    else:
        shape = _resolve_shape(model, input_shape)
    graph = trace(model, shape)

    flows = neuron_flows(model, S, graph=graph)
    neuron = max((_rel(f["incoming"] - f["outgoing"], f["scale"]) for f in flows), default=0.0)
    totals, abs_totals = layer_totals(model, S), layer_abs_totals(model, S)
    network = _network_residual(totals, abs_totals, sal.input_flow, sal.input_flow_abs)
    cut_totals = layer_totals(model, S, by="cut", graph=graph)
    cut = (_network_residual(cut_totals, layer_abs_totals(model, S, graph=graph, by="cut"),
                             sal.input_flow, sal.input_flow_abs) if cut_totals else float("nan"))
    neuron_ok, network_ok = neuron <= tol, network <= tol
    causes = _causes(model, graph, sal, S)
    why = []
    if not neuron_ok:
        why += causes["neuron"] or ["unknown: no bias, BatchNorm, skip or non-homogeneous "
                                    "activation found"]
    if not network_ok:
        why += [c for c in causes["network"] if c not in why] or (
            ["unknown: no bias, BatchNorm, skip or non-homogeneous activation found"]
            if neuron_ok else [])
    cause = "; ".join(why) if why else None

    def line(law, value, ok, reasons):
        if ok:
            return f"{law}: holds to {value:.0e}"
        reasons = reasons or ["unknown cause"]
        return f"{law}: breaks (worst relative residual {value:.2g}): {'; '.join(reasons)}"

    lines = [line("neuron-wise", neuron, neuron_ok, causes["neuron"]),
             line("network-wise", network, network_ok, causes["network"])]
    if not network_ok and sal.input_flow:
        # The residual is relative to the absolute saliency, which signed scores (the
        # loss) can dwarf: also say how far the layer totals themselves move.
        ratios = [totals[n] / sal.input_flow for n in totals]
        lines[1] += (f" (layer totals run from {min(ratios):.2f}× to {max(ratios):.2f}× "
                     "the input flow)")
    if not network_ok and cut_totals and cut == cut and cut <= tol and \
            len(cut_totals) != len(totals):
        lines.append(f"network-wise over cuts: holds to {cut:.0e}")
    if not hidden_sites(graph):
        lines[0] = "neuron-wise: no hidden units"
    return ConservationReport(
        neuron=neuron, network=network, cut=cut, input_flow=sal.input_flow,
        objective_value=sal.value, layer_totals=totals, cut_totals=cut_totals,
        neuron_holds=neuron_ok, network_holds=network_ok, holds=neuron_ok and network_ok,
        cause=cause, tol=tol, summary="\n".join(lines),
        layers={k: n for n, k in layer_numbers(model, graph).items() if n in graph.layers})

