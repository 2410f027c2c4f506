"""Alignment probes, per layer, for plots over training.

- :func:`alignment_angles`: the angle between W and Bᵀ (0° is backprop, ~90° is FA at
  its random start);
- :func:`gradient_angles`: the angle of the error each layer sends back, in two kinds.
  ``kind="global"`` (the default): the δx the layer sends when every layer uses its rule,
  against the δx it sends when every layer uses backprop, on the same batch (whether
  learning follows the true gradient; errors compound through depth).
  ``kind="local"`` ([TR]'s logged angle): the same incoming δy sent through B and through
  Wᵀ, i.e. the angle between B δy and Wᵀ δy (what this layer alone does to the error);
- :func:`norm_ratios`: ‖B‖ / ‖W‖.

Every Linear and Conv2d layer is reported, keyed by module name; layers still on
backprop (never converted, or left out by ``strict=False``) have B = Wᵀ (0°, ratio 1).
Each call syncs with the device once, so call them only when logging.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from .functions import feedback_kernel
from .layers import FeedbackLayer

__all__ = ["alignment_angles", "gradient_angles", "norm_ratios", "weight_layers", "angle"]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every Linear and Conv2d layer, converted or not."""
    return [(n or type(m).__name__, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))]


def _kernel(m: nn.Module) -> torch.Tensor:
    w = m.weight.detach()
    if not isinstance(m, FeedbackLayer) or m._override == "exact":
        return w
    fb = m.masked_feedback()
    return feedback_kernel(m._plan, w, None if fb is None else fb.detach())


def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The angle in degrees between two tensors seen as vectors (a 0-d tensor; NaN when
    one of them is zero). Uses 2·atan2(‖â − b̂‖, ‖â + b̂‖), accurate near 0° and 180°."""
    a = a.detach().flatten().to(torch.promote_types(a.dtype, torch.float32))
    b = b.detach().flatten().to(a.dtype)
    a = a / a.norm()
    b = b / b.norm()
    return torch.rad2deg(2 * torch.atan2((a - b).norm(), (a + b).norm()))


def _floats(values: dict) -> dict:
    if not values:
        return {}
    flat = torch.stack([v.float() for v in values.values()]).tolist()
    return dict(zip(values, flat))


@torch.no_grad()
def alignment_angles(model: nn.Module) -> dict[str, float]:
    """``{layer_name: degrees}`` between W and Bᵀ (the ``feedback`` tensor; for a conv,
    the kernels compared as vectors)."""
    return _floats({n: angle(m.weight, _kernel(m)) for n, m in weight_layers(model)})


@torch.no_grad()
def norm_ratios(model: nn.Module) -> dict[str, float]:
    """``{layer_name: ‖B‖ / ‖W‖}``."""
    return _floats({n: _kernel(m).float().norm() / m.weight.detach().float().norm()
                    for n, m in weight_layers(model)})


@contextlib.contextmanager
def _override(model: nn.Module, mode):
    layers = [m for m in model.modules() if isinstance(m, FeedbackLayer)]
    saved = [m.__dict__.get("_override") for m in layers]
    for m in layers:
        m._override = mode
    try:
        yield
    finally:
        for m, s in zip(layers, saved):
            m._override = s


def _sent_gradients(model, layers, x, y, loss_fn) -> dict[str, list]:
    """The δx each layer sends to its input: each layer's input is replaced by an alias
    of its own, and the loss is differentiated with respect to the aliases."""
    aliases = {name: [] for name, _ in layers}

    def make_hook(name):
        def hook(_module, args):
            inp = args[0]
            alias = inp.view_as(inp) if inp.requires_grad else inp.detach().requires_grad_()
            aliases[name].append(alias)
            return (alias, *args[1:])
        return hook

    handles = [m.register_forward_pre_hook(make_hook(n)) for n, m in layers]
    try:
        loss = loss_fn(model(x), y)
    finally:
        for h in handles:
            h.remove()
    flat = [(n, a) for n, lst in aliases.items() for a in lst]
    grads = torch.autograd.grad(loss, [a for _, a in flat], allow_unused=True)
    out = {name: [] for name, _ in layers}
    for (n, a), g in zip(flat, grads):
        out[n].append(torch.zeros_like(a) if g is None else g)
    return out


KINDS = ("global", "local")


def gradient_angles(model: nn.Module, batch, loss_fn=None, *,
                    kind: str = "global") -> dict[str, float]:
    """``{layer_name: degrees}`` for one batch ``(x, y)``: with ``kind="global"``
    between the δx each layer sends under its rule and the δx it sends when every layer
    uses backprop; with ``kind="local"`` between B δy and Wᵀ δy for the δy that reaches
    the layer under its rule (see the module docstring).

    The model keeps its train/eval mode; BatchNorm running statistics, parameter
    gradients and the RNG state are left as they were. ``loss_fn(output, y)`` defaults
    to cross-entropy.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    x, y = batch
    loss_fn = loss_fn or (lambda out, t: F.cross_entropy(out.float(), t))
    layers = weight_layers(model)
    if not layers:
        return {}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            if kind == "local":
                with _override(model, "nograd"):
                    return _local_angles(model, layers, x, y, loss_fn)
            with _override(model, "nograd"):
                rule = _sent_gradients(model, layers, x, y, loss_fn)
            with _override(model, "exact"):
                true = _sent_gradients(model, layers, x, y, loss_fn)
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
    values = {}
    for n, _ in layers:
        if rule[n]:
            a = torch.cat([g.flatten() for g in rule[n]])
            b = torch.cat([g.flatten() for g in true[n]])
            values[n] = angle(a, b)
        else:
            values[n] = torch.tensor(math.nan)
    return _floats({n: v.to(x.device) for n, v in values.items()})


