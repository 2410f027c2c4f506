"""torch.func transforms see a converted model's rule: the gradients of
``torch.func.grad`` over ``functional_call`` (what a functional, compiled training step
needs) are the ones ``loss.backward()`` gives, B's included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from nbkit import rules
from nbkit.rules.layers import override


@pytest.mark.parametrize("rule", ["feedback_alignment", "kolen_pollack", "weight_mirror",
                                  "sign_symmetry"])
def test_func_grad_matches_backward(rule):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 5))
    rules.convert(net, rule, seed=0)
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 5, (8,))
    params = {n: p.detach() for n, p in net.named_parameters()}

    def loss(p):
        return F.cross_entropy(functional_call(net, p, (x,)), y)

    torch.manual_seed(1)  # weight mirror's B update draws its mirror inputs
    functional = grad(loss)(params)
    net.zero_grad()
    torch.manual_seed(1)
    F.cross_entropy(net(x), y).backward()
    assert functional.keys() == {n for n, _ in net.named_parameters()}
    for name, p in net.named_parameters():
        want = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(functional[name], want, msg=f"{rule}: {name}")
    if rule == "feedback_alignment":  # the rule, not backprop: B, not Wᵀ, carried δ
        with override(net, "exact"):
            backprop = grad(loss)(params)
        assert not torch.allclose(backprop["0.weight"], functional["0.weight"])
