"""Figure builders of the learning-rule notebooks: data in, traces, titles and axes out."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbkit.viz import rules as V
from nbkit.viz.style import RULE_COLORS, color_for, label_for

LAYERS = ["layers.0", "layers.3", "fc"]


def fake_run(rule, start=90.0, end=10.0, steps=(0, 10, 20)):
    n = len(steps)
    angles = {layer: [start + (end - start) * k / (n - 1) + i for k in range(n)]
              for i, layer in enumerate(LAYERS)}
    return {"rule": rule, "steps": list(steps), "train_loss": [None, 2.1, 1.9],
            "test_acc": [0.1, 0.2, 0.3], "alignment": angles,
            "gradient": {k: [v + 5 for v in vs] for k, vs in angles.items()}}


def fake_merged():
    runs = []
    for i, rule in enumerate(["backprop", "feedback_alignment", "symmetric_alignment"]):
        layers = {"stem.conv": [0.0, 0.0] if rule == "backprop" else [90.0, 60.0 - 20 * i],
                  "fc": [0.0, 0.0] if rule == "backprop" else [80.0, 40.0]}
        runs.append({"run_id": f"seed=0,rule={rule}", "config": {"rule": rule},
                     "result": {"test_acc": 0.9 - 0.1 * i,
                                "weight_angles": {"steps": [0, 391], "layers": layers},
                                "delta_angles": {"steps": [0, 391], "layers": layers}}})
    return {"experiment": "learning_rules", "variant": "full",
            "config": {"model": "resnet20", "data": "cifar10", "seed": 0},
            "provenance": {"git_commits": ["0123456789abcdef"], "git_dirty": False,
                           "devices": ["NVIDIA H100 80GB HBM3"], "torch": ["2.11.0"],
                           "first_date": "2026-11-26T10:00:00",
                           "last_date": "2026-11-27T09:00:00", "runs": 3,
                           "runs_declared": 8},
            "summary": {}, "runs": runs}


def fake_grid():
    rules = ["backprop", "weight_mirror", "information_alignment", "symmetric_alignment"]
    depths, sigmas = [2, 4, 6], [0.0, 0.3, 1.0]
    acc = {r: [[0.45 - 0.02 * i * (k + 1) - 0.05 * j for j in range(3)] for i in range(3)]
           for k, r in enumerate(rules)}
    ang = {r: [[10.0 * k + i + j for j in range(3)] for i in range(3)]
           for k, r in enumerate(rules)}
    return {"depths": depths, "sigmas": sigmas, "rules": rules, "test_acc": acc,
            "alignment": ang, "chance": 0.1, "note": "fake settings"}


def traces(fig, where):
    return [t for t in fig.data if where(t)]


# ------------------------------------------------------------------ training curves

def test_training_curves_one_rule_draws_every_layer_with_a_ramp():
    run = fake_run("feedback_alignment")
    fig = V.training_curves(run, note="conv on cifar10-mini")
    assert "conv on cifar10-mini" in fig.layout.title.text
    titles = [a.text for a in fig.layout.annotations]
    for t in ("Training loss", "Test accuracy", "Weight angle between W and Bᵀ, per layer",
              "Global δ angle: δx against full backprop's, per layer"):
        assert t in titles
    weight = traces(fig, lambda t: "W vs Bᵀ" in (t.hovertemplate or ""))
    delta = traces(fig, lambda t: "δ vs backprop" in (t.hovertemplate or ""))
    assert [t.name for t in weight] == LAYERS
    assert len(delta) == len(LAYERS)
    assert list(weight[0].y) == run["alignment"]["layers.0"]
    assert list(delta[2].y) == run["gradient"]["fc"]
    assert len({t.line.color for t in weight}) == len(LAYERS)  # a colour per layer
    acc = traces(fig, lambda t: "test accuracy" in (t.hovertemplate or ""))[0]
    assert list(acc.y) == pytest.approx([10.0, 20.0, 30.0])  # percent
    assert fig.layout.xaxis3.title.text == "SGD step"
    assert fig.layout.yaxis3.title.text == "angle (degrees)"


def test_training_curves_several_rules_keep_their_colours():
    runs = [fake_run("feedback_alignment"), fake_run("symmetric_alignment", 90, 3)]
    fig = V.training_curves(runs)
    legend = [t for t in fig.data if t.showlegend]
    assert [t.name for t in legend] == [label_for("feedback_alignment"),
                                        label_for("symmetric_alignment")]
    weight = traces(fig, lambda t: "W vs Bᵀ" in (t.hovertemplate or ""))
    assert len(weight) == 2 * len(LAYERS)
    assert {t.line.color for t in weight[:3]} == {RULE_COLORS["feedback_alignment"]}
    assert {t.line.color for t in weight[3:]} == {RULE_COLORS["symmetric_alignment"]}
    opacities = [t.opacity for t in weight[:3]]
    assert opacities == sorted(opacities) and opacities[0] < opacities[-1]  # input faint


def test_training_curves_take_a_dict_and_partial_runs():
    partial = fake_run("backprop", 0, 0)
    partial["steps"] = partial["steps"][:2]
    fig = V.training_curves({"backprop": partial})
    weight = traces(fig, lambda t: "W vs Bᵀ" in (t.hovertemplate or ""))
    assert all(len(t.x) == len(t.y) for t in weight)


# ------------------------------------------------------------------ published, full

def test_published_figure_marks_published_numbers_and_orders_nbkit_bars():
    fig = V.published_figure()
    published = [t for t in fig.data if "published" in t.name]
    assert len(published) == 4
    resnets = [t for t in published if t.name.startswith("ResNet")]
    assert all(t.mode == "markers" for t in resnets)  # categories: no connecting lines
    assert all(t.line.dash == "dash" for t in published if t.name.startswith("MLP"))
    r20 = next(t for t in published if t.name.startswith("ResNet-20"))
    assert list(r20.x) == ["BP", "FA", "SS"] and list(r20.y) == [8.6, 32.2, 10.1]
    assert list(r20.customdata) == [label_for(r) for r in
                                    ("backprop", "feedback_alignment", "sign_symmetry")]
    assert not [t for t in fig.data if t.type == "bar"]
    with_ours = V.published_figure({"symmetric_alignment": 9.5, "backprop": 9.0,
                                    "weight_mirror": None, "my_rule": 20.0})
    bars = [t for t in with_ours.data if t.type == "bar"]
    # RULE_ORDER first (backprop leads), unknown rules after; missing values dropped
    assert len(bars) == 1 and list(bars[0].x) == ["BP", "SA", "my_rule"]
    assert list(bars[0].y) == [9.0, 9.5, 20.0]
    assert list(bars[0].marker.color)[:2] == [color_for("backprop"),
                                              color_for("symmetric_alignment")]


def test_full_results_figure_and_provenance():
    merged = fake_merged()
    text = V.provenance_text(merged)
    for part in ("variant full", "3 of 8 runs", "NVIDIA H100", "torch 2.11.0", "0123456789",
                 "2026-11-26", "2026-11-27"):
        assert part in text
    fig = V.full_results_figure(merged)
    assert "resnet20" in fig.layout.title.text and "NVIDIA H100" in fig.layout.title.text
    bar = next(t for t in fig.data if t.type == "bar")
    assert list(bar.x) == ["BP", "FA", "SA"]
    assert list(bar.y) == pytest.approx([10.0, 20.0, 30.0])
    published = next(t for t in fig.data if "published" in (t.name or ""))
    assert published.mode == "markers" and list(published.y) == [8.6, 32.2, 10.1]
    sa = [t for t in fig.data if t.name == label_for("symmetric_alignment")]
    assert len(sa) == 2  # weight and δ panels
    assert list(sa[0].y) == pytest.approx([85.0, 30.0])  # mean of the two layers


def test_final_by_rule_and_routes_full_figure():
    merged = fake_merged()
    merged["runs"][2]["result"]["norm_ratios"] = {
        "steps": [0, 391], "layers": {"stem.conv": [1.0, 0.4], "fc": [1.0, 0.6]}}
    final = V.final_by_rule(merged)
    assert list(final) == ["backprop", "feedback_alignment", "symmetric_alignment"]
    sa = final["symmetric_alignment"]
    assert sa["test_acc"] == pytest.approx(0.7)
    assert sa["weight_angle"] == pytest.approx(30.0) and sa["norm_ratio"] == pytest.approx(0.5)
    assert math.isnan(final["backprop"]["norm_ratio"])  # not logged in this fake
    fig = V.routes_full_figure(merged)
    assert "NVIDIA H100" in fig.layout.title.text
    points = [t for t in fig.data if t.name == label_for("symmetric_alignment")]
    assert [t.x[0] for t in points] == pytest.approx([30.0, 30.0])  # weight, δ panels
    assert all(t.y[0] == pytest.approx(70.0) for t in points)
    fa = next(t for t in fig.data if t.name == label_for("feedback_alignment"))
    sa_style = points[0]
    assert fa.legendgroup == "local rules" and fa.marker.symbol == "square"
    assert sa_style.legendgroup == "weight estimation" and sa_style.marker.symbol == "circle"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 180), st.just(math.nan)), min_size=1, max_size=6))
def test_mean_angle_ignores_missing_values(values):
    per_layer = {f"l{i}": [v] for i, v in enumerate(values)}
    finite = [v for v in values if math.isfinite(v)]
    m = V.mean_angle(per_layer)
    if finite:
        assert min(finite) - 1e-9 <= m <= max(finite) + 1e-9
    else:
        assert math.isnan(m)


# ------------------------------------------------------------------ two routes

def test_routes():
    assert V.route_of("backprop") == "reference"
    assert {V.route_of(r) for r in ("weight_mirror", "information_alignment")} == {"local"}
    assert {V.route_of(r) for r in ("symmetric_alignment", "kolen_pollack",
                                    "activation_alignment")} == {"estimation"}


def test_rule_order_and_routes_come_from_the_registry(monkeypatch):
    from nbkit.rules import registry

    assert V.RULE_ORDER == tuple(registry.ordered()) and V.RULE_ORDER[0] == "backprop"
    assert {registry.route(r) for r in V.LOCAL_RULES} == {"local"}
    assert {registry.route(r) for r in V.ESTIMATION_RULES} == {"estimation"}
    # a rule registered later is styled by its route and placed by its order, by name alone
    monkeypatch.setitem(registry.RULES, "my_local", registry.Rule("my_local", "fixed",
                                                                  route="local", order=5))
    monkeypatch.setitem(registry.RULES, "my_reference", registry.Rule(
        "my_reference", "transpose", route="reference", order=1))
    grid = fake_grid()
    for rule in ("my_local", "my_reference"):
        grid["rules"].append(rule)
        grid["test_acc"][rule] = grid["test_acc"]["weight_mirror"]
        grid["alignment"][rule] = grid["alignment"]["weight_mirror"]
    fig = V.two_routes_figure(grid, depth=4, sigma=0.3)
    mine = next(t for t in fig.data if t.name == "my_local" and t.showlegend is not False)
    assert mine.line.dash == "dot" and mine.legendgroup == "local rules"
    bars = next(t for t in fig.data if t.type == "bar")
    assert "my_reference" not in bars.y and "my_local" in bars.y  # a reference has no B
    assert bars.marker.pattern.shape[list(bars.y).index("my_local")] == "."
    errors = V.published_figure({"symmetric_alignment": 9.5, "my_local": 30.0,
                                 "backprop": 9.0})
    assert list(next(t for t in errors.data if t.type == "bar").x) == ["BP", "my_local", "SA"]


def test_two_routes_figure_indexes_the_grid():
    grid = fake_grid()
    fig = V.two_routes_figure(grid, depth=4, sigma=0.3)
    titles = [a.text for a in fig.layout.annotations]
    assert "Test accuracy against depth (σ = 0.3)" in titles
    assert "Test accuracy against update noise (depth 4)" in titles
    by_depth = {t.name: t for t in fig.data if t.type == "scatter" and t.showlegend is not False}
    ia = by_depth[label_for("information_alignment")]
    assert list(ia.x) == [2, 4, 6]
    assert list(ia.y) == pytest.approx([100 * grid["test_acc"]["information_alignment"][i][1]
                                        for i in range(3)])
    assert ia.line.dash == "dot" and ia.legendgroup == "local rules"
    sa = by_depth[label_for("symmetric_alignment")]
    assert sa.line.dash == "solid" and sa.legendgroup == "weight estimation"
    by_noise = [t for t in fig.data if t.type == "scatter" and t.showlegend is False]
    bp = next(t for t in by_noise if t.name == label_for("backprop"))
    assert list(bp.y) == pytest.approx([100 * a for a in grid["test_acc"]["backprop"][1]])
    bars = next(t for t in fig.data if t.type == "bar")
    assert list(bars.y) == ["WM", "IA", "SA"]  # backprop has no B
    assert list(bars.x) == [grid["alignment"][r][1][1] for r in
                            ("weight_mirror", "information_alignment", "symmetric_alignment")]
    assert fig.layout.yaxis.range == fig.layout.yaxis2.range  # accuracy panels comparable
    assert "fake settings" in fig.layout.title.text


def test_two_routes_figure_snaps_to_the_nearest_grid_point_and_filters_rules():
    grid = fake_grid()
    fig = V.two_routes_figure(grid, depth=5.2, sigma=0.9, rules=["backprop",
                                                                  "symmetric_alignment"])
    titles = [a.text for a in fig.layout.annotations]
    assert "Test accuracy against update noise (depth 6)" in titles
    assert "Test accuracy against depth (σ = 1)" in titles
    names = {t.name for t in fig.data if t.type == "scatter"}
    assert names == {label_for("backprop"), label_for("symmetric_alignment")}
