"""Synaptic saliency S = dR/dθ ⊙ θ of an objective R, for every parameter.

The objective is computed on a copy of the model, moved to the probe's device and
dtype (float64 by default), so the model itself never changes: not its parameters,
buffers, train/eval flags, ``requires_grad`` or ``.grad``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import device as _device
from .graph import canonical_name

__all__ = ["saliency", "OBJECTIVES", "Objective", "Saliency", "compute"]


@dataclass(frozen=True)
class Objective:
    """A named objective R whose saliency the probes measure.

    fn: ``(working copy, data, input_shape, device) -> R`` (a scalar tensor).
    needs_data: R is computed on ``(x, y)`` batches (the loss).
    needs_input_shape: R runs the model on a made-up input of one input's shape.
    flows: R is computed by a pass through the network, so the conservation laws can
        hold for it (the magnitude ½‖θ‖² does not pass through the network at all).
    batchnorm_as_affine: R is evaluated in eval mode, so a BatchNorm layer acts as a
        fixed affine map whatever its own train/eval flag (SynFlow).
    formula: R in symbols, for messages.
    """

    name: str
    fn: object
    needs_data: bool = False
    needs_input_shape: bool = False
    flows: bool = True
    batchnorm_as_affine: bool = False
    formula: str = ""


@dataclass
class Saliency:
    """Everything one objective evaluation gives: the saliency per parameter, R itself,
    and the input flow <dR/dx, x> summed over every input the model was called with
    (None when R does not depend on an input)."""

    scores: dict
    value: float
    input_flow: float | None
    input_flow_abs: float | None
    objective: str


def _batches(data):
    if data is None:
        raise ValueError('objective="loss" needs data: an (x, y) batch or an iterable of '
                         "(x, y) batches (random tensors are fine for a probe)")
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        return [tuple(data)]
    batches = list(data)
    for b in batches:
        if not (isinstance(b, (tuple, list)) and len(b) >= 2 and torch.is_tensor(b[0])):
            raise ValueError("data must be an (x, y) batch or an iterable of (x, y) batches")
    if not batches:
        raise ValueError("data holds no batch")
    return [tuple(b[:2]) for b in batches]


def _synflow(work, data, input_shape, dev):
    # R on the |θ| network, in eval mode; |θ| is taken out of place, so that
    # dR/dθ ⊙ θ = |θ| ⊙ dR/d|θ|, SynFlow's score
    from .. import pruning

    return pruning.synflow_objective(work, input_shape=input_shape)


def _loss(work, data, input_shape, dev):
    total = 0.0
    for x, y in _batches(data):
        total = total + F.cross_entropy(work(x), y.to(dev))
    return total


def _magnitude(work, data, input_shape, dev):
    return 0.5 * sum((p * p).sum() for p in work.parameters())


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("synflow", _synflow, needs_input_shape=True, batchnorm_as_affine=True),
    Objective("loss", _loss, needs_data=True),
    Objective("magnitude", _magnitude, flows=False, formula="½‖θ‖²"),
)}


def _objective(work, objective, data, input_shape, dev):
    """R on the working copy (inside any |θ| swap the caller set up)."""
    if isinstance(objective, str):
        return OBJECTIVES[objective].fn(work, data, input_shape, dev)
    return objective(work)


def compute(model: nn.Module, objective="synflow", data=None, *, input_shape=None,
            dtype=torch.float64, device=None) -> Saliency:
    """Evaluate ``objective`` on a copy of ``model`` and return a :class:`Saliency`.
    See :func:`saliency` for the arguments."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(objective, str) and objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; use one of {tuple(OBJECTIVES)} "
                         "or a callable model -> scalar")
    if not (isinstance(objective, str) or callable(objective)):
        raise ValueError("objective must be a name or a callable model -> scalar tensor")
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    dev = _device.get(device)
    if isinstance(objective, str) and OBJECTIVES[objective].needs_input_shape:
        from .. import pruning

        input_shape = pruning.resolve_input_shape(model, input_shape)
    work = copy.deepcopy(model).to(device=dev, dtype=dtype)
    for p in work.parameters():
        p.requires_grad_(True)
        p.grad = None
    inputs: list[torch.Tensor] = []

    def capture(module, args, kwargs):
        # every floating input becomes a leaf on the probe's device and dtype, so that
        # <dR/dx, x> can be measured and callables may pass float32 data
        def conv(a):
            if torch.is_tensor(a) and a.is_floating_point():
                a = a.detach().to(device=dev, dtype=dtype).requires_grad_(True)
                inputs.append(a)
            elif torch.is_tensor(a):
                a = a.to(dev)
            return a
        return tuple(conv(a) for a in args), {k: conv(v) for k, v in kwargs.items()}

    handle = work.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.enable_grad():
            r, scores, gx = _differentiate(work, objective, data, input_shape, dev, inputs)
    finally:
        handle.remove()
    flow = flow_abs = None
    if gx:
        flow = float(sum((g * x).sum() for g, x in gx))
        flow_abs = float(sum((g * x).abs().sum() for g, x in gx))
    name = objective if isinstance(objective, str) else getattr(objective, "__name__", "callable")
    return Saliency(scores, r, flow, flow_abs, name)


