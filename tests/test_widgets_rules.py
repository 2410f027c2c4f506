"""The learning-rule apps, without a kernel: move each control, press Train, and check
that the figure changed as the science says. The science itself (runs, caching, the
grid, collected results) is tested in test_studies_learning_rules.py."""

from __future__ import annotations

import pytest
import torch
from helpers import SMALL_RULES, SMALL_TWO_ROUTES

from nbkit.studies import learning_rules as L
from nbkit.studies import two_routes as TR
from nbkit.viz.style import label_for
from nbkit.widgets import rules as WR

CPU = torch.device("cpu")
SMALL = SMALL_RULES


pytestmark = pytest.mark.usefixtures("one_thread")


def weight_angles(fig) -> dict:
    """{rule label: mean final weight angle over layers} from the figure's traces."""
    out: dict = {}
    for t in fig.data:
        if "W vs Bᵀ" in (t.hovertemplate or ""):
            out.setdefault(t.hovertemplate.split(" · ")[0], []).append(t.y[-1])
    return {k: sum(v) / len(v) for k, v in out.items()}


# ------------------------------------------------------------------- notebook 05

def test_controls_start_from_the_settings():
    app = WR.feedback_alignment_app(SMALL, rule="kolen_pollack", compare=("backprop",),
                                    auto_start=False)
    assert app.result is None and len(app.figure.data) == 0  # nothing trained yet
    values = app.values()
    assert values == {"rule": "kolen_pollack", "compare": ("backprop",),
                      "coefficients": "quick", "steps": 45}
    assert app.controls["steps"].step == 15 and app.controls["steps"].min == 15
    paper = WR.feedback_alignment_app(SMALL.replace(preset=None), auto_start=False)
    assert paper.controls["coefficients"].value == "paper"


def test_switching_the_rule_from_fa_to_sa_lowers_the_angles():
    app = WR.feedback_alignment_app(SMALL, rule="feedback_alignment", compare=())
    assert app.error is None, app.messages
    fa = weight_angles(app.figure)[label_for("feedback_alignment")]
    assert fa > 75
    assert "Feedback alignment" in app.figure.layout.title.text
    assert "quick-mode coefficients" in app.figure.layout.title.text
    app.controls["rule"].value = "symmetric_alignment"
    app.button.click()
    assert app.error is None, app.messages
    sa = weight_angles(app.figure)[label_for("symmetric_alignment")]
    assert sa < fa - 40
    assert "Symmetric alignment α=0.05, β=0.1" in app.figure.layout.title.text
    delta = [t.y[-1] for t in app.figure.data if "δ vs backprop" in (t.hovertemplate or "")]
    assert max(delta) < 60  # the error sent back now follows backprop's
    assert app.progress.value == 1.0
    assert "Symmetric alignment" in app.caption.value
    # the app drew the study's cached run for these settings
    assert app.result["runs"][0] is L.train_rule("symmetric_alignment", SMALL)


def test_paper_coefficients_barely_move_b_in_a_short_demo():
    app = WR.feedback_alignment_app(SMALL, rule="symmetric_alignment", compare=(),
                                    auto_start=False)
    app.controls["coefficients"].value = "paper"
    app.button.click()
    assert app.error is None, app.messages
    assert weight_angles(app.figure)[label_for("symmetric_alignment")] > 70
    assert "[TR]'s coefficients, B on the task's SGD" in app.figure.layout.title.text
    assert app.result["settings"].preset == "paper"


def test_compare_and_steps_controls():
    app = WR.feedback_alignment_app(SMALL, rule="backprop", compare=())
    assert set(weight_angles(app.figure)) == {label_for("backprop")}
    assert weight_angles(app.figure)[label_for("backprop")] == pytest.approx(0, abs=1e-3)
    app.controls["compare"].value = ("backprop", "feedback_alignment")
    app.button.click()  # backprop appears once; feedback alignment is added
    assert set(weight_angles(app.figure)) == {label_for("backprop"),
                                              label_for("feedback_alignment")}
    assert [r["rule"] for r in app.result["runs"]] == ["backprop", "feedback_alignment"]
    app.controls["compare"].value = ()
    app.controls["steps"].value = 30
    app.button.click()
    steps = [t.x[-1] for t in app.figure.data if "W vs Bᵀ" in (t.hovertemplate or "")]
    assert set(steps) == {30}
    assert "30 SGD steps" in app.figure.layout.title.text
    assert app.result["settings"].train["steps"] == 30
    assert SMALL.train["steps"] == 45  # the app's settings are not changed in place


