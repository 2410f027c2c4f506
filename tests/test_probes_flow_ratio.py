"""The synaptic-flow ratio of pruning's iteration history behaves as the paper's Fig. 7.

The network is the paper's VGG-16-BN at an eighth of its width (8 to 64 channels,
230,680 weights) on 16x16 inputs, so that 300 SynFlow iterations run in seconds on a
CPU; at rho = 10^3 it keeps 231 weights, far from its maximal compression (~10^4.2).
"""

import numpy as np
import pytest
import torch

import nbkit
from nbkit import probes
from nbkit.models import VGG, VGG_PLANS, init_weights

RHO = 1e3


def _narrow_vgg16_bn(seed=0):
    nbkit.seed(seed)
    plan = [c if c == "M" else c // 8 for c in VGG_PLANS["vgg16"]]
    model = init_weights(VGG(plan, num_classes=10, in_channels=3, batchnorm=True))
    model.input_shape = (3, 16, 16)
    return model


def _ratios(iterations, schedule):
    model = _narrow_vgg16_bn()
    history = []
    nbkit.pruning.prune(model, "synflow", density=1 / RHO, iterations=iterations,
                        schedule=schedule, history=history)
    assert len(history) == iterations
    return probes.flow_ratio(history), history, model


def test_flow_ratio_of_a_synthetic_history():
    history = [
        {"removed_score": 3.0, "layer_score_totals": {"a": 2.0, "b": 4.0}, "objective": 6.0},
        {"removed_score": 0.5, "layer_score_totals": {"a": 1.0, "b": 1.0}, "objective": 1.0},
    ]
    np.testing.assert_array_equal(probes.flow_ratio(history), [1.5, 0.5])
    np.testing.assert_array_equal(probes.flow_ratio(history, denominator="objective"),
                                  [0.5, 0.5])
    with pytest.raises(ValueError, match="empty"):
        probes.flow_ratio([])
    with pytest.raises(ValueError, match="lacks"):
        probes.flow_ratio([{"removed_score": 1.0}])
    with pytest.raises(ValueError, match="denominator"):
        probes.flow_ratio(history, denominator="max")


def test_history_scores_are_the_synflow_saliency():
    model = _narrow_vgg16_bn()
    S = probes.saliency(model, "synflow", device="cpu")
    history = []
    nbkit.pruning.prune(model, "synflow", density=0.5, history=history)
    expected = probes.layer_totals(model, S)
    got = history[0]["layer_score_totals"]
    assert list(got) == list(expected)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-4)
    # conservation: every layer carries R
    np.testing.assert_allclose(list(got.values()), history[0]["objective"], rtol=1e-4)




@pytest.mark.slow
def test_fig7_only_many_exponential_iterations_keep_the_ratio_below_one(one_thread):
    single, _, model = _ratios(1, "exponential")
    assert single.max() > 1
    assert nbkit.pruning.collapsed(model)

    exponential, history, model = _ratios(100, "exponential")
    assert exponential.max() < 1
    assert not nbkit.pruning.collapsed(model)
    # the pruned network still conserves flow: the weakest layer carries R
    np.testing.assert_allclose(exponential, probes.flow_ratio(history, denominator="objective"),
                               rtol=1e-3)

    linear, _, _ = _ratios(100, "linear")
    assert linear.max() > 1
    assert linear[-1] == linear.max()  # the last steps remove most of what is left
    assert torch.isfinite(torch.tensor(linear)).all()
