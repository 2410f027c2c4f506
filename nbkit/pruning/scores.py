"""The five pruning scores of the SynFlow paper, in a registry.

Every scorer fills ``out[name]`` with one score per weight; higher means keep. The
weights arrive as stand-in tensors ``weights[name]`` holding the current effective
weights θ ⊙ m (|θ| ⊙ m for SynFlow): the scorer runs the model with them through
:func:`~nbkit.pruning.functional.substitute`, so the model itself is never written to.
Scores of masked weights are ignored by the pruning loop (they count as -inf).

| name      | score                                          | data |
|-----------|------------------------------------------------|------|
| random    | i.i.d. N(0, 1)                                 | no   |
| magnitude | \\|θ\\|                                        | no   |
| snip      | \\|∂L/∂θ ⊙ θ\\| / (sum over all weights)       | yes  |
| grasp     | (H g) ⊙ θ, g = ∂L/∂θ, logits / 200; keep high  | yes  |
| synflow   | \\|∂R/∂θ ⊙ θ\\|, R = 1ᵀ(∏ₗ\\|θ⁽ˡ⁾\\|)1         | no   |

L is the cross-entropy (mean over a batch) summed over the pruning batches.

A *variant* scores like another entry with different settings, and is left out of
:func:`names` unless asked for: ``grasp_paper`` is GraSP as the SynFlow paper's own code
ran it when it made the published Fig. 1 and Fig. 6 (temperature 1, keep high -(H g) ⊙ θ;
the code gained T = 200 on 23 June 2020 and flipped the sign on 7 August 2020).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import layers as _layers
from .functional import linearized, ones_input, substitute
from .masks import is_pruned, locate

__all__ = ["Scorer", "ScoreContext", "SCORERS", "register", "names", "get", "needs_data",
           "iterations_for", "label", "published_as", "GRASP_TEMPERATURE"]

GRASP_TEMPERATURE = 200.0  # Wang et al.'s, and the SynFlow code's since 23 June 2020


@dataclass
class ScoreContext:
    """What a scorer may need besides the model and the weights.

    alive: ``{name: bool tensor}``, the current masks (views kept up to date).
    batches: ``[(x, y), ...]`` on the model's device, for data-driven scores.
    input_shape: shape of one input for data-free passes (None: see DESIGN).
    cache: scratch space kept across the iterations of one pruning run.
    linearize: score the network with its activations removed (SynFlow only).
    temperature: what the logits are divided by, for a scorer that has a temperature
        (None: the scorer's own, :attr:`Scorer.temperature`).
    """

    alive: dict
    batches: list = field(default_factory=list)
    input_shape: tuple | None = None
    cache: dict = field(default_factory=dict)
    linearize: bool = False
    temperature: float | None = None


@dataclass(frozen=True)
class Scorer:
    """A registered score. ``fn(model, weights, out, ctx)`` fills ``out`` and returns
    the objective it differentiated (a 0-d tensor) or None.

    needs_data: SNIP and GraSP need pruning batches.
    absolute: the scorer wants |θ| ⊙ m as its weights (SynFlow).
    abs_scores: the score is the absolute value of what ``fn`` writes; the pruning loop
        takes it on the weights still alive only (cheaper than on every weight).
    iterations: how many times the paper re-scores on the way to a density (SynFlow:
        100; the single-shot pruners: 1). The default of every sweep and study.
    needs_input_shape: the score runs the model on a made-up input (SynFlow's all-ones
        input), so it needs the shape of one input.
    label: the display name ("SynFlow").
    flows: the score is a gradient of an objective through the network, so a layer
        whose scores are all 0 (or not finite) is a layer the objective does not reach:
        pruning it would be arbitrary, and the pruning loop refuses.
    linearizable: the scorer can score the linearised network (``linearize=True``).
    temperature: the scorer divides the logits by this temperature by default, and takes
        ``temperature=`` (GraSP: 200; None: it has no temperature).
    variant_of: the entry this one is a variant of (same score, other settings); such
        an entry is compared with its parent's published numbers and is listed by
        :func:`names` only with ``variants=True``.
    """

    name: str
    fn: Callable
    needs_data: bool = False
    absolute: bool = False
    doc: str = ""
    abs_scores: bool = False
    iterations: int = 1
    needs_input_shape: bool = False
    label: str = ""
    flows: bool = False
    linearizable: bool = False
    temperature: float | None = None
    variant_of: str | None = None


SCORERS: dict[str, Scorer] = {}


def register(name: str, *, needs_data: bool = False, absolute: bool = False,
             abs_scores: bool = False, iterations: int = 1, needs_input_shape: bool = False,
             label: str | None = None, flows: bool = False, linearizable: bool = False,
             temperature: float | None = None, variant_of: str | None = None):
    """Decorator adding a scorer function to :data:`SCORERS`."""
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"scorer {name!r}: iterations must be a positive int, got "
                         f"{iterations!r}")
    if variant_of is not None and variant_of not in SCORERS:
        raise ValueError(f"scorer {name!r}: variant_of={variant_of!r} is not registered")

    def deco(fn):
        SCORERS[name] = Scorer(name, fn, needs_data, absolute, (fn.__doc__ or "").strip(),
                               abs_scores, iterations, needs_input_shape,
                               label or name, flows, linearizable, temperature, variant_of)
        return fn
    return deco


def names(variants: bool = False) -> list[str]:
    """The registered score names, in registration order; ``variants=True`` adds the
    variants (``grasp_paper``)."""
    return [n for n, s in SCORERS.items() if variants or s.variant_of is None]


def published_as(method: str) -> str:
    """The name under which the papers publish ``method``'s numbers: a variant's are its
    parent's (the paper's GraSP curves were made by the code ``grasp_paper`` reproduces)."""
    scorer = SCORERS.get(method.lower() if isinstance(method, str) else method)
    return scorer.variant_of if scorer is not None and scorer.variant_of else method


def temperature_for(scorer: Scorer, temperature: float | None) -> float | None:
    """The temperature a run of ``scorer`` uses: ``temperature`` when given (checked),
    else the scorer's own."""
    if temperature is None:
        return scorer.temperature
    if scorer.temperature is None:
        with_t = [n for n, s in SCORERS.items() if s.temperature is not None]
        raise ValueError(f"{scorer.name!r} has no temperature; temperature= applies to "
                         f"{', '.join(map(repr, with_t))}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return float(temperature)


def needs_data(method: str) -> bool:
    """Whether ``method`` scores with pruning batches (SNIP and GraSP do)."""
    return get(method).needs_data


def label(method: str) -> str:
    """The display name of ``method`` ("SynFlow"); the name itself if not registered."""
    return SCORERS[method].label if method in SCORERS else method


def iterations_for(method: str, cap: int | None = None) -> int:
    """The number of iterations ``method`` prunes in: the paper's (SynFlow 100, the
    single-shot pruners 1), at most ``cap`` when given (quick mode's smaller budget)."""
    n = get(method).iterations
    if cap is None:
        return n
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"an iteration cap must be a positive int or None, got {cap!r}")
    return min(n, cap)


