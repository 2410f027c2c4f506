"""The learning-rule studies (notebooks 05 and 06) without any widget: one rule trained
while its angles are logged, the comparison of rules and its cache, the depth × noise
grid of [TR]'s two routes, and the collected full-scale results."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from helpers import SMALL_RULES, SMALL_TWO_ROUTES

import nbkit
from nbkit import rules, studies
from nbkit.studies import learning_rules as L
from nbkit.studies import two_routes as TR
from nbkit.viz import rules as V

CPU = torch.device("cpu")
SMALL = SMALL_RULES


pytestmark = pytest.mark.usefixtures("one_thread")


def _without_timing(run: dict) -> dict:
    """A run without its wall-clock entries (they differ between two identical runs)."""
    out = {k: v for k, v in run.items() if k not in ("seconds", "train_seconds")}
    if "history" in out:
        out["history"] = {k: v for k, v in out["history"].items() if k != "time"}
    return out


# ------------------------------------------------------------------- settings

def test_settings_are_frozen_and_changes_are_checked():
    assert L.settings("quick") is L.QUICK and L.settings("full") is L.FULL
    assert SMALL.train["steps"] == 45 and SMALL.train["lr"] == L.QUICK.train["lr"]  # merged
    assert L.QUICK.train["steps"] == 150  # the shared instance is untouched
    with pytest.raises(ValueError, match="mode must be"):
        L.settings("medium")
    with pytest.raises(ValueError, match="no 'stepz'.*valid: .*log_every"):
        L.settings("quick", stepz=3)
    with pytest.raises(ValueError, match="no 'every'"):  # renamed log_every
        L.QUICK.replace(every=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        L.QUICK.seed = 3


def test_downsample_keeps_labels_and_brightness(mini):
    small = mini.downsample(8)
    assert small.input_shape == (3, 8, 8)
    assert torch.equal(small.train.y, mini.train.y)
    assert small.train.x.dtype == torch.uint8
    assert abs(small.train.x.float().mean() - mini.train.x.float().mean()) < 1.0
    with pytest.raises(ValueError, match="divid"):
        mini.downsample(5)


def test_describe_settings_names_model_steps_and_coefficients():
    coefs = {r: rules.resolve(r, "quick") for r in ("backprop", "symmetric_alignment")}
    text = L.describe_settings(SMALL, coefs)
    assert text.startswith("conv (depth 4, width 8) on cifar10-mini, 45 SGD steps of batch 32")
    assert "quick-mode coefficients" in text
    assert "Symmetric alignment α=0.05, β=0.1" in text and "Backprop" not in text
    paper = L.describe_settings(SMALL.replace(preset="default"),
                                {"symmetric_alignment": rules.resolve("symmetric_alignment")})
    assert "[TR]'s coefficients" in paper and "quick-mode" not in paper


# ------------------------------------------------------------------- notebook 05

def test_iter_rule_logs_from_step_zero_and_repeats_exactly():
    s = SMALL.replace(train={**SMALL.train, "steps": 20}, log_every=10)
    runs = [list(L.iter_rule("feedback_alignment", s)) for _ in range(2)]
    first = runs[0]
    # a growing run: each yield's steps extend the previous one's, every log_every steps
    for before, after in zip(first, first[1:]):
        assert after["steps"][:len(before["steps"])] == before["steps"]
        assert after["progress"] >= before["progress"]
    assert sorted({r["steps"][-1] for r in first}) == [0, 10, 20]
    assert [r["progress"] for r in first][:3] == [0.0, 0.5, 1.0]
    final = first[-1]
    assert final["steps"] == [0, 10, 20] and final["progress"] == 1.0
    assert all(k not in r for r in first[:-1] for k in ("history", "coefficients", "finite"))
    assert final["finite"] is True and final["coefficients"] == {}
    assert final["history"]["step"] == [20]
    assert final["test_acc"][-1] == final["history"]["test_acc"][-1]
    # the logged training loss is the mean since the previous log: two equal halves
    assert final["train_loss"][0] is None and final["train_loss"][1] > 0
    assert sum(final["train_loss"][1:]) / 2 == pytest.approx(
        final["history"]["train_loss"][-1], rel=1e-4)
    assert set(final["alignment"]) == set(final["gradient"])
    assert len(final["alignment"]) == 5  # 4 convs and the classifier
    assert all(len(v) == 3 for v in final["alignment"].values())
    start = V.mean_angle(final["alignment"], 0)
    assert 80 < start < 100  # a random B is unrelated to W
    assert final["route"] == "local"
    assert runs[1][-1]["test_acc"] == final["test_acc"]
    assert runs[1][-1]["alignment"] == final["alignment"]
    # a yielded snapshot is not changed by later logging
    assert first[0]["steps"] == [0] and len(first[0]["alignment"]["fc"]) == 1


def test_iter_rule_logs_a_last_partial_interval():
    s = SMALL.replace(train={**SMALL.train, "steps": 20}, log_every=7, angle_batch=0)
    *_, run = L.iter_rule("backprop", s)
    assert run["steps"] == [0, 7, 14, 20]
    assert run["gradient"] == {}  # no δ angles without an angle batch
    assert all(a == pytest.approx(0, abs=1e-3) for v in run["alignment"].values() for a in v)


def test_train_rule_is_the_last_yield_of_iter_rule_and_is_cached():
    s = SMALL.replace(train={**SMALL.train, "steps": 20}, log_every=10, seed=1)
    assert not L._train_rule.is_cached("symmetric_alignment", s, CPU)
    *_, last = L.iter_rule("symmetric_alignment", s)
    run = L.train_rule("symmetric_alignment", s)
    assert _without_timing(run) == _without_timing(last)
    assert run["coefficients"] == {"alpha": 0.05, "beta": 0.1}
    assert L._train_rule.is_cached("symmetric_alignment", s, CPU)
    assert L.train_rule("symmetric_alignment", s) is run
    assert L.train_rule("symmetric_alignment", s, device="cpu") is run
    # equal settings made apart are the same key; another seed is not
    same = L.settings("quick", train={**s.train}, log_every=10, eval_samples=200,
                      angle_batch=32, seed=1)
    assert L.train_rule("symmetric_alignment", same) is run
    assert not L._train_rule.is_cached("symmetric_alignment", s.replace(seed=2), CPU)


def test_compare_returns_finished_runs_from_the_cache_without_training(monkeypatch):
    s = SMALL.replace(train={**SMALL.train, "steps": 15})
    names = ["backprop", "feedback_alignment"]
    studies.clear_cache()  # whatever other tests trained, this compare starts from nothing
    assert not any(L._train_rule.is_cached(r, s, CPU) for r in names)
    first = list(L.compare(names, s))
    progress = [p["progress"] for p in first]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert [len(p["runs"]) for p in first][0] == 1 and len(first[-1]["runs"]) == 2
    assert [r["rule"] for r in first[-1]["runs"]] == names
    assert first[-1]["settings"] is s
    assert set(first[-1]["coefficients"]) == set(names)
    runs = first[-1]["runs"]
    assert all(L._train_rule.is_cached(r, s, CPU) for r in names)

    def no_training(*args, **kwargs):
        raise AssertionError("compare trained again")

    monkeypatch.setattr(L, "iter_rule", no_training)
    again = list(L.compare(names, s))
    assert len(again) == 1 and again[0]["progress"] == 1.0
    assert all(a is b for a, b in zip(again[0]["runs"], runs))
    assert again[0]["runs"][0] is L.train_rule("backprop", s)
    dup = list(L.compare(["backprop", "backprop"], s))  # a rule is trained once
    assert len(dup) == 1 and len(dup[0]["runs"]) == 1


def test_compare_refuses_bad_rules():
    with pytest.raises(ValueError, match="valid rules"):
        next(L.compare(["feedback_alignmnt"], L.QUICK))
    with pytest.raises(ValueError, match="at least one learning rule"):
        next(L.compare([], L.QUICK))
    with pytest.raises(ValueError, match="valid rules"):
        next(L.iter_rule("feedback_alignmnt", L.QUICK))


def test_full_mode_settings_train_resnet20_on_full_cifar10(full_cifar_dir, monkeypatch):
    """Notebook 05's full mode (resnet20 on all of CIFAR-10) runs end to end; only the
    number of steps and the evaluation sizes are cut for a CPU."""
    monkeypatch.setenv("NBKIT_DATA", str(full_cifar_dir))
    s = L.settings("full", train={"steps": 4, "batch_size": 32}, log_every=2,
                   eval_samples=200, angle_batch=32)
    assert s.model == "resnet20" and s.data == "cifar10" and s.train["augment"]
    *_, result = L.compare(["feedback_alignment"], s)
    (run,) = result["runs"]
    assert run["steps"] == [0, 2, 4]
    # resnet20: a stem conv, 18 convs in the blocks, and the classifier (shortcuts are
    # parameter-free in the CIFAR ResNets), each with a weight and a δ angle per log.
    assert len(run["alignment"]) >= 20 and set(run["gradient"]) == set(run["alignment"])
    assert all(len(v) == 3 and all(math.isfinite(a) for a in v)
               for v in run["alignment"].values())
    assert all(math.isfinite(x) for x in run["train_loss"][1:])


# ------------------------------------------------------------------- full-scale results

def _record(variant: str, **extra) -> dict:
    return {"experiment": "learning_rules", "variant": variant, "summary": {},
            "runs": [{"config": {"rule": "backprop"}, "result": {"test_acc": 0.5}}], **extra}


def test_collected_prefers_full_and_names_a_bad_file(tmp_path):
    assert L.collected(tmp_path) is None
    assert L.collected(tmp_path / "absent") is None
    (tmp_path / "learning_rules.short.json").write_text(json.dumps(_record("short")))
    found = L.collected(tmp_path)
    assert found.ok and found.variant == "short" and found.name == "learning_rules.short.json"
    assert L.results_by_rule(found.doc) == {"backprop": [{"test_acc": 0.5}]}
    # a full file that cannot be read is returned with its error, not skipped
    (tmp_path / "learning_rules.json").write_text("{ not json")
    bad = L.collected(tmp_path)
    assert not bad.ok and bad.doc is None and bad.name == "learning_rules.json"
    assert "learning_rules.json could not be read" in bad.error
    assert "collect learning_rules" in bad.error
    (tmp_path / "learning_rules.json").write_text(json.dumps({"experiment": "learning_rules"}))
    assert "holds no collected summary" in L.collected(tmp_path).error
    other = _record("full", experiment="accuracy_vs_compression")
    (tmp_path / "learning_rules.json").write_text(json.dumps(other))
    assert "holds results of 'accuracy_vs_compression'" in L.collected(tmp_path).error
    (tmp_path / "learning_rules.json").write_text(json.dumps(_record("full")))
    found = L.collected(tmp_path)
    assert found.ok and found.variant == "full"  # full results first


def test_final_table_of_a_small_collected_result():
    def result(acc, angle):
        layers = {"a": [90.0, angle], "b": [90.0, angle + 2]}
        return {"test_acc": acc, "weight_angles": {"layers": layers},
                "delta_angles": {"layers": layers}, "norm_ratios": {"layers": {"a": [1.0]}}}

    merged = {"runs": [{"config": {"rule": "kolen_pollack"}, "result": result(0.8, 4.0)},
                       {"config": {"rule": "kolen_pollack"}, "result": result(0.6, 50.0)},
                       {"config": {"rule": "feedback_alignment"}, "result": result(0.4, 80.0)}]}
    final = L.final_by_rule(merged)
    assert list(final) == rules.ordered(["kolen_pollack", "feedback_alignment"])
    kp = final["kolen_pollack"]
    assert kp["test_acc"] == pytest.approx(0.7)  # mean over seeds
    assert kp["weight_angle"] == 5.0 and kp["norm_ratio"] == 1.0  # first seed, final step
    table = L.final_table(merged).splitlines()
    assert len(table) == 3
    kp_row = next(r for r in table if "kolen_pollack" in r).split()
    assert kp_row[:3] == ["kolen_pollack", "estimation", "70.0%"]
    assert "local" in next(r for r in table if "feedback_alignment" in r)
    assert math.isnan(L.mean_over_layers({"a": [math.nan], "b": []}))


def test_the_shipped_gpu_run_of_the_learning_rules():
    """data/results/learning_rules.short.json: every rule nbkit had on 2026-11-25 trained
    resnet20 on CIFAR-10 (before direct feedback alignment, the reference-exact conv
    primitives and KP at the task's decay); the table and both angle series are there,
    and the run shows what the papers describe: Kolen-Pollack (then sharing W's decay)
    aligns and matches backprop, feedback alignment stays near 90° and learns far less,
    and every rule beats chance."""
    found = L.collected()
    assert found is not None and found.ok, found and found.error
    assert found.variant in ("short", "full")
    doc = found.doc
    assert doc["provenance"]["runs_missing"] == 0
    assert doc["provenance"]["devices"] and "cpu" not in doc["provenance"]["devices"][0]
    final = L.final_by_rule(doc)
    assert set(final) == {r for r in nbkit.rules.names() if not nbkit.rules.get(r).direct}
    assert all(f["test_acc"] > 0.3 for f in final.values())  # chance is 0.1
    bp, fa, kp = final["backprop"], final["feedback_alignment"], final["kolen_pollack"]
    assert bp["weight_angle"] == 0.0 and bp["delta_angle"] == 0.0
    assert fa["weight_angle"] > 75 and fa["test_acc"] < bp["test_acc"] - 0.2
    assert kp["weight_angle"] < 15 and kp["delta_angle"] < 15
    assert abs(kp["test_acc"] - bp["test_acc"]) < 0.05
    table = L.final_table(doc).splitlines()
    assert len(table) == 1 + len(final) and "kolen_pollack  estimation" in "\n".join(table)


# ------------------------------------------------------------------- notebook 06

SMALL_GRID = SMALL_TWO_ROUTES


@pytest.fixture(scope="module")
def grid():
    return TR.two_routes_grid(SMALL_GRID, progress=False)


def test_two_routes_grid_is_complete_and_cached(grid):
    assert grid["depths"] == [2, 4] and grid["sigmas"] == [0.0, 1.0]
    assert grid["rules"] == list(SMALL_GRID.rules)
    assert grid["routes"] == {"backprop": "reference", "information_alignment": "local",
                              "symmetric_alignment": "estimation"}
    for r in SMALL_GRID.rules:
        assert all(math.isfinite(a) for row in grid["test_acc"][r] for a in row)
        assert all(math.isfinite(a) for row in grid["alignment"][r] for a in row)
    assert grid["test_acc"]["backprop"][0][0] > 0.25  # well above chance
    assert "80 SGD steps" in grid["note"] and "8×8 px" in grid["note"]
    assert grid["settings"]["depths"] == (2, 4)
    assert TR.two_routes_grid(SMALL_GRID, progress=False) is grid
    assert TR.two_routes_grid(SMALL_GRID, progress=True) is grid  # progress is not a key
    # every point is one cached learning_rules run
    point = TR.point_settings(SMALL_GRID, 4, 1.0)
    assert point.model_kwargs == {"depth": 4, "width": 64, "batchnorm": True}
    assert point.sigma == 1.0 and point.log_every is None and point.angle_batch == 0
    assert L._train_rule.is_cached("information_alignment", point, CPU)
    run = L.train_rule("information_alignment", point)
    assert grid["test_acc"]["information_alignment"][1][1] == run["test_acc"][-1]


def test_two_routes_refuses_bad_settings():
    with pytest.raises(ValueError, match="no 'depth'"):
        TR.settings("quick", depth=3)
    with pytest.raises(ValueError, match="mode must be"):
        TR.settings("medium")
    with pytest.raises(ValueError, match="valid rules"):
        TR.two_routes_grid(TR.settings("quick", rules=("backprop", "nope")))


def test_weight_estimation_aligns_b_and_local_ia_does_not(grid):
    sa, ia = grid["alignment"]["symmetric_alignment"], grid["alignment"]["information_alignment"]
    assert all(row[0] < 15 for row in sa)
    assert all(s[0] < i[0] - 20 for s, i in zip(sa, ia))
    assert all(row[0] == pytest.approx(0, abs=1e-3) for row in grid["alignment"]["backprop"])


def test_noise_lowers_accuracy_and_raises_the_sa_angle(grid):
    bp = grid["test_acc"]["backprop"]
    assert all(row[1] < row[0] for row in bp)  # noise hurts, at every depth
    sa = grid["alignment"]["symmetric_alignment"]
    assert all(row[1] > row[0] for row in sa)  # noise knocks B off Wᵀ


def test_a_run_that_diverges_is_a_result_not_an_error(tmp_path):
    """At a learning rate far too large the loss turns NaN: the study stops training there
    and reports the run as diverged (finite False, the step), and the runner stores it as
    a run with no accuracy, which the two-routes summary marks as not finite."""
    from nbkit.experiments import runner, store, summary
    from nbkit.experiments.spec import Experiment

    s = SMALL.replace(train={**SMALL.train, "lr": 1e6, "steps": 30}, log_every=10)
    run = L.train_rule("feedback_alignment", s)
    assert run["finite"] is False and 1 <= run["diverged_at"] <= 30
    assert run["history"] is not None
    exp = Experiment(name="diverging", kind="train_rule", label=("rule",),
                     variants={"test": {"base": s.config(),
                                        "axes": {"rule": ["feedback_alignment"]}}})
    runner.sweep(exp, "test", tmp_path, device="cpu", progress=False)
    (record,), _ = store.scan(tmp_path)
    assert record["result"]["test_acc"] is None and record["result"]["diverged_at"]
    (row,) = summary.two_routes([record])["rows"]
    assert row["finite"] is False and row["top1"] is None


def test_paper_coefficients_align_b_slowly_in_notebook_05s_run():
    """Notebook 05's "things to try": with [TR]'s α on the task's SGD, symmetric
    alignment's mean weight angle is still above 60° after the notebook's 150 steps,
    where the quick preset brings it under 15°."""
    from nbkit.viz.rules import mean_angle

    paper = L.train_rule("symmetric_alignment", L.QUICK.replace(preset="paper"))
    quick = L.train_rule("symmetric_alignment", L.QUICK)
    assert mean_angle(paper["alignment"]) > 60
    assert mean_angle(quick["alignment"]) < 15
