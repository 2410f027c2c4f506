"""The learned rules' primitives, held to [TR]'s reference code.

For every primitive, ∂R/∂B computed by nbkit equals the gradient of the reference's own
regulariser, written out below with plain torch ops, on convolutions with stride, padding
and dilation, in float64. The reference takes a batch mean and sums over output positions
and channels; its null term is the image-space reconstruction ``conv_transpose(W x, B)``.
Then the fixed points of weight mirror and information alignment on a conv layer, against
the closed forms those formulas give."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nbkit import rules
from nbkit.rules.primitives import ConvOps, LinearOps, Plan, feedback_grad

D = torch.float64
GEOMETRIES = [dict(stride=2, padding=1, dilation=1), dict(stride=1, padding=2, dilation=2),
              dict(stride=2, padding=0, dilation=1)]


# --------------------------------------------------------------- the reference, written out

def conv(x, kernel, g):
    return F.conv2d(x, kernel, None, g["stride"], g["padding"], g["dilation"])


def conv_transpose(y, kernel, g, like):
    """conv_transpose(y, kernel) back to the shape of ``like`` (the layer's input)."""
    out = F.conv_transpose2d(y, kernel, None, g["stride"], g["padding"], 0, 1, g["dilation"])
    pad_h, pad_w = like.shape[2] - out.shape[2], like.shape[3] - out.shape[3]
    if pad_h or pad_w:
        out = F.conv_transpose2d(y, kernel, None, g["stride"], g["padding"], (pad_h, pad_w),
                                 1, g["dilation"])
    return out


def reference_losses(x, w, fb, g):
    """[TR]'s primitives for a conv layer: W x is the forward projection, x B the
    backward projection (a conv with B's kernel, kept in W's shape)."""
    wx, xb = conv(x, w, g), conv(x, fb, g)
    return {
        "decay": (w ** 2).sum() + (fb ** 2).sum(),
        "amp": -(wx * xb).mean(0).sum(),
        "sparse": (wx ** 2).mean(0).sum() + (xb ** 2).mean(0).sum(),
        "null": (conv_transpose(wx, fb, g, x) ** 2).mean(0).sum(),
        "self": -(w * fb).sum(),
    }


def reference_grad(name, x, w, fb, g):
    fb = fb.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(reference_losses(x, w, fb, g)[name], fb)
    return grad


def nbkit_grad(name, x, w, fb, ops, form="reference"):
    field = "self_" if name == "self" else name
    plan = Plan(ops, "learned", **{field: 1.0}, conv_form=form)
    return feedback_grad(plan, x, None, w, fb, None)


def _layer(g, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(5, 4, 10, 10, dtype=D)
    w = torch.randn(6, 4, 3, 3, dtype=D)
    fb = torch.randn(6, 4, 3, 3, dtype=D)
    ops = ConvOps((g["stride"],) * 2, (g["padding"],) * 2, (g["dilation"],) * 2)
    return x, w, fb, ops


@pytest.mark.parametrize("g", GEOMETRIES)
@pytest.mark.parametrize("name", ["decay", "amp", "sparse", "null", "self"])
def test_each_primitive_is_the_reference_gradient_on_a_conv(name, g):
    x, w, fb, ops = _layer(g)
    torch.testing.assert_close(nbkit_grad(name, x, w, fb, ops),
                               reference_grad(name, x, w, fb, g), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("g", GEOMETRIES)
def test_amp_and_sparse_are_p_times_the_per_position_means(g):
    """The reference sums over the P output positions; the per-position form averages."""
    x, w, fb, ops = _layer(g)
    positions = conv(x, w, g).shape[2] * conv(x, w, g).shape[3]
    for name in ("amp", "sparse"):
        ref = nbkit_grad(name, x, w, fb, ops)
        per = nbkit_grad(name, x, w, fb, ops, form="per_position")
        torch.testing.assert_close(ref, positions * per, atol=1e-12, rtol=1e-12)
    # null is not a rescaling: the image-space reconstruction overlaps the patches
    ref, per = nbkit_grad("null", x, w, fb, ops), nbkit_grad("null", x, w, fb, ops,
                                                             "per_position")
    cosine = float((ref * per).sum() / (ref.norm() * per.norm()))
    assert cosine < 0.999


def test_on_a_linear_layer_both_forms_are_the_batch_mean():
    torch.manual_seed(0)
    x, w, fb = (torch.randn(7, 5, dtype=D), torch.randn(3, 5, dtype=D),
                torch.randn(3, 5, dtype=D))
    y = x @ w.t()
    expected = {"amp": -(y.t() @ x) / 7, "sparse": 2 * ((x @ fb.t()).t() @ x) / 7,
                "null": 2 * (y.t() @ y @ fb) / 7, "decay": 2 * fb, "self": -w}
    for name, want in expected.items():
        for form in ("reference", "per_position"):
            torch.testing.assert_close(nbkit_grad(name, x, w, fb, LinearOps(), form), want,
                                       atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("rule, coefficients", [
    ("information_alignment", dict(alpha=0.7, beta=0.3, gamma=0.2)),
    ("activation_alignment", dict(alpha=0.4, beta=0.9)),
    ("symmetric_alignment", dict(alpha=0.3, beta=0.6)),
])
def test_a_converted_conv_fills_b_with_the_reference_gradient(rule, coefficients):
    """End to end: a converted Conv2d's backward pass leaves in ``feedback.grad`` the
    gradient of the rule's weighted reference regularisers (samples=None: whole batch)."""
    g = GEOMETRIES[0]
    torch.manual_seed(1)
    layer = nn.Conv2d(4, 6, 3, bias=False, **g).to(D)
    whole_batch = {"samples": None} if "samples" in rules.get(rule).options else {}
    layer = rules.convert(layer, rule, seed=0, **whole_batch, **coefficients)
    x = torch.randn(5, 4, 10, 10, dtype=D)
    out = layer(x)
    out.backward(torch.zeros_like(out))
    terms = rules.get(rule).terms
    fb = layer.feedback.detach().clone().requires_grad_(True)
    losses = reference_losses(x, layer.weight.detach(), fb, g)
    total = sum(coefficients[c] * losses[prim] for c, (prim, _) in terms.items())
    (want,) = torch.autograd.grad(total, fb)
    torch.testing.assert_close(layer.feedback.grad, want, atol=1e-10, rtol=1e-10)


def test_conv_form_is_a_validated_option():
    with pytest.raises(ValueError, match="conv_form"):
        rules.convert(nn.Conv2d(2, 3, 3), "weight_mirror", conv_form="per_patch")
    assert rules.resolve("information_alignment")["conv_form"] == "reference"
    with pytest.raises(ValueError, match="finite"):
        rules.convert(nn.Conv2d(2, 3, 3), "weight_mirror", alpha=float("nan"))


# ------------------------------------------------------------------------- fixed points

def _train_b(layer, x, steps, lr):
    """Plain gradient descent on the layer's B alone; W fixed, no task gradient."""
    layer.weight.requires_grad_(False)
    opt = torch.optim.SGD([layer.feedback], lr=lr)
    for _ in range(steps):
        out = layer(x)
        opt.zero_grad()
        out.backward(torch.zeros_like(out))
        opt.step()
    return layer.feedback.detach()


def test_weight_mirror_on_a_padded_conv_counts_the_positions_each_tap_sees():
    """Under unit white noise E[(1/n) Σ y xᵀ] is W times, for each kernel tap, the number
    of output positions whose tap lands inside the image (zero padding feeds the others
    nothing): the fixed point is F = (β / 2α) · C ⊙ W, C = rows seen × columns seen."""
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, padding=1, bias=False).to(D)  # 6 × 6 input, 36 positions
    alpha, beta = 18.0, 1.0
    layer = rules.convert(layer, "weight_mirror", alpha=alpha, beta=beta, seed=0,
                          samples=512)
    x = torch.zeros(512, 2, 6, 6, dtype=D)
    _train_b(layer, x, steps=150, lr=0.01)
    seen = torch.tensor([5.0, 6.0, 5.0], dtype=D)  # a border tap misses one row of six
    counts = seen[:, None] * seen[None, :]
    expected = beta / (2 * alpha) * counts * layer.weight
    fb = torch.stack([_train_b(layer, x, steps=1, lr=0.01) for _ in range(200)]).mean(0)
    assert float(rules.angle(fb, expected)) < 2
    ratio = float(fb.norm() / expected.norm())
    assert abs(ratio - 1) < 0.03


def test_information_alignment_on_a_conv_reaches_the_reference_closed_form():
    """IA's B gradient −α m + β ∇R_null(F) + 2γF is linear in F, so its fixed point solves
    (β A + 2γ I) f = α m, with A the (image-space) null operator written out above and
    m = E Σ y xᵀ. Plain gradient descent on nbkit's B lands on that solution."""
    g = GEOMETRIES[0]
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, bias=False, **g).to(D)
    alpha, beta, gamma = 0.2, 0.1, 0.1
    layer = rules.convert(layer, "information_alignment", alpha=alpha, beta=beta,
                          gamma=gamma, samples=None, seed=0)
    x = torch.randn(6, 2, 7, 7, dtype=D)
    w = layer.weight.detach()
    zero = torch.zeros_like(w)
    m = -reference_grad("amp", x, w, zero, g)
    basis = torch.eye(w.numel(), dtype=D).reshape(-1, *w.shape)
    null_op = torch.stack([reference_grad("null", x, w, e, g).flatten() for e in basis], 1)
    system = beta * null_op + 2 * gamma * torch.eye(w.numel(), dtype=D)
    f_star = torch.linalg.solve(system, alpha * m.flatten()).reshape(w.shape)
    fb = _train_b(layer, x, steps=3000, lr=0.5)
    torch.testing.assert_close(fb, f_star, atol=1e-8, rtol=1e-7)
    # the per-position form lands elsewhere: the two conventions differ for convs
    other = rules.convert(copy.deepcopy(layer), "information_alignment", alpha=alpha,
                          beta=beta, gamma=gamma, samples=None, seed=0,
                          conv_form="per_position")
    assert float(rules.angle(_train_b(other, x, steps=3000, lr=0.5), f_star)) > 1
