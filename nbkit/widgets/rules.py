"""Apps of the learning-rule notebooks.

- :func:`feedback_alignment_app` (``05_feedback_alignment``): train one small net with a
  rule chosen in a dropdown, and others for comparison, while the loss, the accuracy and
  the weight and δ angles of every layer are drawn live.
- :func:`two_routes_app` (``06_two_routes``): local rules against weight estimation over
  a precomputed grid of depth × update noise, indexed by two sliders.

The runs come from :mod:`nbkit.studies.learning_rules` and
:mod:`nbkit.studies.two_routes` (cached: going back to a rule or a grid point is
instant), the figures from :mod:`nbkit.viz.rules`.
"""

from __future__ import annotations

import ipywidgets as W

from ..studies import learning_rules as study
from ..viz import rules as V
from ..viz.style import label_for
from .app import App

__all__ = ["feedback_alignment_app", "two_routes_app", "sensitivity_app"]


def _describe_runs(result: dict) -> str:
    parts = []
    for run in result["runs"]:
        acc = run["test_acc"][-1]
        parts.append(f"<b>{label_for(run['rule'])}</b>: step {run['steps'][-1]}, "
                     f"test accuracy {100 * acc:.1f}%, mean weight angle "
                     f"{V.mean_angle(run['alignment']):.1f}°, mean global δ angle "
                     f"{V.mean_angle(run['gradient']):.1f}°")
    return "<br>".join(parts)


def feedback_alignment_app(settings: study.Settings = study.QUICK, *,
                           rule: str = "feedback_alignment",
                           compare=("backprop", "symmetric_alignment"), auto_start=True,
                           device=None) -> App:
    """The live training app of notebook 05: a rule dropdown, a multi-select of rules to
    compare with, quick-mode or paper coefficients, the number of steps and a Train
    button (``settings.train["steps"]`` to start with)."""
    options = [(label_for(r), r) for r in V.registry.ordered()]
    every = settings.log_every or 15
    steps = int(settings.train["steps"])
    controls = {
        "rule": W.Dropdown(options=options, value=rule, description="rule"),
        "compare": W.SelectMultiple(options=options, value=tuple(compare), rows=4,
                                    description="compare with"),
        "coefficients": W.ToggleButtons(options=[("quick-mode", "quick"),
                                                 ("paper", "paper")],
                                        value="quick" if settings.preset == "quick"
                                        else "paper", description="coefficients"),
        "steps": W.IntSlider(value=steps, min=every, max=max(20 * every, steps),
                             step=every, description="SGD steps", continuous_update=False),
    }

    def compute(rule, compare, coefficients, steps):
        run_settings = settings.replace(preset=coefficients,
                                        train={**settings.train, "steps": int(steps)})
        return study.compare([rule, *compare], run_settings, device=device)

    def build(result):
        note = study.describe_settings(result["settings"], result["coefficients"])
        title = ("Learning without weight symmetry: " +
                 " vs ".join(label_for(r["rule"]) for r in result["runs"]))
        return V.training_curves(result["runs"], title=title, note=note)

    return App(controls, compute, build, run_button="Train", describe=_describe_runs,
               auto_start=auto_start)


# ------------------------------------------------------------------- notebook 06 ---

def _describe_point(grid: dict, depth, sigma) -> str:
    i, j = grid["depths"].index(depth), grid["sigmas"].index(sigma)
    bp = grid["test_acc"].get("backprop")
    parts = []
    for r in grid["rules"]:
        acc = grid["test_acc"][r][i][j]
        gap = (f" ({100 * (acc - bp[i][j]):+.1f} pts vs backprop)"
               if bp is not None and grid["routes"][r] != "reference" else "")
        parts.append(f"{label_for(r)} {100 * acc:.1f}%{gap}")
    return f"<b>depth {depth}, σ = {sigma:g}:</b> " + "; ".join(parts)


def two_routes_app(grid: dict, *, depth=None, sigma=None) -> App:
    """Two sliders over a precomputed :func:`two_routes_grid`: depth and update noise σ.
    Moving a slider only indexes the grid."""
    depth = grid["depths"][-1] if depth is None else depth
    sigma = grid["sigmas"][0] if sigma is None else sigma
    controls = {
        "depth": W.SelectionSlider(options=grid["depths"], value=depth, description="depth",
                                   continuous_update=True),
        "sigma": W.SelectionSlider(options=grid["sigmas"], value=sigma, description="noise σ",
                                   continuous_update=True),
    }
    return App(controls, lambda depth, sigma: {"grid": grid, "depth": depth, "sigma": sigma},
               lambda r: V.two_routes_figure(r["grid"], r["depth"], r["sigma"]),
               describe=lambda r: _describe_point(r["grid"], r["depth"], r["sigma"]))


def _describe_sensitivity(grid: dict, ratio) -> str:
    i = grid["ratios"].index(ratio)
    parts = []
    for rule in grid["rules"]:
        accs = {a: grid["test_acc"][rule][a][i] for a in grid["architectures"]}
        spread = {a: max(v) - min(v) for a, v in grid["test_acc"][rule].items()}
        parts.append(f"<b>{label_for(rule)}</b> at β/α = {ratio:g}: " + ", ".join(
            f"{a} {100 * v:.1f}%" for a, v in accs.items()) + " (range over β/α: " + ", ".join(
            f"{a} {100 * v:.1f} pts" for a, v in spread.items()) + ")")
    return "<br>".join(parts)


def sensitivity_app(grid: dict, *, ratio=None) -> App:
    """A β/α slider over a precomputed :func:`nbkit.studies.sensitivity.sensitivity_grid`:
    weight mirror against information alignment on two architectures."""
    ratio = grid["ratios"][len(grid["ratios"]) // 2] if ratio is None else ratio
    controls = {"ratio": W.SelectionSlider(options=grid["ratios"], value=ratio,
                                           description="β/α", continuous_update=True)}
    return App(controls, lambda ratio: {"grid": grid, "ratio": ratio},
               lambda r: V.sensitivity_figure(r["grid"], r["ratio"]),
               describe=lambda r: _describe_sensitivity(r["grid"], r["ratio"]))
