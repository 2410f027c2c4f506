"""Converted layers: :class:`FeedbackLinear` and :class:`FeedbackConv2d`.

They are subclasses of ``nn.Linear`` and ``nn.Conv2d``, so ``isinstance`` checks,
``.weight``, pruning masks and optimizer state keep working. :func:`.convert` turns an
existing layer into one in place (by changing its class), so its parameters, buffers,
hooks and parametrizations stay what they were. A converted layer adds:

- ``feedback``: the parameter F = Bᵀ, with ``weight``'s shape (None for sign symmetry,
  whose B is computed from W, and for direct feedback alignment, which has no B). In a
  layer pruned with ``torch.nn.utils.prune`` (as :func:`nbkit.pruning.prune` does), B is
  masked like W: a pruned connection sends no error back either, B's gradient is zero
  there, and Kolen-Pollack's B still tends to Wᵀ;
- for direct feedback alignment, ``direct_feedback``: the persistent buffer D, shape
  ``(n_out, *one example's input shape)``, through which the layer sends the output error
  back (see :mod:`.direct`; D is not masked by pruning: it maps the network's output,
  not through W's connections), and ``_tap``, the root's :class:`.direct.OutputTap`;
- ``rule``: the rule's name, and ``coefficients``: its settings;
- ``optim`` dicts on its parameters, read by the optimizer helpers (see
  :func:`.convert.param_groups`); they survive ``copy.deepcopy``.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .functions import DirectFeedbackFunction, FeedbackFunction

__all__ = ["FeedbackLinear", "FeedbackConv2d", "FeedbackLayer", "param_of", "override"]


def _autocast_dtype(device_type: str):
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def _cast(dtype, *tensors):
    return tuple(t.to(dtype) if t is not None and t.is_floating_point() else t
                 for t in tensors)


def param_of(module: nn.Module, name: str):
    """The leaf Parameter behind ``module.<name>``: itself, or the original tensor of a
    parametrization, or ``<name>_orig`` of ``torch.nn.utils.prune``. None if absent."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    p = module._parameters.get(name)
    return p if p is not None else module._parameters.get(name + "_orig")


class FeedbackLayer:
    """Mixin with what both converted layer types share."""

    rule: str
    _override = None  # None, "exact" (plain autograd: B = Wᵀ) or "nograd" (no B gradient)

    def masked_feedback(self):
        """F as the backward pass uses it: ``feedback``, times the layer's pruning mask
        (``weight_mask``) when it has one."""
        fb, mask = self.feedback, self._buffers.get("weight_mask")
        return fb if fb is None or mask is None else fb * mask

    @property
    def direct(self) -> bool:
        """The layer sends the output error through D (direct feedback alignment)."""
        return self._plan.feedback == "direct"

    def _direct(self, x, w, b, shape, pad=None):
        """DFA's output for ``x`` (``shape``: the module's input shape, before any
        reshape or batch dimension was added; checked against D's)."""
        direct = self.direct_feedback
        want = tuple(direct.shape[1:])
        if tuple(shape[len(shape) - len(want):]) != want:
            raise ValueError(f"direct feedback alignment sized this layer's D for inputs of "
                             f"shape {want} per example, but got an input of shape "
                             f"{tuple(shape)}. Convert the model again with input_shape=... "
                             "(one example of the data it sees)")
        return DirectFeedbackFunction.apply(x, w, b, direct, self._plan, self._tap.current, pad)

    def _inputs(self, x):
        w, b, fb = self.weight, self.bias, self.masked_feedback()
        if fb is not None and self._override == "nograd":
            fb = fb.detach()
        if torch.compiler.is_compiling():
            # Traced under torch.func.grad, a parameter reads as not requiring grad
            # until an op has run on it, and torch.compile would then trace this layer
            # as a plain one (losing B's gradient) or tell the autograd function that W
            # and b need none. A view is such an op, and free.
            w, b, fb = (t if t is None else t.view_as(t) for t in (w, b, fb))
        dtype = _autocast_dtype(x.device.type)
        if dtype is not None:
            x, w, b, fb = _cast(dtype, x, w, b, fb)
        return x, w, b, fb

    def attach_optim(self):
        """(Re)attach the recorded ``optim`` dicts to this layer's parameters."""
        for name, opts in getattr(self, "_param_optim", {}).items():
            p = param_of(self, name)
            if p is not None:
                p.optim = dict(opts)

    def __deepcopy__(self, memo):
        replica = self.__class__.__new__(self.__class__)
        memo[id(self)] = replica
        replica.__dict__ = copy.deepcopy(self.__dict__, memo)
        replica.attach_optim()
        return replica

    def __setstate__(self, state):
        super().__setstate__(state)
        self.attach_optim()

    def extra_repr(self):
        return f"{super().extra_repr()}, rule={self.rule}"


