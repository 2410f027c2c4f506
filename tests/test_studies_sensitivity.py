"""Notebook 06's β/α study (weight mirror against information alignment) and its slider."""

from __future__ import annotations

import math

import pytest

from nbkit import rules
from nbkit.studies import sensitivity as S
from nbkit.widgets import rules as rules_app

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = S.settings("quick", ratios=(0.01, 1.0),
                   architectures={"MLP": ("mlp", {"depth": 3, "width": 32, "batchnorm": True})},
                   train={**S.QUICK.train, "steps": 100})


@pytest.fixture(scope="module")
def grid():
    return S.sensitivity_grid(SMALL, progress=False)


def test_coefficients_keep_the_first_and_scale_the_second():
    assert S.coefficients_at("weight_mirror", 0.5) == {"alpha": 1e-3, "beta": 5e-4}
    ia = S.coefficients_at("information_alignment", 2.0)
    assert ia == {**rules.get("information_alignment").coefficients, "beta": 4e-3}


def test_the_grid_has_every_rule_architecture_and_ratio(grid):
    assert grid["ratios"] == [0.01, 1.0] and grid["architectures"] == ["MLP"]
    for key in ("test_acc", "weight_angle", "delta_angle", "local_delta_angle", "norm_ratio"):
        for rule in SMALL.rules:
            values = grid[key][rule]["MLP"]
            assert len(values) == 2 and all(math.isfinite(v) for v in values), (key, rule)
    assert grid is S.sensitivity_grid(SMALL, progress=False)   # cached


def test_weight_mirrors_b_grows_with_beta_over_alpha(grid):
    """WM's B settles at (β / 2α) E[x xᵀ] Wᵀ: a hundred times the ratio, a longer B."""
    small, large = grid["norm_ratio"]["weight_mirror"]["MLP"]
    assert large > 1.5 * small


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="fewer than two"):
        S.sensitivity_grid(SMALL.replace(rules=("kolen_pollack",)))
    with pytest.raises(ValueError, match="positive"):
        S.sensitivity_grid(SMALL.replace(ratios=(0.0, 1.0)))


def test_the_slider_moves_the_mark_and_the_caption(grid):
    app = rules_app.sensitivity_app(grid, ratio=0.01)
    assert app.error is None, app.messages
    marks = {sh.x0 for sh in app.figure.layout.shapes if sh.line.dash == "dot"}
    assert marks == {0.01}
    assert "β/α = 0.01" in app.caption.value
    app.controls["ratio"].value = 1.0
    assert {sh.x0 for sh in app.figure.layout.shapes if sh.line.dash == "dot"} == {1.0}
    assert "β/α = 1" in app.figure.layout.title.text
    names = {t.name for t in app.figure.data if t.showlegend is not False}
    assert names == {"Weight mirror, MLP", "Information alignment, MLP"}