def _incoming(model, layers, x, y, loss_fn):
    """Per layer, its inputs and the δy that reached its output, for each call."""
    seen = {name: [] for name, _ in layers}

    def make_hook(name):
        def hook(_module, args, out):
            seen[name].append((args[0].detach(), out))
        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in layers]
    try:
        loss = loss_fn(model(x), y)
    finally:
        for h in handles:
            h.remove()
    flat = [(n, inp, out) for n, calls in seen.items() for inp, out in calls
            if out.requires_grad]
    grads = torch.autograd.grad(loss, [out for _, _, out in flat], allow_unused=True)
    got = {name: [] for name, _ in layers}
    for (n, inp, out), g in zip(flat, grads):
        got[n].append((inp, torch.zeros_like(out) if g is None else g.detach()))
    return got


def _local_angles(model, layers, x, y, loss_fn) -> dict[str, float]:
    incoming = _incoming(model, layers, x, y, loss_fn)
    values = {}
    for name, m in layers:
        calls = incoming[name]
        if not calls:
            values[name] = torch.tensor(math.nan)
            continue
        if not isinstance(m, FeedbackLayer) or m._plan.feedback == "transpose":
            values[name] = torch.zeros((), device=calls[0][0].device)  # B is Wᵀ
            continue
        kernel, w, ops = _kernel(m), m.weight.detach(), m._plan.ops
        sent, true = [], []
        for inp, g in calls:
            if ops.kind == "linear":
                inp, g = inp.reshape(-1, inp.shape[-1]), g.reshape(-1, g.shape[-1])
            elif getattr(m, "_pre_pad", None) is not None:
                inp = F.pad(inp, m._pre_pad, mode=m._pad_mode)
            inp, g = inp.to(w.dtype), g.to(w.dtype)
            sent.append(ops.input_grad(g, kernel.to(w.dtype), inp).flatten())
            true.append(ops.input_grad(g, w, inp).flatten())
        values[name] = angle(torch.cat(sent), torch.cat(true))
    return _floats(values)
