"""The helpers notebook 06 reads [TR]'s shipped CIFAR studies with: the axis of a row,
the gaps to backprop, the β/α sweep and its spread, and the figure drawn from them."""

from __future__ import annotations

import pytest

from nbkit import rules
from nbkit.studies import two_routes as T
from nbkit.viz import rules as V

WM, IA = rules.get("weight_mirror").coefficients, rules.get("information_alignment").coefficients


def row(rule, top1, model="resnet20", sigma=0.0, coefficients=None):
    return {"rule": rule, "model": model, "seed": 0, "sigma": sigma, "top1": top1,
            "finite": top1 is not None, "coefficients": coefficients or {},
            "weight_angle": None, "delta_angle": None, "local_delta_angle": None,
            "norm_ratio": None}


DEPTH = [row("backprop", 50.0), row("backprop", 40.0, "resnet56"),
         row("information_alignment", 45.0), row("information_alignment", 20.0, "resnet56"),
         row("symmetric_alignment", 48.0), row("symmetric_alignment", None, "resnet56"),
         row("feedback_alignment", 30.0, "resnet32")]  # no backprop at depth 32


def wm(ratio, top1, model):
    return row("weight_mirror", top1, model,
               coefficients={"alpha": WM["alpha"], "beta": ratio * WM["alpha"]})


def ia(ratio, top1, model, **other):
    return row("information_alignment", top1, model,
               coefficients={**IA, "beta": ratio * IA["alpha"], **other})


SWEEP = [wm(0.01, 20.0, "conv"), wm(1.0, 45.0, "conv"), wm(0.01, 30.0, "resnet20"),
         wm(1.0, None, "resnet20"), ia(0.01, 33.0, "conv"), ia(1.0, 31.0, "conv"),
         ia(0.5, 10.0, "conv", gamma=1e-2)]   # a ridge run: not part of the β/α sweep


def test_a_rows_axis_is_read_from_its_model_coefficients_or_key():
    assert T.x_value(row("backprop", 1.0, "resnet110"), "depth") == 110
    assert T.x_value(wm(0.01, 1.0, "conv"), "ratio") == pytest.approx(0.01)
    assert T.x_value(row("backprop", 1.0, sigma=0.3), "sigma") == 0.3


def test_gaps_are_backprop_minus_the_rule_at_the_same_model_and_diverged_runs_are_none():
    g = T.gaps(DEPTH, "depth")
    assert g["information_alignment"] == {20.0: 5.0, 56.0: 20.0}
    assert g["symmetric_alignment"] == {20.0: 2.0, 56.0: None}
    assert "feedback_alignment" not in g and "backprop" not in g
    noise = [row("backprop", 50.0), row("backprop", 30.0, sigma=1.0),
             row("symmetric_alignment", 47.0), row("symmetric_alignment", 28.0, sigma=1.0)]
    assert T.gaps(noise, "sigma") == {"symmetric_alignment": {0.0: 3.0, 1.0: 2.0}}


def test_the_ratio_sweep_leaves_out_runs_that_vary_another_coefficient():
    sweep = T.ratio_sweep(SWEEP)
    assert len(sweep) == len(SWEEP) - 1
    assert all(r["coefficients"].get("gamma", IA["gamma"]) == IA["gamma"] for r in sweep)
    spread = T.ratio_spread(SWEEP)
    assert spread["weight_mirror", "conv"] == {"low": 20.0, "high": 45.0, "best_ratio": 1.0,
                                               "range": 25.0, "runs": 2}
    assert spread["weight_mirror", "resnet20"]["runs"] == 2           # the diverged one too
    assert spread["weight_mirror", "resnet20"]["range"] == 0.0        # but not its top-1
    assert spread["information_alignment", "conv"]["low"] == 31.0     # the ridge run's 10 is out
    assert spread["information_alignment", "conv"]["best_ratio"] == pytest.approx(0.01)


def test_shipped_names_the_studies_and_finds_nothing_in_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        T.shipped("two_routes_width")
    assert T.shipped("two_routes_depth", "cpu", tmp_path) == (None, None)
    (tmp_path / "two_routes_depth.cpu.json").write_text("{not json")
    rows, found = T.shipped("two_routes_depth", "cpu", tmp_path)
    assert rows is None and not found.ok and found.error


def _traces(fig, panel):
    axis = "x" if panel == 1 else f"x{panel}"
    return {t.name: t for t in fig.data if (t.xaxis or "x") == axis}


def test_the_claim_figure_draws_accuracy_and_the_gap_and_names_what_diverged():
    fig = V.claim_figure(DEPTH, "depth", title="depth")
    acc, gap = _traces(fig, 1), _traces(fig, 2)
    assert set(acc) == {V.label_for(r) for r in ("backprop", "information_alignment",
                                                 "symmetric_alignment", "feedback_alignment")}
    ia_name = V.label_for("information_alignment")
    assert list(acc[ia_name].x) == [20.0, 56.0] and list(acc[ia_name].y) == [45.0, 20.0]
    assert list(gap[ia_name].y) == [5.0, 20.0]
    assert V.label_for("backprop") not in gap                 # no gap to itself
    sa = V.label_for("symmetric_alignment")
    assert list(acc[sa].x) == [20.0] and list(gap[sa].y) == [2.0]
    assert "diverged (not drawn): " + sa in fig.layout.title.text


def test_the_claim_figure_splits_the_ratio_study_by_architecture_on_a_log_axis():
    fig = V.claim_figure(T.ratio_sweep(SWEEP), "ratio", title="ratio")
    acc = _traces(fig, 1)
    name = V.label_for("weight_mirror")
    assert {f"{name}, conv", f"{name}, resnet20"} <= set(acc)
    assert list(acc[f"{name}, conv"].y) == [20.0, 45.0]
    assert fig.layout.xaxis.type == "log"
    assert not _traces(fig, 2)                    # no backprop run: no gap drawn