def test_a_compute_error_shows_and_the_app_keeps_working(monkeypatch):
    real = L.iter_rule

    def flaky(rule, *args, **kw):
        if rule == "sign_symmetry":
            raise RuntimeError("sign symmetry is broken on purpose")
        return real(rule, *args, **kw)

    monkeypatch.setattr(L, "iter_rule", flaky)
    app = WR.feedback_alignment_app(SMALL, rule="backprop", compare=())
    before = list(app.figure.data[0].y)
    app.controls["rule"].value = "sign_symmetry"
    app.button.click()
    assert "sign symmetry is broken on purpose" in app.messages
    assert "RuntimeError" in app.caption.value
    assert isinstance(app.error, RuntimeError)
    assert list(app.figure.data[0].y) == before  # the last good figure stays
    assert not app.button.disabled
    assert not L._train_rule.is_cached("sign_symmetry", SMALL, CPU)  # nothing half-done kept
    app.controls["rule"].value = "backprop"
    app.button.click()
    assert app.error is None and app.messages == ""


# ------------------------------------------------------------------- notebook 06

SMALL_GRID = SMALL_TWO_ROUTES


@pytest.fixture(scope="module")
def grid():
    return TR.two_routes_grid(SMALL_GRID, progress=False)


def test_noise_slider_lowers_accuracy_and_raises_sa_angle(grid):
    app = WR.two_routes_app(grid, depth=2, sigma=0.0)
    assert app.error is None, app.messages

    def depth_curve(rule):
        return next(t for t in app.figure.data if t.type == "scatter" and t.showlegend
                    is not False and t.name == label_for(rule)).y

    def sa_bar():
        bar = next(t for t in app.figure.data if t.type == "bar")
        return dict(zip(bar.y, bar.x))["SA"]

    clean_bp, clean_angle = depth_curve("backprop"), sa_bar()
    app.controls["sigma"].value = 1.0
    assert "σ = 1" in app.figure.layout.annotations[0].text
    noisy_bp = depth_curve("backprop")
    assert all(n < c for n, c in zip(noisy_bp, clean_bp))  # noise hurts, at every depth
    assert sa_bar() > clean_angle  # noise knocks B off Wᵀ
    assert "σ = 1" in app.caption.value


def test_caption_compares_each_rule_with_backprop(grid):
    app = WR.two_routes_app(grid, depth=4, sigma=0.0)
    parts = app.caption.value.split("; ")
    assert "depth 4, σ = 0" in parts[0] and "Backprop" in parts[0]
    assert "vs backprop" not in parts[0]  # the reference is not compared with itself
    assert all("pts vs backprop" in p for p in parts[1:]) and len(parts) == 3
    ia = 100 * (grid["test_acc"]["information_alignment"][1][0]
                - grid["test_acc"]["backprop"][1][0])
    assert f"({ia:+.1f} pts vs backprop)" in parts[1]


def test_depth_slider_moves_the_noise_panel(grid):
    app = WR.two_routes_app(grid, depth=2, sigma=0.0)
    assert "depth 2" in app.figure.layout.annotations[1].text
    app.controls["depth"].value = 4
    assert "depth 4" in app.figure.layout.annotations[1].text
    ia = next(t for t in app.figure.data if t.type == "scatter" and t.showlegend is False
              and t.name == label_for("information_alignment"))
    assert list(ia.y) == pytest.approx([100 * a for a in
                                        grid["test_acc"]["information_alignment"][1]])
    assert "depth 4" in app.caption.value


def test_two_routes_app_shows_errors_and_recovers(grid):
    ia = grid["test_acc"]["information_alignment"]
    broken = {**grid, "test_acc": {**grid["test_acc"],
                                   "information_alignment": [ia[0], ia[1][:1]]}}
    app = WR.two_routes_app(broken, depth=2, sigma=0.0)
    assert app.error is None, app.messages
    app.controls["sigma"].value = 1.0  # depth 4 has no result at this noise
    assert "IndexError" in app.messages
    assert "σ = 0" in app.figure.layout.annotations[0].text  # the last good figure stays
    app.controls["sigma"].value = 0.0
    assert app.error is None and app.messages == ""
