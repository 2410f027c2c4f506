"""Direct feedback alignment (DFA, Nøkland 2016): every layer gets the output error.

A converted layer y = W x normally sends δx = B δy to its input. Under DFA it sends
δx = D e instead: e = ∂L/∂(network output), n_out numbers per example, through a fixed
random matrix D of the layer's own (the ``direct_feedback`` buffer, shape
``(n_out, *one example's input shape)``, e.g. ``(10, C, H, W)`` for a conv). That δx then
flows through the ordinary backward of BatchNorm, ReLU, pooling and residual adds into the
layer below, as in Nøkland's DFA, where the random projection of e that reaches h_l is
multiplied by f'(a_l). The weight gradient stays local, δW = δy xᵀ for whatever δy reaches
the layer's output. The classifier uses the rule too: it sends D e, not Wᵀ e.

Where e comes from: :func:`attach` puts two forward hooks on the module that was
converted (the *root*). Each call of the root opens a :class:`Call`, which every layer
running inside that call keeps for its backward; the root's output gets a tensor hook
that stores its gradient, e, in the call. So a backward pass sends each layer the error of
the very call that ran it, however many times the model ran before the backward. The
root must return one tensor, and the loss must be a function of it: a loss on an inner
activation, or on a detached output, has no output error for DFA to send.

Scale: D's entries are i.i.d. N(0, 1/m), m being the number of entries of one example's
input to the layer, so E‖D e‖² = ‖e‖² and ‖D‖_F ≈ √n_out. Every layer then receives an
error as large as the output error, which is about what backprop's norm-preserving
backward pass (He initialisation, as :mod:`nbkit.models` uses) delivers: at
initialisation ‖D e‖ is 0.5-4 times backprop's ‖δx‖ in nbkit's conv, mlp and resnet20.
Scaling every D by c scales the weight gradient of every layer below the classifier by c
(the classifier's own δy is the true e): D's scale is those layers' learning rate relative
to the classifier's, and this one keeps the task's learning rate meaningful. With BatchNorm it
hardly matters (the conv weights are scale-invariant): nbkit's conv net reaches 22-26 %
on cifar10-mini in 300 SGD steps at lr 0.02-0.1 with D 0.1-10 times this scale. Without
normalisation DFA, like FA, diverges at backprop's learning rates with momentum; lower
the learning rate (nbkit's mlp: lr 0.005) or scale D down.

Probes (:mod:`.angles`): DFA has no B to compare with Wᵀ. What backprop uses in D's place
is the transposed Jacobian of the network's output with respect to the layer's input,
which changes from example to example; so a DFA layer's *weight angle* is the angle
between D and the mean true feedback J̄ = E_batch[∂(network output)/∂(layer input)] (D's
shape; row k is the δx that full backprop sends for an error of 1 on output k at every
example, averaged over the batch), and its *norm ratio* is ‖D‖ / ‖J̄‖. Both need a batch
(``alignment_angles(model, batch)``; NaN without one). They start near 90° and a ratio
set by the network, and the angle falls as the network aligns its forward weights with D
(Nøkland's "alignment"). The *local δ angle* is between what the layer sends, D e, and
Wᵀ δy for the δy that reached it; the *global* one, between D e and full backprop's δx.

Cost: D holds n_out × m numbers per layer (10 × 16·32·32 for a CIFAR ResNet's first
stage; ImageNet-sized inputs and 1000 classes make it large). The backward of a layer is
one (examples × n_out) @ (n_out × m) product plus the local weight gradient: no
convolution sends an error back.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Call", "OutputTap", "attach", "detach", "draw", "input_grad", "output_error"]


class Call:
    """One call of the root: holds e, the gradient of the root's output, once a backward
    pass has computed it."""

    __slots__ = ("error",)

    def __init__(self):
        self.error = None

    def capture(self, grad):
        self.error = grad


class OutputTap:
    """The root's forward hooks: ``begin`` opens a :class:`Call` (``current``, read by the
    DFA layers as they run), ``end`` hooks the output's gradient into it and closes it."""

    def __init__(self):
        self.current: Call | None = None

    def begin(self, _module, _args):
        self.current = Call()

    def end(self, _module, _args, output):
        call, self.current = self.current, None
        if not isinstance(output, torch.Tensor):
            raise TypeError("direct feedback alignment sends every layer the error at the "
                            "model's output, so the converted model must return one tensor; "
                            f"it returned a {type(output).__name__}")
        if output.requires_grad and call is not None:
            output.register_hook(call.capture)


def attach(root: nn.Module) -> OutputTap:
    """Hook a new :class:`OutputTap` on ``root`` (kept as ``root._direct_tap``)."""
    tap = OutputTap()
    root.register_forward_pre_hook(tap.begin)
    root.register_forward_hook(tap.end)
    root._direct_tap = tap
    return tap


def detach(model: nn.Module) -> None:
    """Remove every :class:`OutputTap` hooked on ``model`` or its submodules."""
    for m in model.modules():
        if m.__dict__.pop("_direct_tap", None) is None:
            continue
        for hooks in (m._forward_pre_hooks, m._forward_hooks):
            for key in [k for k, h in hooks.items()
                        if isinstance(getattr(h, "__self__", None), OutputTap)]:
                del hooks[key]


def draw(n_out: int, shape: tuple, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """A D for a layer whose input holds ``shape`` per example: i.i.d. N(0, 1/m) entries,
    m = prod(shape) (see the module docstring), on ``like``'s device and dtype."""
    d = torch.randn((n_out, *shape), generator=gen) / math.sqrt(math.prod(shape))
    return d.to(device=like.device, dtype=like.dtype)


def input_grad(error: torch.Tensor, direct: torch.Tensor, shape) -> torch.Tensor:
    """D e for a layer input of ``shape``: every example's row of ``error`` (the root's
    output gradient, n_out per example) mapped through ``direct``, in ``direct``'s dtype."""
    n_out, m = direct.shape[0], direct[0].numel()
    examples = math.prod(shape) // m
    if error.numel() != examples * n_out:
        raise RuntimeError(f"direct feedback alignment: the model's output error has shape "
                           f"{tuple(error.shape)}, but this layer's D expects {n_out} outputs "
                           f"for each of the {examples} examples in its input of shape "
                           f"{tuple(shape)}. Convert the model again after changing its "
                           "output or input shape")
    rows = error.reshape(examples, n_out).to(direct.dtype)
    return (rows @ direct.reshape(n_out, m)).reshape(shape)


def output_error(call: Call | None) -> torch.Tensor:
    """The error e of ``call``, or a RuntimeError that says why there is none."""
    if call is None:
        raise RuntimeError("direct feedback alignment: a converted layer ran outside a call "
                           "of the model it was converted in, so it has no output error to "
                           "send back. Call that model (the module passed to rules.convert), "
                           "or convert the part you call on its own")
    if call.error is None:
        raise RuntimeError("direct feedback alignment: this backward pass did not go through "
                           "the output of the model call that ran the layer, so there is no "
                           "output error e to send back. Differentiate a loss of the model's "
                           "output (not of an inner activation, nor of a detached output)")
    return call.error
