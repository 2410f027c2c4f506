"""The regularisation primitives that drive the learned rules, and the layer algebra
they are computed with.

Storage convention: a layer's ``feedback`` tensor has the shape of its ``weight``. The
backward matrix B of the science (same shape as Wᵀ) is its transpose; for a conv, B is
the transposed convolution with the ``feedback`` kernel. Writing F = Bᵀ, y = W x and
E for the mean over the batch's examples (x and W are constants), the primitives and
their gradients with respect to F are, exactly as [TR]'s reference code computes them::

    decay   R = ‖W‖² + ‖B‖²              dR/dF =  2 F
    amp     R = −E Σ ⟨B y, x⟩           dR/dF = −E Σ y xᵀ           (Hebbian)
    sparse  R = E Σ ‖Wx‖² + E Σ ‖Bᵀx‖²   dR/dF =  2 E Σ (F x) xᵀ
    null    R = E ‖B y‖²                 dR/dF =  2 E Σ y (B y)ᵀ
    self    R = −tr(B W)                 dR/dF = −W

For a Linear layer Σ is empty (one sample per example). For a conv, Σ sums over the
output positions and channels: a conv is the matrix W acting on every input patch, so
amp and sparse are the per-patch terms summed over the P output positions, and ``B y``
in null is the image-space reconstruction ``conv_transpose(W x, F)``, in which the
patches of neighbouring positions overlap (not a per-patch Gram matrix).

Terms of the form Σ g xᵀ are the layer's weight gradient with ``g`` in place of δy
(:meth:`wgrad`), so amp and sparse share one forward and one weight-gradient call,
``wgrad(x, fwd(x, 2·sparse·F − amp·W))``; amp and null share one weight-gradient call,
``wgrad(−amp·x + 2·null·(B y), y)``.

``Plan.conv_form = "per_position"`` keeps nbkit's earlier convention for convs instead:
every primitive a mean over examples *and* output positions (amp and sparse are 1/P of
the reference's), and null on the per-patch Gram matrix E[y yᵀ] F. Its coefficients
mean something else than [TR]'s; it is there to compare, never the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["PRIMITIVES", "LinearOps", "ConvOps", "Plan", "feedback_grad"]

PRIMITIVES = ("decay", "amp", "sparse", "null", "self")


class LinearOps:
    """y = x Wᵀ (+ b) on 2-D inputs (samples, in_features)."""

    kind = "linear"

    @staticmethod
    def forward(x, weight, bias):
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def fwd(x, kernel):
        return x @ kernel.t()

    @staticmethod
    def wgrad(x, g, like):
        return g.t() @ x

    @staticmethod
    def input_grad(g, kernel, x):
        """Σ_o g_o F_o: the input gradient of ``g`` through ``kernel``."""
        return g @ kernel

    @staticmethod
    def backward(g, x, kernel, mask):
        """(δx through ``kernel``, δW, δb): three matmuls, as backprop does."""
        dx = g @ kernel if mask[0] else None
        dw = g.t() @ x if mask[1] else None
        db = g.sum(0) if mask[2] else None
        return dx, dw, db

    @staticmethod
    def samples(y):
        return y.shape[0]

    @staticmethod
    def gram_times(y, fb):
        """Σ over samples of y yᵀ, times F."""
        if y.shape[0] < y.shape[1]:
            return y.t() @ (y @ fb)
        return (y.t() @ y) @ fb


@dataclass(frozen=True)
class ConvOps:
    """2-D convolution (groups=1) with fixed stride, padding and dilation."""

    stride: tuple
    padding: tuple
    dilation: tuple
    kind = "conv"

    def forward(self, x, weight, bias):
        return torch.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def fwd(self, x, kernel):
        return torch.conv2d(x, kernel, None, self.stride, self.padding, self.dilation)

    def _call(self, g, x, kernel, mask, bias_sizes=None):
        return torch.ops.aten.convolution_backward(
            g, x, kernel, bias_sizes, list(self.stride), list(self.padding),
            list(self.dilation), False, [0, 0], 1, list(mask))

    def wgrad(self, x, g, like):
        """Σ over samples of g xᵀ: the weight gradient for inputs ``x`` and output grads
        ``g`` (``like`` gives the kernel shape)."""
        return self._call(g, x, like, (False, True, False))[1]

    def input_grad(self, g, kernel, x):
        """``conv_transpose(g, kernel)`` back to ``x``'s shape: the input gradient of
        output gradients ``g`` through ``kernel``."""
        return self._call(g, x, kernel, (True, False, False))[0]

    def backward(self, g, x, kernel, mask):
        """One fused convolution-backward call with ``kernel`` as the weight: the input
        gradient through ``kernel`` and the (kernel-independent) weight and bias grads."""
        bias_sizes = [g.shape[1]] if mask[2] else None
        dx, dw, db = self._call(g, x, kernel, mask, bias_sizes)
        return dx, dw, db

    @staticmethod
    def samples(y):
        return y.shape[0] * y.shape[2] * y.shape[3]

    @staticmethod
    def gram_times(y, fb):
        """Σ over samples (examples and positions) of y yᵀ (channels), times F."""
        c, f2 = y.shape[1], fb.reshape(fb.shape[0], -1)
        rows = y.numel() // c
        if rows < c:  # fewer samples than channels: Y (Yᵀ F) is the cheaper order
            yc = y.transpose(0, 1).reshape(c, rows)
            return (yc @ (yc.t() @ f2)).reshape(fb.shape)
        yf = y.flatten(2)  # (n, channels, positions), a view of y
        gram = torch.bmm(yf, yf.transpose(1, 2)).sum(0)
        return (gram @ f2).reshape(fb.shape)


@dataclass(frozen=True)
class Plan:
    """Everything the autograd function needs to know about one converted layer.

    ``feedback`` is the rule's feedback kind; ``decay`` ... ``transport`` are the
    weights of the primitives in B's gradient (0 when absent); ``sign_scale`` is sign
    symmetry's scale; ``noise`` and ``samples`` choose the inputs the data terms see;
    ``conv_form`` is ``"reference"`` ([TR]'s code, the default) or ``"per_position"``
    (see the module docstring).
    """

    ops: object
    feedback: str
    decay: float = 0.0
    amp: float = 0.0
    sparse: float = 0.0
    null: float = 0.0
    self_: float = 0.0
    transport: float = 0.0
    noise: bool = False
    samples: int | None = None
    sign_scale: float = 1.0
    conv_form: str = "reference"

    @property
    def data_terms(self) -> bool:
        return bool(self.amp or self.sparse or self.null)


def make_plan(ops, rule, settings: dict, sign_scale: float = 1.0) -> Plan:
    """A :class:`Plan` from a registry rule and its resolved settings."""
    weights = {p: 0.0 for p in PRIMITIVES}
    for coef, (prim, _) in rule.terms.items():
        weights[prim] += settings[coef]
    return Plan(ops, rule.feedback, weights["decay"], weights["amp"], weights["sparse"],
                weights["null"], weights["self"], 1.0 if rule.transport else 0.0,
                rule.noise_inputs, settings.get("samples"), sign_scale,
                settings.get("conv_form", "reference"))


def feedback_grad(plan: Plan, x, g, weight, fb, dw):
    """The gradient of B's storage F (shape of W) under the plan's primitives.

    ``x`` and ``g`` are the layer's saved input and output gradient, ``dw`` the weight
    gradient already computed by the fused backward call (used by transport).
    """
    out = None

    def add(term):
        nonlocal out
        out = term if out is None else out + term

    if plan.transport:
        add(dw if plan.transport == 1.0 else plan.transport * dw)
    if plan.decay:
        add((2.0 * plan.decay) * fb)
    if plan.self_:
        add((-plan.self_) * weight)
    if plan.data_terms:
        add(_data_terms(plan, x, weight, fb))
    if out is None:
        out = torch.zeros_like(fb)
    return out


def _data_terms(plan: Plan, x, weight, fb):
    ops = plan.ops
    n = x.shape[0] if plan.samples is None else min(plan.samples, x.shape[0])
    if plan.noise:  # weight mirror: white-noise inputs of the layer's input shape
        src = torch.randn((n, *x.shape[1:]), device=x.device, dtype=x.dtype)
    else:
        src = x[:n]
    if plan.conv_form == "per_position" and ops.kind == "conv":
        return _per_position(plan, ops, src, weight, fb)
    total = None

    def add(term):
        nonlocal total
        total = term if total is None else total + term

    if plan.null:  # B y needs y itself; amp rides on the same weight-gradient call
        y = ops.fwd(src, weight)
        recon = ops.input_grad(y, fb, src)  # B y: W x mapped back through B
        inputs = (2.0 * plan.null) * recon
        if plan.amp:
            inputs = inputs - plan.amp * src
        add(ops.wgrad(inputs, y, weight))
        if plan.sparse:
            add(ops.wgrad(src, ops.fwd(src, (2.0 * plan.sparse) * fb), weight))
    else:  # amp and sparse in one convolution: (2·sparse·F − amp·W) x
        kernel = (-plan.amp) * weight if plan.amp else None
        if plan.sparse:
            k = (2.0 * plan.sparse) * fb
            kernel = k if kernel is None else kernel + k
        add(ops.wgrad(src, ops.fwd(src, kernel), weight))
    return total * (1.0 / max(n, 1))


def _per_position(plan: Plan, ops, src, weight, fb):
    """The data terms as means over examples and output positions, null on the per-patch
    Gram matrix (nbkit's earlier convention for convs; see the module docstring)."""
    parts = []
    if plan.null:  # needs y itself, for its Gram matrix; scale the small results, not y
        y = ops.fwd(src, weight)
        if plan.amp:
            parts.append((-plan.amp) * ops.wgrad(src, y, weight))
        if plan.sparse:
            parts.append(ops.wgrad(src, ops.fwd(src, (2.0 * plan.sparse) * fb), weight))
        parts.append((2.0 * plan.null) * ops.gram_times(y, fb))
    else:
        kernel = (-plan.amp) * weight if plan.amp else None
        if plan.sparse:
            k = (2.0 * plan.sparse) * fb
            kernel = k if kernel is None else kernel + k
        y = ops.fwd(src, kernel)
        parts.append(ops.wgrad(src, y, weight))
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total * (1.0 / max(ops.samples(y), 1))


def kaiming_std(weight: torch.Tensor) -> float:
    """√(2 / fan_in) for a Linear or conv weight."""
    fan_in = math.prod(weight.shape[1:]) if weight.dim() > 1 else weight.shape[0]
    return math.sqrt(2.0 / max(fan_in, 1))