def get(method: str) -> Scorer:
    """The scorer called ``method`` (case-insensitive); ValueError listing the valid ones."""
    key = method.lower() if isinstance(method, str) else method
    if key not in SCORERS:
        raise ValueError(f"unknown pruning method {method!r}; valid methods are: "
                         f"{', '.join(SCORERS)}")
    return SCORERS[key]


def _require_grad(weights: dict) -> list:
    ws = list(weights.values())
    for w in ws:
        if not w.requires_grad:
            w.requires_grad_(True)
    return ws


def _write(out: dict, grads, first: bool) -> None:
    for o, g in zip(out.values(), grads):
        if g is None:
            if first:
                o.zero_()
        elif first:
            o.copy_(g)
        else:
            o.add_(g)


@register("random", label="Random")
def random(model: nn.Module, weights: dict, out: dict, ctx: ScoreContext):
    """i.i.d. standard normal scores: globally thresholded, uniform random pruning."""
    for o in out.values():
        o.normal_()


@register("magnitude", label="Magnitude")
def magnitude(model, weights, out, ctx):
    """|θ|."""
    for w, o in zip(weights.values(), out.values()):
        torch.abs(w.detach(), out=o)


def _contiguous(weights: dict) -> dict:
    """Differentiable contiguous copies: batched convolutions prefer the usual layout."""
    return {n: w if w.is_contiguous() else w.contiguous() for n, w in weights.items()}


def _losses(model, batches, temperature=1.0):
    for x, y in batches:
        logits = _layers.logits(model(x), "SNIP and GraSP")
        if temperature != 1.0:
            logits = logits / temperature
        yield F.cross_entropy(logits, y)


@register("snip", needs_data=True, label="SNIP", flows=True)
def snip(model, weights, out, ctx):
    """|∂L/∂θ ⊙ θ|, normalised by its sum over all prunable weights. Returns L."""
    ws = _require_grad(weights)
    total = None
    with substitute(model, _contiguous(weights)):
        for i, loss in enumerate(_losses(model, ctx.batches)):
            _write(out, torch.autograd.grad(loss, ws, allow_unused=True), i == 0)
            total = loss.detach() if total is None else total + loss.detach()
    norm = torch.zeros((), dtype=torch.float64, device=ws[0].device)
    for w, o in zip(ws, out.values()):
        o.mul_(w.detach()).abs_()
        norm += o.sum(dtype=torch.float64)
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    for o in out.values():
        o.div_(norm.to(o.dtype))
    return total


