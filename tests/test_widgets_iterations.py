"""The app of notebook 03 (iterative SynFlow), driven without a kernel: move the
iterations slider and the schedule toggle, then check the flow ratio and the critical
compression against Fig. 7 of the SynFlow paper.

A small stand-in keeps this fast: VGG-16-BN at 1/16 width, a grid step of 0.5."""

from __future__ import annotations

import numpy as np
import pytest

from nbkit.widgets import iterations as wi
from nbkit.widgets import sweeps

S = sweeps.Settings("test", synflow_iterations=5, prune_samples=20, step=0.5,
                    critical_step=0.5, cpu_threads=1)
VGG16 = "vgg16_bn/16"


@pytest.fixture(scope="module")
def study():
    return wi.iteration_study(VGG16, S, log10_rho=3.0, iterations=(1, 10, 100))


def test_iterations_slider_brings_the_flow_ratio_below_one(study):
    app = wi.synflow_iterations_app(study, iterations=1, schedule="exponential")
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
        wi.iterations_view(study, 50, "exponential")


def test_a_synflow_run_whose_network_disconnects_midway_is_reported_not_raised():
    import torch

    import nbkit

    nbkit.seed(0)
    net, history = sweeps.build_model("vgg16_bn/8"), []
    stop = sweeps.prune_synflow(net, 1e-3, 2, "exponential", torch.device("cpu"), history)
    # the first step, to 10^-1.5, already leaves no input-output path, so R = 0 at step 2
    assert nbkit.pruning.disconnected(net)
    if stop is None:  # pruning ranked the all-zero scores and finished the run
        assert len(history) == 2
    else:
        assert stop == 2 and len(history) == 1 and history[0]["iteration"] == 1
