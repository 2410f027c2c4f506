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

Direct feedback alignment (DFA) has no B: a layer sends δx = D e, the output error e
through its fixed D (see :mod:`.direct`). Its probes compare D with what backprop uses in
its place, the transposed Jacobian of the network's output with respect to the layer's
input. That Jacobian depends on the example, so the weight angle of a DFA layer is the
angle between D and the *mean true feedback* J̄ = E_batch[∂(network output)/∂(layer
input)] (D's shape, ``(n_out, *one example's input shape)``: row k is the δx that full
backprop sends for an error of 1 on output k at every example of the batch, averaged over
the examples), and its norm ratio is ‖D‖ / ‖J̄‖. Both need a batch, and cost n_out extra
backward passes over it; without one they are NaN. ~90° at the start (D is random); it
falls when the network aligns its forward weights to D, DFA's "alignment". The local δ
angle of a DFA layer is between D e and Wᵀ δy (δy being what reaches its output); the
global one needs nothing special.

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

from .direct import input_grad
from .functions import feedback_kernel
from .layers import PLAIN_CLASSES, FeedbackLayer, override, plain_class

__all__ = ["alignment_angles", "gradient_angles", "norm_ratios", "weight_layers", "angle"]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every Linear and Conv2d layer, converted or not."""
    return [(n or type(m).__name__, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))]


def _is_direct(m: nn.Module) -> bool:
    return isinstance(m, FeedbackLayer) and m._override != "exact" and m.direct


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


def alignment_angles(model: nn.Module, batch=None) -> dict[str, float]:
    """``{layer_name: degrees}`` between W and Bᵀ (the ``feedback`` tensor; for a conv,
    the kernels compared as vectors); for a DFA layer between D and the mean true
    feedback J̄ on ``batch`` (an ``(x, y)`` pair or x; NaN without one; see the module
    docstring)."""
    return weight_probes(model, batch)[0]


def norm_ratios(model: nn.Module, batch=None) -> dict[str, float]:
    """``{layer_name: ‖B‖ / ‖W‖}``; for a DFA layer ‖D‖ / ‖J̄‖ on ``batch`` (NaN without
    one; see :func:`alignment_angles`)."""
    return weight_probes(model, batch)[1]


def weight_probes(model: nn.Module, batch=None) -> tuple[dict, dict]:
    """(:func:`alignment_angles`, :func:`norm_ratios`), computing J̄ once."""
    layers = weight_layers(model)
    direct = [(n, m) for n, m in layers if _is_direct(m)]
    jbar = {}
    if direct and batch is not None:
        jbar = _mean_feedback(model, direct, batch[0] if isinstance(batch, (tuple, list))
                              else batch)
    angles, ratios = {}, {}
    with torch.no_grad():
        for n, m in layers:
            if _is_direct(m):
                d, j = m.direct_feedback, jbar.get(n)
                nan = torch.tensor(math.nan, device=d.device)
                angles[n] = nan if j is None else angle(d, j)
                ratios[n] = nan if j is None else d.float().norm() / j.float().norm()
            else:
                k = _kernel(m)
                angles[n] = angle(m.weight, k)
                ratios[n] = k.float().norm() / m.weight.detach().float().norm()
    return _floats(angles), _floats(ratios)


@contextlib.contextmanager
def _preserved(model: nn.Module, x: torch.Tensor):
    """Gradients on; the buffers (BatchNorm statistics) and the RNG as they were after."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


@contextlib.contextmanager
def _aliased_inputs(layers):
    """``{name: [alias, ...]}``, filled as the layers run inside the block: each layer's
    input replaced by an alias of its own (one per call) that requires grad."""
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
        yield aliases
    finally:
        for h in handles:
            h.remove()


