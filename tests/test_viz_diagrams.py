"""The three diagrams draw what nbkit measures: a real network disconnected with no empty
layer, one real unit whose saliency in equals its saliency out, and each rule's B."""

from __future__ import annotations

import numpy as np
import pytest

from nbkit import probes, studies
from nbkit.rules import registry
from nbkit.viz import diagrams


def _segments(fig, color) -> int:
    """How many lines of ``color`` a figure draws (each trace separates them with None)."""
    n = 0
    for t in fig.data:
        if t.mode == "lines" and t.line.color == color:
            n += sum(1 for v in t.x if v is None) or 1
    return n


def test_the_example_is_disconnected_though_every_layer_keeps_weights():
    ex = studies.collapse.disconnected_example()
    assert ex["disconnected"]
    assert all(d > 0 for d in ex["densities"]), ex["densities"]
    assert all(not e.any() for e in ex["effective"])
    fig = diagrams.network_diagram(ex["masks"], ex["effective"])
    assert fig.layout.title.text.startswith("Disconnected, yet no layer is empty")
    kept = sum(int(m.sum()) for m in ex["masks"])
    pruned = sum(int((m == 0).sum()) for m in ex["masks"])
    assert _segments(fig, diagrams.OFF_PATH) == kept  # every kept weight, on no path
    assert _segments(fig, diagrams.ON_PATH) == 0
    assert _segments(fig, diagrams.PRUNED) == pruned
    notes = [a.text for a in fig.layout.annotations]
    assert any("keeps 4 of 16" in t for t in notes) and any("keeps 3 of 12" in t for t in notes)


def test_a_connected_or_emptied_network_says_so():
    full = [np.ones((3, 2)), np.ones((2, 3))]
    fig = diagrams.network_diagram(full, full)
    assert fig.layout.title.text.startswith("Connected")
    assert _segments(fig, diagrams.ON_PATH) == 12
    cut = [np.ones((3, 2)), np.zeros((2, 3))]
    fig = diagrams.network_diagram(cut, [np.zeros((3, 2)), np.zeros((2, 3))])
    assert fig.layout.title.text.startswith("Layer 2 empty")
    with pytest.raises(ValueError, match="inputs"):
        diagrams.network_diagram([np.ones((3, 2)), np.ones((2, 4))],
                                 [np.ones((3, 2)), np.ones((2, 4))])


@pytest.mark.parametrize("objective", ["synflow", "loss"])
def test_one_units_saliency_in_equals_out_as_the_probe_measures(objective):
    unit = studies.conservation.one_unit(objective)
    s_in, s_out = float(unit["incoming"].sum()), float(unit["outgoing"].sum())
    assert s_in == pytest.approx(s_out, rel=1e-9)
    # the same unit's totals as nbkit.probes.neuron_flows measures them
    model = studies.conservation.demo_model("mlp")
    data = studies.conservation.probe_batch() if objective == "loss" else None
    flows = probes.neuron_flows(model, probes.saliency(model, objective, data))
    k = int(unit["unit"].rsplit(" ", 1)[1]) - 1
    assert flows[0]["incoming"][k] == pytest.approx(s_in, rel=1e-9)
    fig = diagrams.neuron_diagram(unit["incoming"], unit["outgoing"], unit=unit["unit"])
    assert "equals" in fig.layout.title.text
    assert any(f"Σ S = {s_in:.6g}" in a.text for a in fig.layout.annotations)
    broken = diagrams.neuron_diagram([1.0, 2.0], [1.0, 1.0])
    assert "differs from" in broken.layout.title.text


def test_feedback_diagram_shows_each_rules_b():
    for rule in registry.ordered():
        fig = diagrams.feedback_diagram(rule)
        text = " ".join(a.text for a in fig.layout.annotations)
        assert registry.RULES[rule].summary in text
    assert "B = Wᵀ" in " ".join(a.text for a in diagrams.feedback_diagram("backprop")
                                 .layout.annotations)
    dfa = " ".join(a.text for a in diagrams.feedback_diagram("direct_feedback_alignment")
                   .layout.annotations)
    assert "δx = D e" in dfa and "δx = B δy" not in dfa
    with pytest.raises(ValueError, match="feedback_alignment"):
        diagrams.feedback_diagram("feedback_aligment")
