"""Figure builders of the conservation laws: arrays in, figures out (no torch, no kernel)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbkit.viz import probes as vp


def _flows(conserved=True, signed=False, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for name, n in (("layers.0", 8), ("layers.2", 6)):
        inc = rng.uniform(0.01, 2.0, n) * (rng.choice([-1, 1], n) if signed else 1)
        outg = inc.copy() if conserved else inc * rng.uniform(0.2, 5.0, n)
        out.append({"layer": name, "incoming": inc, "outgoing": outg})
    return out


def test_fig3_one_trace_per_hidden_layer_on_identity_line():
    fig = vp.neuron_flow_figure(_flows())
    assert fig.layout.title.text.startswith("Neuron-wise conservation")
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "incoming" in fig.layout.xaxis.title.text
    assert "outgoing" in fig.layout.yaxis.title.text
    line, *layers = fig.data
    assert line.name.startswith("y = x") and list(line.x) == list(line.y)
    # legends number the hidden layers; the hover names the module
    assert [t.name for t in layers] == ["hidden layer 1", "hidden layer 2"]
    assert "(layers.0)" in layers[0].hovertemplate
    for t in layers:
        np.testing.assert_allclose(t.x, t.y)              # conserved: on y = x
        assert "incoming" in t.hovertemplate
    # the identity line spans every point
    xs = np.concatenate([t.x for t in layers])
    assert line.x[0] < xs.min() and line.x[1] > xs.max()


def test_fig3_breaking_law_moves_points_off_the_line():
    fig = vp.neuron_flow_figure(_flows(conserved=False))
    for t in fig.data[1:]:
        assert not np.allclose(t.x, t.y)


def test_fig3_signed_values_are_drawn_as_magnitudes_with_open_markers():
    flows = _flows(signed=True)
    flows[0]["incoming"][0] = flows[0]["outgoing"][0] = 0.0   # a dead unit
    fig = vp.neuron_flow_figure(flows)
    assert "|saliency|" in fig.layout.xaxis.title.text
    first = fig.data[1]
    assert len(first.x) == 7                                  # the zero unit is left out
    assert (np.asarray(first.x) > 0).all()
    negative = flows[0]["incoming"][1:] < 0
    symbols = np.array(first.marker.symbol)
    assert (symbols[negative] == "circle-open").all() and (symbols[~negative] == "circle").all()
    # hover keeps the signed values
    np.testing.assert_allclose(np.array(first.customdata)[:, 1].astype(float),
                               flows[0]["incoming"][1:])
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "1 unit with zero flow not shown" in notes and "negative" in notes


def test_fig3_linear_axes_and_bad_input():
    fig = vp.neuron_flow_figure(_flows(signed=True), log=False)
    assert fig.layout.xaxis.type in (None, "linear")
    assert len(fig.data[1].x) == 8 and (np.asarray(fig.data[1].x) < 0).any()
    with pytest.raises(ValueError, match="incoming has 3 units but outgoing has 2"):
        vp.neuron_flow_figure([{"layer": "a", "incoming": np.ones(3), "outgoing": np.ones(2)}])


def test_fig4_slope_minus_one_when_totals_are_equal():
    size = np.array([1728.0, 36864, 73728, 589824, 2359296, 5120])
    points = {"layer": [f"l{i}.weight" for i in range(6)], "size": size,
              "average": 3.0 / size, "slope": -1.0}
    fig = vp.layer_size_figure(points)
    assert "slope -1.00" in fig.layout.title.text
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "number of weights" in fig.layout.xaxis.title.text
    fit, conserved, pts = fig.data
    assert fit.name == "fit: slope -1.000"
    np.testing.assert_allclose(pts.x, size)
    np.testing.assert_allclose(pts.y, 3.0 / size)
    assert [c[0] for c in pts.customdata] == [f"l{i}" for i in range(6)]
    # the conservation line: the common total 3 over size, on top of the fit here
    np.testing.assert_allclose(np.asarray(conserved.y) * np.asarray(conserved.x), 3.0)


def test_fig4_draws_the_slope_minus_one_line_beside_a_fit_that_misses_it():
    size = np.array([100.0, 1000, 10000])
    fig = vp.layer_size_figure({"layer": ["a", "b", "c"], "size": size,
                                "average": size ** -0.5, "slope": -0.5})
    fit, conserved, _ = fig.data
    assert fit.name == "fit: slope -0.500" and "slope −1" in conserved.name
    slope = np.diff(np.log10(conserved.y)) / np.diff(np.log10(conserved.x))
    np.testing.assert_allclose(slope, -1.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(1e-6, 1e3), min_size=3, max_size=8),
       st.lists(st.integers(10, 10**7), min_size=3, max_size=8, unique=True))
def test_fig4_fitted_slope_is_the_least_squares_slope(avgs, sizes):
    n = min(len(avgs), len(sizes))
    size, avg = np.array(sizes[:n], float), np.array(avgs[:n])
    fig = vp.layer_size_figure({"layer": [str(i) for i in range(n)], "size": size,
                                "average": avg, "slope": 0.0})
    expect = np.polyfit(np.log10(size), np.log10(avg), 1)[0]
    assert fig.data[0].name == f"fit: slope {expect:.3f}"
    fit = fig.data[0]
    measured = np.diff(np.log10(fit.y)) / np.diff(np.log10(fit.x))
    np.testing.assert_allclose(measured, expect, rtol=1e-6, atol=1e-9)


def test_fig4_negative_averages_are_plotted_as_magnitudes():
    size = np.array([10.0, 100, 1000])
    fig = vp.layer_size_figure({"layer": ["a", "b", "c"], "size": size,
                                "average": -2.0 / size, "slope": -1.0})
    assert "|average score|" in fig.layout.yaxis.title.text
    np.testing.assert_allclose(fig.data[-1].y, 2.0 / size)
    with pytest.raises(ValueError, match="one size and one average"):
        vp.layer_size_figure({"layer": ["a"], "size": size, "average": size, "slope": 0})


def test_layer_totals_flat_line_at_input_flow_and_cuts():
    totals = {"a.weight": 5.0, "b.weight": 5.0, "c.weight": 4.9, "fc.weight": 5.0}
    fig = vp.layer_totals_figure(totals, input_flow=5.0)
    (layer,) = fig.data
    plain = ["layer 1", "layer 2", "layer 3", "layer 4"]  # numbered; modules in the hover
    assert list(layer.x) == plain and list(layer.y) == list(totals.values())
    assert list(layer.customdata) == ["a", "b", "c", "fc"]
    (line,) = fig.layout.shapes
    assert line.y0 == line.y1 == 5.0 and "input flow" in line.name
    lo, hi = fig.layout.yaxis.range
    assert lo < 4.9 and hi > 5.0 and hi - lo >= 0.04 * 5.0
    # equal totals still get a readable range around them
    flat = vp.layer_totals_figure({"a.weight": 1.0, "b.weight": 1.0}, input_flow=1.0)
    lo, hi = flat.layout.yaxis.range
    assert lo < 1.0 < hi and hi - lo >= 0.04
    # a residual net: cuts differ from layers, drawn as diamonds at their members
    cuts = {"a.weight": 5.0, "b.weight+c.weight": 5.0, "fc.weight": 5.0}
    fig = vp.layer_totals_figure(totals, input_flow=5.0, cut_totals=cuts)
    cut = fig.data[1]
    assert cut.name == "cut total" and list(cut.x) == ["layer 1", "layer 2", "layer 3", "layer 4"]
    assert list(cut.y) == [5.0] * 4
    # when cuts are the layers, no extra trace
    same = vp.layer_totals_figure(totals, cut_totals=dict(totals))
    assert len(same.data) == 1 and not same.layout.shapes


def test_conservation_figure_has_both_panels():
    flows = _flows()
    totals = {"layers.0.weight": 2.0, "layers.2.weight": 2.0, "fc.weight": 2.0}
    fig = vp.conservation_figure(flows, totals, input_flow=2.0, title="both")
    assert fig.layout.title.text == "both"
    assert [a.text for a in fig.layout.annotations][:2] == [
        "neuron-wise: incoming vs outgoing per unit", "network-wise: total per layer"]
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type != "log"
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert len([t for t in fig.data if t.xaxis == "x"]) == 3      # line + 2 layers
    assert fig.layout.shapes[0].y0 == 2.0
