"""How pruned a model is: layer densities, layer collapse, effective density, critical
compression.

Effective density (Vysogorets & Kempe 2021) counts only the kept weights that lie on
some input-to-output path of kept weights. It is computed with one SynFlow-like pass
on a positive linear stand-in of the network: every kept weight is 1, every pruned
weight 0, biases, BatchNorm shifts and running means are 0, BatchNorm scales are
positive, activations are the identity and max pooling becomes average pooling (any
input of a pooling window reaches its output). Then R = Σ output is a sum over all
input-output paths, and a kept weight lies on a path iff ∂R/∂m ≠ 0. Activations and
gradients are re-binarised after every linear operation, so nothing overflows or
underflows however deep the net is. This works through conv channels, pooling,
flattening and residual adds.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .functional import eval_mode, ones_input, substitute
from .masks import is_pruned, locate, masks, prunable_parameters
from .prune import prune
from .scores import iterations_for

__all__ = ["layer_density", "collapsed", "effective_masks", "effective_density",
           "disconnected", "critical_compression"]


def _tracked(model: nn.Module, prunable=None) -> dict[str, torch.Tensor]:
    """The prunable parameters plus any other parameter that carries a mask."""
    params = dict(prunable_parameters(model, prunable))
    extra = [n for n in masks(model) if n not in params]
    if extra:
        params.update(prunable_parameters(model, extra))
    return params


def layer_density(model: nn.Module, prunable=None) -> dict[str, float]:
    """``{name: kept fraction}`` for every prunable (or masked) parameter.

    A masked parameter's density is its mask's; an unmasked one counts its nonzero
    entries (so a mask made permanent with ``remove`` still shows).
    """
    params = _tracked(model, prunable)
    current = masks(model)
    fractions = [(current[n] if n in current else p.detach() != 0).float().mean()
                 for n, p in params.items()]
    if not fractions:
        return {}
    return dict(zip(params, torch.stack(fractions).tolist()))


def collapsed(model: nn.Module, prunable=None) -> bool:
    """True if some prunable layer keeps no weight at all (layer collapse)."""
    return any(d == 0 for d in layer_density(model, prunable).values())


# ----------------------------------------------------------------- effective density

class _Binarize(torch.autograd.Function):
    """x ↦ [x ≠ 0] forward, δ ↦ [δ ≠ 0] backward: keeps only the zero pattern."""

    @staticmethod
    def forward(ctx, x):
        return (x != 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return (grad != 0).to(grad.dtype)


_IDENTITY = {
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
    F.leaky_relu, F.leaky_relu_, F.relu6, F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu,
    F.mish, F.hardswish, F.hardtanh, F.hardtanh_, F.softplus, F.tanh, torch.tanh,
    torch.Tensor.tanh, F.sigmoid, torch.sigmoid, torch.Tensor.sigmoid, F.dropout,
    F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
}
_LINEAR = {F.linear, F.conv1d, F.conv2d, F.conv3d, F.batch_norm, torch.matmul,
           torch.Tensor.matmul, torch.Tensor.__matmul__, F.avg_pool1d, F.avg_pool2d,
           F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}
_MAX_POOL = {F.max_pool1d: F.avg_pool1d, F.max_pool2d: F.avg_pool2d, F.max_pool3d: F.avg_pool3d}
_ADAPTIVE_MAX = {F.adaptive_max_pool1d: F.adaptive_avg_pool1d,
                 F.adaptive_max_pool2d: F.adaptive_avg_pool2d,
                 F.adaptive_max_pool3d: F.adaptive_avg_pool3d}
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
              "return_indices")


class _PathMode(TorchFunctionMode):
    """Turns a ReLU/max-pool network into a positive linear one, binarised per layer."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _IDENTITY:
            return args[0] if args else kwargs["input"]
        if func in _MAX_POOL:
            a = {**dict(zip(_POOL_ARGS, args)), **kwargs}
            dilation = a.get("dilation", 1)
            if a.get("return_indices") or any(d != 1 for d in torch.nn.modules.utils._ntuple(
                    3)(dilation)):
                raise ValueError("effective density does not support max pooling with "
                                 "dilation or return_indices")
            out = _MAX_POOL[func](a["input"], a["kernel_size"], a.get("stride"),
                                  a.get("padding", 0), ceil_mode=a.get("ceil_mode", False))
            return _Binarize.apply(out)
        if func in _ADAPTIVE_MAX:
            a = {**dict(zip(("input", "output_size", "return_indices"), args)), **kwargs}
            return _Binarize.apply(_ADAPTIVE_MAX[func](a["input"], a["output_size"]))
        out = func(*args, **kwargs)
        if func in _LINEAR and torch.is_tensor(out) and out.is_floating_point():
            out = _Binarize.apply(out)
        return out


_KNOWN = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.modules.batchnorm._BatchNorm)


