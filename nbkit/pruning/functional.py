"""Evaluating a model with other tensors in place of its parameters, and SynFlow's R.

The pruners never write into the model while they score it: they run the model with
stand-in tensors (:func:`substitute`), so the model's parameters, buffers, ``.grad``
fields and train/eval flags are exactly as they were afterwards, even if scoring fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from .masks import aliases, hook_disabled, is_pruned, kept_pruned_attributes, locate

__all__ = ["substitute", "eval_mode", "absolute_values", "resolve_input_shape",
           "synflow_objective", "ones_input", "linearized", "ACTIVATIONS", "SATURATING"]

# Elementwise activation modules (torch.nn's own; subclasses count). Saturating ones have
# a zero slope beyond a bound, which stops SynFlow's all-ones flow cold.
SATURATING = (nn.ReLU6, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Sigmoid, nn.Tanh,
              nn.Softsign, nn.Tanhshrink, nn.LogSigmoid)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
               nn.SiLU, nn.Mish, nn.Softplus, nn.Threshold, nn.Hardshrink, nn.Softshrink,
               *SATURATING)


@contextmanager
def substitute(model: nn.Module, tensors: Mapping[str, torch.Tensor]):
    """Run ``model`` with ``tensors`` in place of some of its parameters and buffers.

    Keys are names from ``model.named_parameters()`` / ``named_buffers()``
    (``"fc.weight_orig"``, ``"bn.running_mean"``) or the public name of a pruned
    parameter (``"fc.weight"``): then the tensor is used as the weight itself and the
    pruning hook of that parameter is switched off for the duration. Everything is put
    back on exit, including the ``module.weight`` attributes that pruning hooks set.
    """
    undo = []
    modules = dict(model.named_modules())
    tied = aliases(model)
    if tied:  # a tied weight: every module that holds the tensor uses the stand-in
        tensors = dict(tensors)
        for name in list(tensors):
            for other in tied.get(name, []):
                tensors.setdefault(other, tensors[name])
    with ExitStack() as stack:
        # pruning hooks set plain attributes as a side effect of forward: keep them
        stack.enter_context(kept_pruned_attributes(model))
        stack.callback(_put_back, undo)
        for name, tensor in tensors.items():
            path, _, attr = name.rpartition(".")
            module = modules.get(path)
            if module is None:
                module, attr = locate(model, name)
            if attr in module._parameters:
                undo.append((module._parameters, attr, module._parameters[attr]))
                module._parameters[attr] = tensor
            elif attr in module._buffers:
                undo.append((module._buffers, attr, module._buffers[attr]))
                module._buffers[attr] = tensor
            elif is_pruned(module, attr):
                stack.enter_context(hook_disabled(module, attr))
                module.__dict__[attr] = tensor
            else:
                raise ValueError(f"cannot substitute {name!r}: no such parameter or buffer")
        yield model


def _put_back(undo) -> None:
    for store, key, value in reversed(undo):
        store[key] = value


@contextmanager
def eval_mode(model: nn.Module):
    """Put every module in eval mode; restore each module's own flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def absolute_values(model: nn.Module):
    """Replace every parameter and floating-point buffer by its absolute value, in place,
    and put the model in eval mode. On exit the exact original values (signs, -0.0 and
    all) and each module's train/eval flag come back.

    >>> with absolute_values(model):
    ...     R = synflow_objective(model)
    """
    saved = []
    with eval_mode(model):
        try:
            with torch.no_grad():
                for t in list(model.parameters()) + list(model.buffers()):
                    if t.is_floating_point():
                        saved.append((t, t.detach().clone()))
                        t.abs_()
            yield model
        finally:
            with torch.no_grad():
                for t, value in saved:
                    t.copy_(value)


def resolve_input_shape(model: nn.Module, input_shape=None) -> tuple[int, ...]:
    """The shape of one input (no batch dimension) for data-free passes.

    ``input_shape`` when given; else ``model.input_shape`` (set by
    ``nbkit.models.build``); else ``(in_features,)`` of the first Linear when the model
    starts with a Linear. A model that starts with a convolution and records no shape
    gets a ValueError asking for ``input_shape``.
    """
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        first = next((m for m in model.modules()
                      if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
        if isinstance(first, nn.Linear):
            return (first.in_features,)
        if first is None:
            raise ValueError("cannot tell the input shape of a model without Linear or Conv "
                             "layers; pass input_shape=(C, H, W) or (features,)")
        raise ValueError(f"the model starts with a {type(first).__name__} and records no "
                         "input shape; pass input_shape=(C, H, W) (e.g. (3, 32, 32)) or set "
                         "model.input_shape")
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as e:
        raise ValueError(f"input_shape must be a tuple of positive ints, got {shape!r}") from e
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be a tuple of positive ints, got {shape!r}")
    return shape


def _float_dtype(model: nn.Module) -> torch.dtype:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def ones_input(model: nn.Module, input_shape=None, dtype=None, device=None) -> torch.Tensor:
    """A batch of one all-ones input for ``model``: shape ``(1, *input_shape)``."""
    shape = resolve_input_shape(model, input_shape)
    return torch.ones((1, *shape), dtype=dtype or _float_dtype(model),
                      device=device if device is not None else _device(model))


def synflow_objective(model: nn.Module, input_shape=None, dtype=None) -> torch.Tensor:
    """SynFlow's objective R = 1ᵀ(∏ₗ|θ⁽ˡ⁾|)1 for ``model``, differentiable in its parameters.

    The model runs in eval mode (BatchNorm affine, with its running statistics) on a
    single all-ones input, with every parameter and floating buffer replaced by its
    absolute value, and R is the sum of the output. The model is not modified: the
    absolute values are taken out of place, so ``autograd.grad(R, params)`` gives
    ``sign(θ) · ∂R/∂|θ|`` and the synaptic saliency ``grad * θ`` equals SynFlow's score
    ``|θ| · ∂R/∂|θ|``. Masks of a pruned model apply as usual.

    Args:
        input_shape: see :func:`resolve_input_shape`.
        dtype: compute in this dtype (e.g. ``torch.float64``: R of deep nets overflows
            float32). Gradients reach the parameters in their own dtype; for float64
            gradients, run this on a float64 copy of the model.
    """
    dtype = dtype or _float_dtype(model)
    tensors = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point():
            tensors[name] = t.abs().to(dtype)
    x = ones_input(model, input_shape, dtype=dtype)
    with eval_mode(model), substitute(model, tensors):
        out = model(x)
    if not torch.is_tensor(out):
        raise ValueError(f"SynFlow needs a model that returns a tensor, got {type(out).__name__}")
    return out.sum()



@contextmanager
def linearized(model: nn.Module):
    """Run ``model`` with every elementwise activation module (:data:`ACTIVATIONS`) as the
    identity: the linearised network, whose SynFlow objective R = 1ᵀ(∏ₗ|θ⁽ˡ⁾|)1 is what
    the SynFlow theory scores. A ReLU network gives the same scores either way (every
    pre-activation of the all-ones input through |θ| is positive); a network with
    saturating activations (ReLU6, Hardtanh, sigmoid) gives scores again instead of
    zeros. Activations applied as functions inside a forward are left as they are."""
    swapped = [m for m in model.modules() if isinstance(m, ACTIVATIONS)]
    for m in swapped:
        m.forward = _identity
    try:
        yield model
    finally:
        for m in swapped:
            m.__dict__.pop("forward", None)


def _identity(x, *args, **kwargs):
    return x
