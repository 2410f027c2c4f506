"""One function per study: an app and the experiment runner, given the same settings,
compute the same numbers. Each test reads the numbers off a live app, forgets every cached
result, runs the runner on the same settings, and compares."""

from __future__ import annotations

import pytest

from nbkit import studies
from nbkit.experiments import runner, store
from nbkit.experiments.spec import Experiment
from nbkit.studies import collapse, learning_rules, pruned_training
from nbkit.widgets import pruning as pruning_app
from nbkit.widgets import rules as rules_app
from nbkit.widgets import training as training_app


def _run(tmp_path, kind: str, base: dict, axes: dict, include=()) -> list[dict]:
    """Every record of a runner sweep over ``axes`` with ``base`` shared."""
    studies.clear_cache()
    exp = Experiment(name=f"same_as_app_{kind}", kind=kind, label=tuple(axes),
                     variants={"test": {"base": base, "axes": axes,
                                        "include": [dict(i) for i in include]}})
    report = runner.sweep(exp, "test", tmp_path, device="cpu", progress=False)
    assert report.remaining == 0 and not report.failed
    records, bad = store.scan(tmp_path)
    assert not bad
    return records


def test_the_layer_collapse_app_and_the_runner_prune_alike(tmp_path):
    s = collapse.Settings("test", max_iterations=5, prune_samples=20, step=0.5, cpu_threads=1)
    app = pruning_app.layer_collapse_app(s, models=("vgg11_bn/16",), results=[])
    grid = app.result["figure"]["log10_rho"][1:]
    pruners = list(app.controls["pruner"].options)
    app_density = {}
    for _, method in pruners:
        app.controls["pruner"].value = method
        app_density[method] = app.result["figure"]["density"][1:]
    base = {**s.config(), "model": "vgg11_bn", "model_kwargs": {"width_divisor": 16},
            "num_classes": 10}
    records = _run(tmp_path, "prune_at_init", base,
                   {"method": [m for _, m in pruners], "log10_rho": grid})
    assert len(records) == len(pruners) * len(grid)
    for r in records:
        c = r["config"]
        assert r["result"]["layer_density"] == app_density[c["method"]][grid.index(
            c["log10_rho"])], (c["method"], c["log10_rho"])


def test_the_training_app_and_the_runner_train_pruned_nets_alike(tmp_path):
    s = pruned_training.QUICK.replace(
        name="test", model="mlp", model_kwargs={"depth": 2, "width": 32}, max_iterations=3,
        log10_rhos=(2.0,), prune_samples=20, train={**pruned_training.QUICK.train,
                                                    "steps": 8, "batch_size": 64})
    app = training_app.training_app(s, pruners=("magnitude", "synflow"))
    assert app.error is None, app.messages
    app_top1 = {r["method"]: r["top1"] for r in app.result["runs"]}
    assert set(app_top1) == {"dense", "magnitude", "synflow"}
    records = _run(tmp_path, "train_pruned", s.config(),
                   {"method": ["magnitude", "synflow"], "log10_rho": [2.0]},
                   include=[{"method": "dense", "log10_rho": 0.0}])
    runner_top1 = {r["config"]["method"]: 100 * r["result"]["test_acc"] for r in records}
    assert runner_top1 == pytest.approx(app_top1, rel=0, abs=1e-12)


def test_the_feedback_alignment_app_and_the_runner_train_rules_alike(tmp_path):
    # threads=None: the app trains on as many CPU threads as the runner (an execution
    # setting, not part of a run's configuration, but float sums depend on it)
    s = learning_rules.QUICK.replace(name="test", train={**learning_rules.QUICK.train,
                                                         "steps": 20}, log_every=10,
                                     threads=None)
    app = rules_app.feedback_alignment_app(s, rule="feedback_alignment",
                                           compare=("symmetric_alignment",))
    assert app.error is None, app.messages
    app_runs = {r["rule"]: r for r in app.result["runs"]}
    records = _run(tmp_path, "train_rule", s.config(),
                   {"rule": ["feedback_alignment", "symmetric_alignment"]})
    assert len(records) == 2
    for r in records:
        rule, res = r["config"]["rule"], r["result"]
        assert res["test_acc"] == app_runs[rule]["test_acc"][-1]
        assert res["weight_angles"]["steps"] == app_runs[rule]["steps"] == [0, 10, 20]
        assert res["weight_angles"]["layers"] == app_runs[rule]["alignment"]
        assert res["delta_angles"]["layers"] == app_runs[rule]["gradient"]