def _standin(model: nn.Module, params: dict, dtype) -> dict[str, torch.Tensor]:
    """Stand-in tensors for every parameter and buffer of the positive 0/1 network."""
    current = masks(model)
    tensors = {}
    for name, p in params.items():
        m = current[name] if name in current else p.detach() != 0
        tensors[name] = m.to(dtype).requires_grad_(True)
    skip = set()
    for name in params:
        module, attr = locate(model, name)
        skip.update((f"{name}_orig", f"{name}_mask") if is_pruned(module, attr) else (name,))
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if name in skip or not t.is_floating_point():
            continue
        module, attr = locate(model, name)
        base = attr[:-5] if attr.endswith(("_orig", "_mask")) else attr
        if attr.endswith("_mask"):
            value = t.detach() != 0
        elif base == "bias" or base == "running_mean":
            value = torch.zeros_like(t, dtype=torch.bool)
        elif base == "running_var":
            value = torch.ones_like(t, dtype=torch.bool)
        else:
            value = t.detach() != 0
        tensors[name] = value.to(dtype)
    for mod_name, module in model.named_modules():
        own = list(module._parameters) + list(module._buffers)
        if own and not list(module.children()) and not isinstance(module, _KNOWN):
            raise ValueError(f"effective density supports Linear, Conv, BatchNorm, activations,"
                             f" pooling and residual adds; layer {mod_name!r} is a "
                             f"{type(module).__name__}")
    return tensors


def effective_masks(model: nn.Module, input_shape=None, prunable=None) -> dict[str, torch.Tensor]:
    """``{name: bool}``: the kept weights that lie on some input-to-output path."""
    params = _tracked(model, prunable)
    if not params:
        raise ValueError("the model has no prunable layer (Linear or Conv2d weights)")
    dtype = torch.float64
    tensors = _standin(model, params, dtype)
    x = ones_input(model, input_shape, dtype=dtype)
    with eval_mode(model), substitute(model, tensors), _PathMode():
        out = model(x)
        R = out.sum()
    leaves = [tensors[n] for n in params]
    if R.item() == 0:
        return {n: torch.zeros_like(t, dtype=torch.bool) for n, t in zip(params, leaves)}
    grads = torch.autograd.grad(R, leaves, allow_unused=True)
    return {n: (g != 0) & (t != 0) if g is not None else torch.zeros_like(t, dtype=torch.bool)
            for n, t, g in zip(params, leaves, grads)}


def effective_density(model: nn.Module, input_shape=None, prunable=None) -> float:
    """Fraction of the prunable weights that are kept and on an input-to-output path."""
    eff = effective_masks(model, input_shape, prunable)
    total = sum(m.numel() for m in eff.values())
    return float(sum(m.sum() for m in eff.values())) / total


def disconnected(model: nn.Module, input_shape=None, prunable=None) -> bool:
    """True if no path of kept weights runs from the input to the output."""
    return effective_density(model, input_shape, prunable) == 0.0


# ------------------------------------------------------------- critical compression

def critical_compression(build, method: str, *, iterations: int | None = None,
                         schedule: str = "exponential", scope: str = "global", data=None,
                         device=None, lo: float = 0.0, hi: float | None = None,
                         step: float = 0.25, criterion: str = "collapse",
                         trials: list | None = None, progress: bool = False,
                         **prune_kwargs) -> float | None:
    """The largest log10 ρ on a grid of ``step`` at which ``method`` causes no collapse.

    Bisection over the grid lo, lo + step, ..., hi (as in the paper's Fig. 1), assuming
    that a pruner which collapses a network at ρ also does at every larger ρ.

    Args:
        build: a callable returning a fresh model, or a model (deep-copied per trial).
        method: a pruning method (see :func:`nbkit.pruning.prune`).
        iterations: default 100 for SynFlow and 1 otherwise, as in the paper.
        hi: default the maximal compression ρ_max = N / L (one weight per layer) rounded
            down to the grid.
        criterion: ``"collapse"`` (some layer empty) or ``"disconnect"`` (also fail when
            no input-output path is left).
        trials: a list; ``(log10 ρ, failed)`` is appended for every pruned model.
        **prune_kwargs: passed to :func:`~nbkit.pruning.prune` (``prunable``, ...).

    Returns the critical log10 ρ, or None if the network fails already at ``lo``.
    """
    if criterion not in ("collapse", "disconnect"):
        raise ValueError(f"criterion must be 'collapse' or 'disconnect', got {criterion!r}")
    if not step > 0:
        raise ValueError(f"step must be positive, got {step!r}")
    if isinstance(build, nn.Module):
        template = build
        build = lambda: copy.deepcopy(template)  # noqa: E731
    elif not callable(build):
        raise ValueError("build must be a callable returning a fresh model, or a model")
    if iterations is None:
        iterations = iterations_for(method)
    first = build()
    params = prunable_parameters(first, prune_kwargs.get("prunable"))
    if not params:
        raise ValueError("the model has no prunable layer (Linear or Conv2d weights)")
    if hi is None:
        n = sum(p.numel() for p in params.values())
        hi = math.floor(math.log10(n / len(params)) / step + 1e-9) * step
    if hi < lo:
        raise ValueError(f"hi={hi} is below lo={lo}")
    grid = [lo + i * step for i in range(int(round((hi - lo) / step)) + 1)]
    spare = [first]

    def fails(x: float) -> bool:
        model = spare.pop() if spare else build()
        prune(model, method, 10.0 ** -x, iterations, schedule, scope, data, device,
              progress=progress, **prune_kwargs)
        bad = collapsed(model, prune_kwargs.get("prunable"))
        if not bad and criterion == "disconnect":
            bad = disconnected(model, prune_kwargs.get("input_shape"),
                               prune_kwargs.get("prunable"))
        if trials is not None:
            trials.append((x, bad))
        return bad

    if not fails(grid[-1]):
        return grid[-1]
    good, bad = 0, len(grid) - 1
    if grid[0] > 0 and fails(grid[0]):
        return None
    while bad - good > 1:
        mid = (good + bad) // 2
        if fails(grid[mid]):
            bad = mid
        else:
            good = mid
    return grid[good]