class FeedbackLinear(FeedbackLayer, nn.Linear):
    """An ``nn.Linear`` whose backward pass sends δy through B (see :mod:`.functions`)."""

    def forward(self, x):
        if self._override == "exact":
            return nn.Linear.forward(self, x)
        x, w, b, fb = self._inputs(x)
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if self.direct:
            out = self._direct(flat, w, b, shape)
        else:
            out = FeedbackFunction.apply(flat, w, b, fb, self._plan)
        return out.reshape(*shape[:-1], out.shape[-1])


class FeedbackConv2d(FeedbackLayer, nn.Conv2d):
    """An ``nn.Conv2d`` (groups=1, any stride, padding or dilation) whose backward pass
    is one fused convolution-backward call with B's kernel as the weight."""

    _pre_pad = None  # explicit F.pad for non-zero padding modes and asymmetric 'same'
    _pad_mode = "constant"

    def forward(self, x):
        if self._override == "exact":
            return nn.Conv2d.forward(self, x)
        shape = x.shape
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if self.direct:  # pads inside: D maps to the module's own input
            pad = None if self._pre_pad is None else (self._pre_pad, self._pad_mode)
            x, w, b, _ = self._inputs(x)
            out = self._direct(x, w, b, shape, pad)
        else:
            if self._pre_pad is not None:
                x = F.pad(x, self._pre_pad, mode=self._pad_mode)
            x, w, b, fb = self._inputs(x)
            out = FeedbackFunction.apply(x, w, b, fb, self._plan)
        return out.squeeze(0) if unbatched else out


@contextlib.contextmanager
def override(model: nn.Module, mode):
    """Run every converted layer of ``model`` with ``_override = mode`` inside the block:
    ``"exact"`` (plain backprop), ``"nograd"`` (no B gradient) or None."""
    layers = [m for m in model.modules() if isinstance(m, FeedbackLayer)]
    saved = [m.__dict__.get("_override") for m in layers]
    for m in layers:
        m._override = mode
    try:
        yield
    finally:
        for m, s in zip(layers, saved):
            m._override = s


FEEDBACK_CLASSES = {nn.Linear: FeedbackLinear, nn.Conv2d: FeedbackConv2d}
PLAIN_CLASSES = {v: k for k, v in FEEDBACK_CLASSES.items()}


def _default_deepcopy(self, memo):
    replica = self.__new__(self.__class__)
    memo[id(self)] = replica
    replica.__dict__ = copy.deepcopy(self.__dict__, memo)
    return replica


def plain_class(module: nn.Module) -> type:
    """The module's class, looking through the class that parametrizations inject."""
    cls = type(module)
    return cls.__bases__[0] if parametrize.is_parametrized(module) else cls


def set_class(module: nn.Module, base: type) -> None:
    """Make ``module`` an instance of ``base`` in place. A parametrized module gets a
    fresh class of its own (as ``torch.nn.utils.parametrize`` gives it), derived from
    ``base`` and carrying the parametrization properties."""
    if not parametrize.is_parametrized(module):
        module.__class__ = base
        return
    old = type(module)
    body = {k: v for k, v in old.__dict__.items() if isinstance(v, property)}
    if "__getstate__" in old.__dict__:
        body["__getstate__"] = old.__dict__["__getstate__"]
    if not hasattr(base, "__deepcopy__"):
        body["__deepcopy__"] = _default_deepcopy
    module.__class__ = type(f"Parametrized{base.__name__}", (base,), body)
