"""Each learned rule drives B to the fixed point SCIENCE.md gives, on a single layer with
synthetic inputs (W held fixed unless the rule moves it)."""

import copy

import pytest
import torch
from torch import nn

from nbkit import rules

D = torch.float64


def _train_b(layer, inputs, steps, lr, grad_out=None):
    """Plain gradient descent on the layer's B alone; W stays fixed."""
    layer.weight.requires_grad_(False)
    if layer.bias is not None:
        layer.bias.requires_grad_(False)
    opt = torch.optim.SGD([layer.feedback], lr=lr)
    for t in range(steps):
        x = inputs(t) if callable(inputs) else inputs
        out = layer(x)
        opt.zero_grad()
        out.backward(torch.zeros_like(out) if grad_out is None else grad_out)
        opt.step()
    return layer.feedback.detach()


@pytest.mark.parametrize("layer", [nn.Linear(12, 7), nn.Conv2d(3, 5, 3, stride=2, padding=1)])
def test_symmetric_alignment_goes_to_wt(layer):
    torch.manual_seed(0)
    layer = rules.convert(layer.to(D), "symmetric_alignment", alpha=0.5, beta=1.0, seed=0)
    assert float(rules.angle(layer.weight, layer.feedback)) > 60
    x = torch.randn(4, 12, dtype=D) if isinstance(layer, nn.Linear) else \
        torch.randn(2, 3, 8, 8, dtype=D)
    fb = _train_b(layer, x, steps=60, lr=0.5)
    torch.testing.assert_close(fb, layer.weight, atol=1e-9, rtol=1e-9)
    # the defaults have the same fixed point (beta / 2 alpha = 1), just slower
    assert rules.get("symmetric_alignment").coefficients == {"alpha": 1e-3, "beta": 2e-3}