def _mean_feedback(model, layers, x) -> dict[str, torch.Tensor]:
    """J̄ per layer: the batch mean of ∂(network output)/∂(layer input) under full
    backprop, shape ``(n_out, *one example's input shape)``, from n_out backward passes
    (row k: the δx for an error of 1 on output k at every example, over the examples)."""
    rows = {n: [] for n, _ in layers}
    with _preserved(model, x), override(model, "exact"):
        with _aliased_inputs(layers) as aliases:
            out = model(x)
        out = out.reshape(out.shape[0], -1)
        flat = [(n, a) for n, lst in aliases.items() for a in lst]
        for k in range(out.shape[1]):
            grads = torch.autograd.grad(out[:, k].sum(), [a for _, a in flat],
                                        allow_unused=True, retain_graph=k < out.shape[1] - 1)
            total = {}
            for (n, a), g in zip(flat, grads):
                g = torch.zeros_like(a) if g is None else g
                total[n] = total.get(n, 0) + g.sum(0) / a.shape[0]
            for n, t in total.items():
                rows[n].append(t.detach())
    return {n: torch.stack(r) for n, r in rows.items() if r}


def _sent_gradients(model, layers, x, y, loss_fn) -> dict[str, list]:
    """The δx each layer sends to its input: each layer's input is replaced by an alias
    of its own, and the loss is differentiated with respect to the aliases."""
    with _aliased_inputs(layers) as aliases:
        loss = loss_fn(model(x), y)
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
    with _preserved(model, x):
        if kind == "local":
            with override(model, "nograd"):
                return _local_angles(model, layers, x, y, loss_fn)
        with override(model, "nograd"):
            rule = _sent_gradients(model, layers, x, y, loss_fn)
        with override(model, "exact"):
            true = _sent_gradients(model, layers, x, y, loss_fn)
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
    """Per layer, its inputs and the δy that reached its output, for each call; and the
    error e at the model's output."""
    seen = {name: [] for name, _ in layers}

    def make_hook(name):
        def hook(_module, args, out):
            seen[name].append((args[0].detach(), out))
        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in layers]
    try:
        output = model(x)
        loss = loss_fn(output, y)
    finally:
        for h in handles:
            h.remove()
    flat = [(n, inp, out) for n, calls in seen.items() for inp, out in calls
            if out.requires_grad]
    tensor = isinstance(output, torch.Tensor) and output.requires_grad  # (DFA: always)
    grads = torch.autograd.grad(loss, [out for _, _, out in flat] + ([output] if tensor else []),
                                allow_unused=True)
    got = {name: [] for name, _ in layers}
    for (n, inp, out), g in zip(flat, grads):
        got[n].append((inp, torch.zeros_like(out) if g is None else g.detach()))
    error = None
    if tensor:
        error = torch.zeros_like(output) if grads[-1] is None else grads[-1].detach()
    return got, error


def _exact_input_grad(m: nn.Module, inp: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Wᵀ δy: what plain backprop sends from ``m``'s output gradient ``g`` to ``inp``."""
    with torch.enable_grad():
        xi = inp.detach().requires_grad_()
        out = PLAIN_CLASSES[plain_class(m)].forward(m, xi)
        return torch.autograd.grad(out, xi, g.to(out.dtype))[0]


def _local_angles(model, layers, x, y, loss_fn) -> dict[str, float]:
    incoming, error = _incoming(model, layers, x, y, loss_fn)
    values = {}
    for name, m in layers:
        calls = incoming[name]
        if not calls:
            values[name] = torch.tensor(math.nan)
            continue
        if not isinstance(m, FeedbackLayer) or m._plan.feedback == "transpose":
            values[name] = torch.zeros((), device=calls[0][0].device)  # B is Wᵀ
            continue
        if m.direct:  # D e against Wᵀ δy, both at the module's own input
            sent = [input_grad(error, m.direct_feedback, inp.shape).flatten() for inp, _ in calls]
            true = [_exact_input_grad(m, inp, g).flatten() for inp, g in calls]
            values[name] = angle(torch.cat(sent), torch.cat(true))
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
