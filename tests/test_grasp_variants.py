"""GraSP's temperature and the SynFlow paper's own GraSP (T = 1, -(H g) ⊙ θ kept high):
scores against the closed form of a softmax regression, and the registry facts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nbkit import pruning
from nbkit.pruning import scores


def _closed_form_hg(w, x, y, temperature):
    """H g for L = mean CE(W x / T): g = (1/nT) Σ (p - e_y) xᵀ and
    H[V] = (1/nT²) Σ (diag p - p pᵀ) V x xᵀ."""
    n = len(x)
    p = torch.softmax(x @ w.T / temperature, dim=1)
    e = torch.nn.functional.one_hot(y, w.shape[0]).to(w.dtype)
    g = (p - e).T @ x / (n * temperature)
    gx = x @ g.T                                       # (n, c): G x_i
    jgx = p * gx - p * (p * gx).sum(1, keepdim=True)   # (diag p - p pᵀ) G x_i
    return jgx.T @ x / (n * temperature**2)


@pytest.fixture
def regression():
    torch.manual_seed(0)
    model = nn.Linear(6, 4, bias=False).double()
    x = torch.randn(32, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (32,))
    return model, x, y


@pytest.mark.parametrize("method,temperature,sign", [
    ("grasp_paper", None, -1.0), ("grasp_paper", 3.0, -1.0),
    ("grasp", None, 1.0), ("grasp", 1.0, 1.0)])
def test_scores_match_the_closed_form(regression, method, temperature, sign):
    model, x, y = regression
    t = temperature or scores.get(method).temperature
    want = sign * _closed_form_hg(model.weight.detach(), x, y, t) * model.weight.detach()
    got = pruning.score(model, method, (x, y), temperature=temperature,
                        dtype=torch.float64)["weight"]
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-15)


def test_the_paper_variant_keeps_what_grasp_at_t1_removes(regression):
    model, x, y = regression
    paper = pruning.score(model, "grasp_paper", (x, y))["weight"]
    grasp_t1 = pruning.score(model, "grasp", (x, y), temperature=1)["weight"]
    torch.testing.assert_close(paper, -grasp_t1)


def test_registry_facts_and_clear_errors(regression):
    model, x, y = regression
    assert scores.get("grasp").temperature == 200.0
    assert scores.get("grasp_paper").temperature == 1.0
    assert scores.get("grasp_paper").variant_of == "grasp"
    assert "grasp_paper" not in pruning.methods()
    assert pruning.methods(variants=True) == ["random", "magnitude", "snip", "grasp",
                                              "grasp_paper", "synflow"]
    with pytest.raises(ValueError, match="'magnitude' has no temperature; temperature= "
                                         "applies to 'grasp', 'grasp_paper'"):
        pruning.prune(model, "magnitude", 0.5, temperature=2)
    for bad in (0, -1, float("inf"), True):
        with pytest.raises(ValueError, match="temperature must be a positive finite"):
            pruning.score(model, "grasp", (x, y), temperature=bad)