def _differentiate(work, objective, data, input_shape, dev, inputs):
    r = _objective(work, objective, data, input_shape, dev)
    if not torch.is_tensor(r) or r.numel() != 1:
        what = f"a tensor of shape {tuple(r.shape)}" if torch.is_tensor(r) else type(r).__name__
        raise ValueError(f"the objective must return a scalar (a one-element tensor), "
                         f"got {what}; reduce it, e.g. with .sum()")
    if not r.requires_grad:
        raise ValueError("the objective does not depend on the model's parameters")
    r = r.reshape(())
    named = list(work.named_parameters())
    leaves = [p for _, p in named] + inputs
    grads = torch.autograd.grad(r, leaves, allow_unused=True)
    scores = {}
    for (name, p), g in zip(named, grads[: len(named)]):
        s = torch.zeros_like(p) if g is None else g * p
        scores[canonical_name(name)] = s.detach()
    gx = [(g, x.detach()) for g, x in zip(grads[len(named):], inputs) if g is not None]
    return float(r.detach()), scores, gx


def saliency(model: nn.Module, objective="synflow", data=None, *, input_shape=None,
             dtype=torch.float64, device=None) -> dict[str, torch.Tensor]:
    """Synaptic saliency S = dR/dθ ⊙ θ of every parameter of ``model``.

    Args:
        model: any ``nn.Module``; it is not changed.
        objective: what R is.
            ``"synflow"``: R_SF, the sum of the output of the network with every
            parameter and buffer replaced by its absolute value, in eval mode, on an
            all-ones input; S is then taken on that |θ| network (so S >= 0).
            ``"loss"``: the cross-entropy on ``data``, summed over batches, with the
            model in its current train/eval mode.
            ``"magnitude"``: ½‖θ‖², so S = θ².
            A callable ``model -> scalar tensor``: it gets a copy of the model on the
            probe's device and dtype (floating inputs it feeds are converted).
        data: for ``"loss"``, an ``(x, y)`` batch or an iterable of them.
        input_shape: one input's shape without the batch dimension, for ``"synflow"``;
            by default the shape the model records (see ``nbkit.pruning``).
        dtype: the dtype of the computation (float64 by default, for checks).
        device: where to compute (default: CUDA when available).

    Returns:
        ``{name: tensor}`` keyed like ``model.named_parameters()`` (with pruning's
        reparametrised names mapped back to ``...weight``), on ``device`` in ``dtype``.
    """
    return compute(model, objective, data, input_shape=input_shape, dtype=dtype,
                   device=device).scores
