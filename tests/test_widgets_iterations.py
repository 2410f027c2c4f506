"""The app of notebook 03 (iterative SynFlow), driven without a kernel: move the
iterations slider and the schedule toggle, then check the flow ratio and the critical
compression against Fig. 7 of the SynFlow paper.

A small stand-in keeps this fast: VGG-16-BN at 1/16 width, a grid step of 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from nbkit.studies import collapse, iterations
from nbkit.widgets import iterations as iterations_app

S = iterations.Settings("test", max_iterations=5, prune_samples=20, step=0.5,
                        critical_step=0.5, cpu_threads=1, model="vgg16_bn/16", log10_rho=3.0,
                        iterations=(1, 10, 100))


@pytest.fixture(scope="module")
def study():
    return iterations.iteration_study(S)


def test_iterations_slider_brings_the_flow_ratio_below_one(study):
    app = iterations_app.synflow_iterations_app(study, iterations=1, schedule="exponential")
    assert app.error is None, app.messages

    def ratio():
        return np.asarray([t for t in app.figure.data if t.xaxis == "x2"][0].y)

    assert ratio().max() > 1                           # single shot: above 1 (Fig. 7)
    assert "1 exponential iteration " in app.figure.layout.title.text
    app.controls["iterations"].value = 100
    assert len(ratio()) == 100 and ratio().max() < 1   # 100 exponential: below 1
    assert "stays below 1" in app.caption.value
    app.controls["schedule"].value = "linear"
    assert ratio().max() > 1                           # 100 linear: still above 1
    assert "linear" in app.figure.layout.title.text
    # densities across iterations: 100 rows after the dense start, ending at the target
    whole = [t for t in app.figure.data if t.name == "whole network"][0]
    assert len(whole.y) == 101 and whole.y[-1] == pytest.approx(1e-3, rel=0.01)


def test_more_exponential_iterations_collapse_no_sooner(study):
    crit = study["critical"]["exponential"]
    assert crit == sorted(crit)
    assert crit[-1] > crit[0]
    assert study["runs"]["exponential"][1]["max_ratio"] > 1
    with pytest.raises(ValueError, match="were not run"):
        iterations_app.iterations_view(study, 50, "exponential")


def test_a_synflow_run_whose_network_disconnects_midway_finishes_disconnected():
    """At 10^-1.5 after one step a 1/8-width VGG-16 has no input-output path left, so R = 0
    and SynFlow's scores are all zero at step 2. Pruning still finishes: it keeps exactly
    the weights asked for, and the network is reported disconnected (not raised)."""
    import torch

    import nbkit

    nbkit.seed(0)
    net, history = collapse.build_model("vgg16_bn/8"), []
    nbkit.pruning.prune(net, "synflow", 1e-3, iterations=2, device=torch.device("cpu"),
                        history=history)
    assert nbkit.pruning.disconnected(net)
    assert len(history) == 2 and history[1]["objective"] == 0.0
    n = sum(p.numel() for p in nbkit.pruning.prunable_parameters(net).values())
    kept = sum(int(m.sum()) for m in nbkit.pruning.masks(net).values())
    assert kept == round(1e-3 * n)


def test_the_study_runs_each_schedule_and_iteration_count_once_and_caches():
    s = iterations.iteration_study(S)
    assert s is iterations.iteration_study(S)
    assert list(s["runs"]) == ["exponential", "linear"] and s["iterations"] == [1, 10, 100]
    assert all(len(run["ratio"]) == n for runs in s["runs"].values()
               for n, run in runs.items())
    with pytest.raises(ValueError, match="log10_rho must be in"):
        iterations.iteration_study(S.replace(log10_rho=9.0))
