"""The autograd function of a converted layer: an ordinary forward pass, and a backward
pass that sends the error through B instead of Wᵀ.

For a conv, one fused ``aten.convolution_backward`` call with B's kernel as the weight
returns the input gradient through B and the weight and bias gradients, which depend
only on x and δy. So the rule costs no more convolutions than backprop. Only the layer
input x is saved (with W and B, which live anyway). B's gradient is filled by the
rule's primitives (:func:`.primitives.feedback_grad`) in the same backward call.
"""

from __future__ import annotations

import torch

from .primitives import Plan, feedback_grad

__all__ = ["FeedbackFunction", "feedback_kernel"]


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
    def forward(ctx, x, weight, bias, fb, plan):
        ctx.plan = plan
        ctx.save_for_backward(x, weight, fb)
        return plan.ops.forward(x, weight, bias)

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