def test_kolen_pollack_gap_shrinks_geometrically():
    """B and W get the same update; with the task's weight decay λ on W equal to B's decay
    2α, B − Wᵀ shrinks by exactly (1 − 2αη) per plain SGD step, whatever the data."""
    torch.manual_seed(0)
    alpha, lr = 0.05, 0.5
    layer = rules.convert(nn.Linear(10, 6).to(D), "kolen_pollack", alpha=alpha, seed=0)
    assert not hasattr(layer.weight, "optim")   # W keeps the task's decay
    opt = torch.optim.SGD(rules.param_groups(layer, lr=lr, weight_decay=2 * alpha), lr=lr)
    gaps = [(layer.feedback - layer.weight).norm().item()]
    start = rules.alignment_angles(layer)["FeedbackLinear"]
    for _ in range(40):
        x, target = torch.randn(16, 10, dtype=D), torch.randn(16, 6, dtype=D)
        loss = ((layer(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        gaps.append((layer.feedback - layer.weight).norm().item())
    ratios = torch.tensor(gaps[1:], dtype=D) / torch.tensor(gaps[:-1], dtype=D)
    torch.testing.assert_close(ratios, torch.full_like(ratios, 1 - 2 * alpha * lr),
                               atol=1e-9, rtol=1e-9)
    assert rules.alignment_angles(layer)["FeedbackLinear"] < start / 2


@pytest.mark.parametrize("layer", [nn.Linear(10, 6), nn.Conv2d(3, 4, 3, padding=1)])
def test_kolen_pollack_on_a_pruned_layer_still_goes_to_wt(layer):
    """With half the weights pruned (torch.nn.utils.prune, as nbkit.pruning.prune does),
    the B the backward pass uses is masked like W, so the gap between them still shrinks
    by exactly (1 − 2αη) per step. (An unmasked B would keep learning the pruned
    connections' gradients, grow without bound there, and send errors back through
    connections that no longer exist.)"""
    from torch.nn.utils import prune

    torch.manual_seed(0)
    alpha, lr = 0.05, 0.5
    layer = layer.to(D)
    prune.random_unstructured(layer, "weight", amount=0.5)
    mask = layer.weight_mask
    layer = rules.convert(layer, "kolen_pollack", alpha=alpha, seed=0)
    opt = torch.optim.SGD(rules.param_groups(layer, lr=lr, weight_decay=2 * alpha), lr=lr)
    shape = (16, 10) if isinstance(layer, nn.Linear) else (4, 3, 6, 6)

    def gap():  # (prune recomputes .weight only in the forward pass)
        return ((layer.feedback - layer.weight_orig) * mask).norm().item()

    gaps, start = [gap()], next(iter(rules.alignment_angles(layer).values()))
    for _ in range(40):
        x = torch.randn(shape, dtype=D, requires_grad=True)
        out = layer(x)
        g = torch.randn_like(out)
        opt.zero_grad()
        out.backward(g)
        opt.step()
        assert torch.all(layer.feedback.grad[mask == 0] == 0)
        gaps.append(gap())
    ratios = torch.tensor(gaps[1:], dtype=D) / torch.tensor(gaps[:-1], dtype=D)
    torch.testing.assert_close(ratios, torch.full_like(ratios, 1 - 2 * alpha * lr),
                               atol=1e-9, rtol=1e-9)
    assert next(iter(rules.alignment_angles(layer).values())) < start / 2
    # the error sent back runs through the masked B only
    x = torch.randn(shape, dtype=D, requires_grad=True)
    out = layer(x)
    g = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, g)
    twin = rules.convert(copy.deepcopy(nn.Linear(10, 6) if isinstance(layer, nn.Linear)
                                       else nn.Conv2d(3, 4, 3, padding=1)).to(D),
                         "kolen_pollack")
    with torch.no_grad():
        twin.weight.copy_(layer.feedback * mask)
    twin = rules.unconvert(twin)
    x2 = x.detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(twin(x2), x2, g)
    torch.testing.assert_close(dx, expected)


@pytest.mark.parametrize("beta", [0.5, 1.0])
@pytest.mark.parametrize("layer, form, scale", [
    (nn.Linear(16, 6), "reference", 1),
    (nn.Conv2d(2, 4, 3), "reference", 36),      # [TR]'s code sums over the 6 × 6 positions
    (nn.Conv2d(2, 4, 3), "per_position", 1)])   # nbkit's earlier mean over positions
def test_weight_mirror_is_proportional_to_wt_under_white_noise(layer, form, scale, beta):
    """B → (β / 2α) E[x xᵀ] Wᵀ for unit white-noise inputs (the layer's own inputs play
    no part: weight mirror feeds noise): ½ Wᵀ with [TR]'s α = β on a Linear layer. For a
    valid (unpadded) conv the reference sums over its P output positions: (β P / 2α) Wᵀ."""
    torch.manual_seed(0)
    layer = copy.deepcopy(layer)
    alpha = 0.5 * scale  # keeps the fixed point's length, and the step size, near 1
    layer = rules.convert(layer, "weight_mirror", alpha=alpha, beta=beta, seed=0,
                          conv_form=form)
    x = torch.full((256, 16), 3.0) if isinstance(layer, nn.Linear) else \
        torch.full((8, 2, 8, 8), 3.0)  # constant inputs: only the noise counts
    _train_b(layer, x, steps=100, lr=0.1 / scale)
    fb = _train_b(layer, x, steps=100, lr=0.01 / scale)
    assert float(rules.angle(fb, layer.weight)) < 4
    ratio = (fb.norm() / layer.weight.norm()).item()
    expected = beta * scale / (2 * alpha)
    assert abs(ratio - expected) < 0.1 * expected


def test_information_alignment_fixed_point():
    """B → E[x yᵀ](E[y yᵀ] + I)⁻¹ with [TR]'s coefficient ratios (α = 2β = 2γ)."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False).to(D)
    layer = rules.convert(layer, "information_alignment", alpha=0.2, beta=0.1, gamma=0.1,
                          samples=None)  # the whole batch: the exact batch moments
    x = torch.randn(512, 6, dtype=D) @ torch.randn(6, 6, dtype=D)
    fb = _train_b(layer, x, steps=1500, lr=0.3)
    y = x @ layer.weight.t()
    exy, eyy = x.t() @ y / len(x), y.t() @ y / len(x)
    b_star = exy @ torch.linalg.inv(eyy + torch.eye(4, dtype=D))
    torch.testing.assert_close(fb.t(), b_star, atol=1e-7, rtol=1e-6)


def test_activation_alignment_matches_w_on_the_data_subspace():
    """AA's gradient is (2αF − βW) E[x xᵀ]: on the span of the data F → W (β = 2α);
    off it, F keeps its random start."""
    torch.manual_seed(0)
    layer = rules.convert(nn.Linear(8, 5, bias=False).to(D), "activation_alignment",
                          alpha=0.25, beta=0.5, seed=0, samples=None)
    basis, _ = torch.linalg.qr(torch.randn(8, 3, dtype=D))  # a 3-d data subspace
    x = torch.randn(256, 3, dtype=D) @ basis.t()
    start = layer.feedback.detach().clone()
    fb = _train_b(layer, x, steps=800, lr=0.5)
    torch.testing.assert_close(fb @ basis, layer.weight @ basis, atol=1e-7, rtol=1e-6)
    off = torch.eye(8, dtype=D) - basis @ basis.t()
    torch.testing.assert_close(fb @ off, start @ off, atol=1e-9, rtol=1e-9)
    assert float(rules.angle(fb, layer.weight)) > 10  # so the full angle need not reach 0


def test_samples_option_estimates_on_part_of_the_batch():
    """With samples=k only the first k examples drive the data terms."""
    torch.manual_seed(0)
    a = rules.convert(nn.Linear(5, 3).to(D), "activation_alignment", samples=4, seed=0)
    b = rules.convert(nn.Linear(5, 3).to(D), "activation_alignment", seed=0)
    b.load_state_dict(a.state_dict())
    x = torch.randn(10, 5, dtype=D)
    for m, inp in ((a, x), (b, x[:4])):
        out = m(inp)
        out.backward(torch.zeros_like(out))
    torch.testing.assert_close(a.feedback.grad, b.feedback.grad)


def test_information_alignment_fixed_point_of_a_conv_on_patches():
    """With ``conv_form="per_position"`` a conv's sample is one output position: x its
    input patch, y = W x its output channels, and B → E[x yᵀ](E[y yᵀ] + I)⁻¹ over all
    (example, position) pairs."""
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).to(D)
    layer = rules.convert(layer, "information_alignment", alpha=0.2, beta=0.1, gamma=0.1,
                          samples=None, conv_form="per_position")
    x = torch.randn(16, 2, 7, 7, dtype=D)
    fb = _train_b(layer, x, steps=1500, lr=0.3)
    patches = torch.nn.functional.unfold(x, 3, padding=1, stride=2)  # (n, 18, positions)
    patches = patches.transpose(1, 2).reshape(-1, 18)
    y = patches @ layer.weight.reshape(3, 18).t()
    exy, eyy = patches.t() @ y / len(y), y.t() @ y / len(y)
    b_star = exy @ torch.linalg.inv(eyy + torch.eye(3, dtype=D))
    torch.testing.assert_close(fb.reshape(3, 18).t(), b_star, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 40])
def test_null_term_is_the_same_in_either_multiplication_order(n):
    """E[y yᵀ] F is computed as Y (Yᵀ F) when there are fewer samples than channels."""
    from nbkit.rules.primitives import ConvOps, LinearOps

    torch.manual_seed(0)
    y, fb = torch.randn(n, 6, 2, 2, dtype=D), torch.randn(6, 3, 3, 3, dtype=D)
    yc = y.transpose(0, 1).reshape(6, -1)
    expected = (yc @ yc.t() @ fb.reshape(6, -1)).reshape(fb.shape)
    torch.testing.assert_close(ConvOps((1, 1), (0, 0), (1, 1)).gram_times(y, fb), expected)
    y2, fb2 = torch.randn(n, 6, dtype=D), torch.randn(6, 4, dtype=D)
    torch.testing.assert_close(LinearOps.gram_times(y2, fb2), y2.t() @ y2 @ fb2)
