"""Figure builders of the pruning notebooks: data in, traces, titles and axes out."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbkit.viz import pruning as V
from nbkit.viz.style import PUBLISHED_DASH, color_for

GRID = [0.0, 0.5, 1.0, 1.5, 2.0]
LAYERS = ["layers.0.conv.weight", "layers.1.conv.weight", "fc.weight"]
SIZES = [100, 1000, 50]
# density[point][layer]: the 1000-weight layer empties at log10 rho = 2
DENSITY = [[1.0, 1.0, 1.0], [0.8, 0.2, 0.9], [0.5, 0.05, 0.7], [0.2, 0.003, 0.5],
           [0.1, 0.0, 0.4]]


def _collapse(**kw):
    args = dict(method="magnitude", current=2.0, model="toy")
    args.update(kw)
    return V.layer_collapse_figure(GRID, LAYERS, SIZES, DENSITY, **args)


def _by_name(fig, name):
    return [t for t in fig.data if t.name == name]


def test_density_floor_is_a_decade_below_the_smallest_possible_density():
    assert V.density_floor([100, 1000, 50]) == pytest.approx(1e-4)  # 1/1000 is a power of 10
    assert V.density_floor([2_359_296]) == pytest.approx(1e-7)
    assert V.density_floor([10], [[0.5, 3e-9]]) == pytest.approx(1e-9)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=20))
def test_density_floor_lies_below_every_nonzero_density(sizes):
    floor = V.density_floor(sizes)
    assert floor < 1.0 / max(sizes)
    assert floor >= 1.0 / max(sizes) / 100
    assert math.log10(floor) == pytest.approx(round(math.log10(floor)))


def test_layer_labels_are_short_and_numbered():
    assert V.layer_labels(LAYERS, SIZES) == ["1 conv (100)", "2 conv (1k)", "3 fc (50)"]
    assert V.layer_labels(["stem.conv.weight", "layers.3.shortcut.0.weight"]) == [
        "1 conv", "2 shortcut"]


def test_layer_collapse_figure_draws_one_line_per_layer_and_the_slider_position():
    fig = _collapse()
    lines = [t for t in fig.data if t.type == "scatter" and t.xaxis == "x"]
    assert len(lines) == len(LAYERS)
    assert "Magnitude" in fig.layout.title.text and "layer 2 empty" in fig.layout.title.text
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert "compression log10" in fig.layout.xaxis.title.text
    # a density of exactly 0 sits on the floor tick, which reads "0"
    floor = V.density_floor(SIZES)
    assert lines[1].y[-1] == pytest.approx(floor)
    assert fig.layout.yaxis.ticktext[0] == "0" and fig.layout.yaxis.tickvals[0] == floor
    assert lines[1].customdata[-1][0] == 0.0  # hover shows the true density
    # the slider position is a vertical line at log10 rho = 2
    assert [s.x0 for s in fig.layout.shapes if s.xref == "x"] == [2.0]


def test_layer_collapse_bars_show_the_chosen_compression_and_mark_empty_layers():
    fig = _collapse(current=1.5)
    bars = [t for t in fig.data if t.type == "bar"][0]
    assert list(bars.customdata[:, 0]) == DENSITY[3]
    assert list(bars.text) == ["", "", ""]
    assert "no layer collapse" in fig.layout.title.text
    bars = [t for t in _collapse(current=2.0).data if t.type == "bar"][0]
    assert list(bars.text) == ["", "empty", ""]


def test_published_and_reference_curves_are_dashed_and_dotted():
    pub = {"log10_rho": GRID, "density": DENSITY, "label": "published: toy"}
    ref = {"log10_rho": GRID[:3], "density": DENSITY[:3], "label": "full run"}
    fig = _collapse(published=pub, reference=ref)
    published = _by_name(fig, "published: toy")
    assert {t.line.dash for t in published} == {PUBLISHED_DASH}
    assert len(published) == len(LAYERS) + 1  # curves plus the ticks on the bars
    assert sum(t.showlegend is not False for t in published if t.xaxis == "x") == 1
    assert {t.line.dash for t in _by_name(fig, "full run")} == {"dot"}


def test_layer_collapse_figure_rejects_a_compression_off_the_grid():
    with pytest.raises(ValueError, match="not in the sweep"):
        _collapse(current=2.25)


def test_critical_compression_chart_against_rho_max():
    crit = {"magnitude": 1.5, "synflow": 2.0, "snip": None}
    fig = V.critical_compression_figure(crit, 2.1, model="toy", connected={"synflow": 2.0},
                                        published={"magnitude": 2.75, "synflow": 6.0})
    bar = [t for t in fig.data if t.type == "bar"][0]
    assert list(bar.x[:2]) == [1.5, 2.0] and np.isnan(bar.x[2])
    assert list(bar.marker.color) == [color_for(m) for m in crit]
    assert list(fig.layout.yaxis.ticktext) == ["Magnitude", "SynFlow", "SNIP"]
    rho_max = [s for s in fig.layout.shapes if s.line.color == V.RED]
    assert [s.x0 for s in rho_max] == [2.1]
    assert "ρ<sub>max</sub>" in fig.layout.annotations[0].text
    pub = _by_name(fig, "published")[0]
    assert pub.line.dash == PUBLISHED_DASH and 6.0 in pub.x


def test_effective_density_is_drawn_relative_to_nominal_with_disconnections_marked():
    eff = {"magnitude": [1.0, 10 ** -0.5, 0.05, 0.0, 0.0], "synflow": [10 ** -x for x in GRID]}
    dis = {"magnitude": [False, False, False, True, True], "synflow": [False] * 5}
    fig = V.effective_density_figure(GRID, eff, disconnected=dis, model="toy", current=1.0)
    mag = _by_name(fig, "Magnitude")[0]
    np.testing.assert_allclose(mag.y, [1.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(_by_name(fig, "SynFlow")[0].y, np.ones(5))
    assert list(_by_name(fig, "Magnitude disconnected")[0].x) == [1.5, 2.0]
    assert not _by_name(fig, "SynFlow disconnected")


def test_connectivity_figure_has_both_panels():
    eff = {"random": [1.0, 0.3, 0.1, 0.0, 0.0]}
    fig = V.connectivity_figure(GRID, eff, {"random": 1.5}, 2.0, current=0.5, model="toy")
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]
    assert "Disconnection" in fig.layout.title.text


def test_flow_ratio_figure_is_log_with_a_reference_line_at_one():
    fig = V.flow_ratio_figure({"exponential": [3.0, 0.5, 0.2], "linear": [2.0, 4.0, 8.0]})
    assert fig.layout.yaxis.type == "log"
    assert [s.y0 for s in fig.layout.shapes] == [1.0]
    assert [list(t.y) for t in fig.data] == [[3.0, 0.5, 0.2], [2.0, 4.0, 8.0]]
    assert fig.data[0].line.color == V.SCHEDULE_COLORS["exponential"]


def test_the_ratio_one_label_sits_on_its_line_of_the_log_axis():
    fig = V.flow_ratio_figure({"exponential": [3.0, 0.5, 0.2]})
    label = [a for a in fig.layout.annotations if a.text == "ratio = 1"]
    assert len(label) == 1 and label[0].y == 0.0  # plotly places it at log10(1)


def test_an_infinite_flow_ratio_is_marked_not_dropped():
    fig = V.flow_ratio_figure({"exponential": [3.0, math.inf, 0.2]})
    line, marks = fig.data
    assert list(line.y) == [3.0, None, 0.2]
    assert list(marks.x) == [2] and list(marks.text) == ["∞"] and marks.y[0] > 3.0


def test_status_line_explains_an_empty_layer_in_a_connected_network():
    assert V.layer_status([0.0, 0.5], disconnected=False) == (
        "layer collapse: layer 1 empty · still connected: skip connections route around "
        "the empty layers")
    assert V.layer_status([0.0, 0.5], disconnected=True).endswith("empty · disconnected")
    assert V.layer_status([0.1, 0.5], disconnected=False) == "no layer collapse · connected"


def test_synflow_iterations_dashboard():
    n, L = 4, len(LAYERS)
    ld = [[1.0 - 0.2 * k] * L for k in range(1, n + 1)]
    fig = V.synflow_iterations_figure(
        layers=LAYERS, sizes=SIZES, layer_density=ld, overall=[0.8, 0.6, 0.4, 0.2],
        ratio=[2.0, 1.5, 0.8, 0.5], schedule="exponential", n=n, log10_rho=3.0,
        iterations=[1, 4], max_ratio={"exponential": [9.0, 2.0], "linear": [9.0, 8.0]},
        critical={"exponential": [1.0, 2.0], "linear": [1.0, 1.25]}, rho_max_log10=2.1,
        published_max={"exponential": {1: 15.35, 100: 0.67}}, model="toy")
    assert "4 exponential iterations" in fig.layout.title.text
    axes = {t.xaxis for t in fig.data}
    assert axes == {"x", "x2", "x3", "x4"}
    first = [t for t in fig.data if t.xaxis == "x" and t.name.startswith("1 ")][0]
    assert list(first.x) == [0, 1, 2, 3, 4] and first.y[0] == 1.0  # iteration 0 is dense
    assert fig.layout.yaxis2.type == "log" and fig.layout.xaxis3.type == "log"
    assert "max 2" in fig.layout.annotations[1].text and "exceeds 1" in (
        fig.layout.annotations[1].text)
    pub = [t for t in fig.data if t.name.startswith("published")]
    assert len(pub) == 1 and list(pub[0].y) == [15.35, 0.67]
    assert any(s.y0 == 2.1 and s.yref == "y4" for s in fig.layout.shapes)


def test_a_point_that_was_not_reached_is_a_gap_not_an_empty_layer():
    density = [row[:] for row in DENSITY]
    density[-1] = [float("nan")] * 3
    fig = V.layer_collapse_figure(GRID, LAYERS, SIZES, density, method="synflow", current=2.0)
    assert "not reached" in fig.layout.title.text
    bars = [t for t in fig.data if t.type == "bar"][0]
    assert list(bars.text) == ["", "", ""] and np.isnan(bars.y).all()
    line = [t for t in fig.data if t.xaxis == "x"][0]
    assert np.isnan(line.y[-1]) and line.y[-2] == 0.2
