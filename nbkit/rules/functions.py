"""The autograd function of a converted layer: an ordinary forward pass, and a backward
pass that sends the error through B instead of Wᵀ.

For a conv, one fused ``aten.convolution_backward`` call with B's kernel as the weight
returns the input gradient through B and the weight and bias gradients, which depend
only on x and δy. So the rule costs no more convolutions than backprop. Only the layer
input x is saved (with W and B, which live anyway). B's gradient is filled by the
rule's primitives (:func:`.primitives.feedback_grad`) in the same backward call.

Direct feedback alignment has a function of its own, :class:`DirectFeedbackFunction`:
the same forward pass and local weight gradient, and δx = D e (see :mod:`.direct`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .direct import Call, input_grad, output_error
from .primitives import Plan, feedback_grad

__all__ = ["FeedbackFunction", "DirectFeedbackFunction", "feedback_kernel"]


def feedback_kernel(plan: Plan, weight: torch.Tensor, fb: torch.Tensor | None) -> torch.Tensor:
    """The tensor (shape of W) whose transpose is B, for the plan's feedback kind."""
    if plan.feedback == "sign":
        return torch.sign(weight) * plan.sign_scale
    if plan.feedback == "transpose" or fb is None:
        return weight
    return fb


class FeedbackFunction(torch.autograd.Function):
    """``out = layer(x; W, b)`` forward; backward: δx = B δy, δW = δy xᵀ, δb = Σ δy, and
    δF from the rule. Inputs: x, weight, bias (or None), feedback (or None), plan."""

    @staticmethod
    def forward(x, weight, bias, fb, plan):
        return plan.ops.forward(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):  # the form torch.func transforms can take
        x, weight, _, fb, plan = inputs
        ctx.plan = plan
        ctx.save_for_backward(x, weight, fb)

    @staticmethod
    def backward(ctx, g):
        x, weight, fb = ctx.saved_tensors
        plan = ctx.plan
        need_x, need_w, need_b, need_f = ctx.needs_input_grad[:4]
        need_f = need_f and fb is not None
        kernel = feedback_kernel(plan, weight, fb)
        g = g.contiguous() if plan.ops.kind == "linear" else g
        mask = (need_x, need_w or (need_f and bool(plan.transport)), need_b)
        dx, dw, db = plan.ops.backward(g, x, kernel, mask)
        dfb = feedback_grad(plan, x, g, weight, fb, dw) if need_f else None
        return dx, (dw if need_w else None), db, dfb, None


class DirectFeedbackFunction(torch.autograd.Function):
    """Direct feedback alignment: ``out = layer(x; W, b)`` forward; backward: δW = δy xᵀ
    and δb = Σ δy for the δy that reached the output, and δx = D e, e being the output
    error of the model call that ran the layer, whatever δy is.

    Inputs: x (the layer's input, before any explicit padding), weight, bias (or None),
    direct (D, shape ``(n_out, *one example's input shape)``), plan, call (the
    :class:`.direct.Call` the layer ran in, or None) and pad (``(widths, mode)`` of an
    explicit ``F.pad``, or None). Only the padded x is saved, as for the other rules.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, direct, plan: Plan, call: Call | None, pad):
        xp = x if pad is None else F.pad(x, pad[0], mode=pad[1])
        ctx.plan, ctx.call, ctx.shape, ctx.dtype = plan, call, x.shape, x.dtype
        ctx.save_for_backward(xp, weight, direct)
        return plan.ops.forward(xp, weight, bias)

    @staticmethod
    def backward(ctx, g):
        xp, weight, direct = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        ops = ctx.plan.ops
        g = g.contiguous() if ops.kind == "linear" else g
        dx = dw = db = None
        if need_w or need_b:
            _, dw, db = ops.backward(g, xp, weight, (False, need_w, need_b))
        if need_x:
            dx = input_grad(output_error(ctx.call), direct.to(ctx.dtype), ctx.shape)
        return dx, (dw if need_w else None), db, None, None, None, None