def _hessian_gradient(model, weights, out, ctx, temperature):
    """Write H g into ``out``, g = ∂L/∂θ over the weights still alive, H the Hessian of L,
    with the logits divided by ``temperature``; returns L. Attention runs on PyTorch's
    math kernel here: the fused ones have no second derivative."""
    ws = _require_grad(weights)
    with substitute(model, _contiguous(weights)), sdpa_kernel([SDPBackend.MATH]):
        total = None
        for i, loss in enumerate(_losses(model, ctx.batches, temperature)):
            _write(out, torch.autograd.grad(loss, ws, allow_unused=True), i == 0)
            total = loss.detach() if total is None else total + loss.detach()
        g = [o * a for o, a in zip(out.values(), ctx.alive.values())]
        for i, loss in enumerate(_losses(model, ctx.batches, temperature)):
            grads = torch.autograd.grad(loss, ws, create_graph=True, allow_unused=True)
            z = sum((gr * gi).sum() for gr, gi in zip(grads, g) if gr is not None)
            if not torch.is_tensor(z) or not z.requires_grad:
                hg = [None] * len(ws)
            else:
                hg = torch.autograd.grad(z, ws, allow_unused=True)
            _write(out, hg, i == 0)
    return total


@register("grasp", needs_data=True, label="GraSP", flows=True,
          temperature=GRASP_TEMPERATURE)
def grasp(model, weights, out, ctx):
    """(H g) ⊙ θ with g = ∂L/∂θ (masked weights excluded), H the Hessian of L, logits
    divided by a temperature (200 unless ``temperature=`` is given). The lowest scores
    are pruned: removing those weights reduces the gradient norm least. Returns L (with
    the temperature)."""
    total = _hessian_gradient(model, weights, out, ctx, ctx.temperature or GRASP_TEMPERATURE)
    for w, o in zip(weights.values(), out.values()):
        o.mul_(w.detach())
    return total


@register("grasp_paper", needs_data=True, label="GraSP (T=1)", flows=True,
          temperature=1.0, variant_of="grasp")
def grasp_paper(model, weights, out, ctx):
    """GraSP as the SynFlow paper's code ran it for the published figures: -(H g) ⊙ θ,
    the highest kept, with the logits divided by a temperature of 1 (unless
    ``temperature=`` is given). Returns L."""
    total = _hessian_gradient(model, weights, out, ctx, ctx.temperature or 1.0)
    for w, o in zip(weights.values(), out.values()):
        o.mul_(w.detach()).neg_()
    return total


@register("synflow", absolute=True, abs_scores=True, iterations=100, needs_input_shape=True,
          flows=True, linearizable=True,
          label="SynFlow")
def synflow(model, weights, out, ctx):
    """|∂R/∂θ ⊙ θ| with R the sum of the output of the |θ| network (eval mode) on one
    all-ones input. Writes ∂R/∂θ ⊙ |θ| (nonnegative in a network of ReLUs, pooling,
    BatchNorm and adds); the loop takes the absolute value. Returns R."""
    state = ctx.cache.get("synflow")
    if state is None:
        w0 = next(iter(weights.values()))
        skip = set()
        for name in weights:
            module, attr = locate(model, name)
            skip.update((f"{name}_orig", f"{name}_mask") if is_pruned(module, attr) else (name,))
        mirror = {n: t.detach().abs().to(w0.dtype)
                  for n, t in list(model.named_parameters()) + list(model.named_buffers())
                  if t.is_floating_point() and n not in skip}
        mirror.update(weights)
        x = ones_input(model, ctx.input_shape, dtype=w0.dtype, device=w0.device)
        if x.dim() == 4 and any(w.dim() == 4 for w in weights.values()):
            x = x.contiguous(memory_format=torch.channels_last)
        state = ctx.cache["synflow"] = (mirror, x, _require_grad(weights))
    mirror, x, ws = state
    with substitute(model, mirror), linearized(model) if ctx.linearize else nullcontext():
        R = _layers.logits(model(x), "SynFlow").sum()
    grads = torch.autograd.grad(R, ws, allow_unused=True)
    for w, g, o in zip(ws, grads, out.values()):
        if g is None:
            o.zero_()
        else:
            torch.mul(g, w.detach(), out=o)  # w = |θ| >= 0
    return R.detach()
