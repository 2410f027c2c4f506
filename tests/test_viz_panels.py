"""The multi-panel helper: panels laid out as plain dicts, traces and guides on their own axes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbkit.viz.panels import GUIDE, MARK, Panel, figure


def _three():
    panels = [Panel(i) for i in range(1, 4)]
    for i, p in enumerate(panels):
        p.add(x=[0, 1], y=[i, i + 1], name=f"line {i + 1}")
    panels[1].add(type="bar", x=["a", "b"], y=[1, 2], name="bars")
    return panels


def test_traces_land_on_their_panels_axes():
    fig = figure("t", _three())
    axes = {t.name: (t.type, t.xaxis, t.yaxis) for t in fig.data}
    assert axes == {"line 1": ("scatter", "x", "y"), "line 2": ("scatter", "x2", "y2"),
                    "bars": ("bar", "x2", "y2"), "line 3": ("scatter", "x3", "y3")}
    # each panel's x axis is anchored to its own y axis and the other way round
    assert fig.layout.xaxis3.anchor == "y3" and fig.layout.yaxis3.anchor == "x3"


def test_axis_settings_titles_and_layout_pass_through():
    left, right = Panel(1), Panel(2)
    left.xaxis.update(title="step", type="log")
    right.yaxis.update(range=[0, 5], autorange=False)
    fig = figure("Main", [left, right], titles=["left", "right"], title_size=15,
                 subtitle="settings", height=300, width=800, legend=dict(x=0.5))
    assert fig.layout.xaxis.title.text == "step" and fig.layout.xaxis.type == "log"
    assert fig.layout.yaxis2.range == (0, 5)
    assert fig.layout.title.text == "Main<br><sup>settings</sup>"
    assert (fig.layout.height, fig.layout.width, fig.layout.legend.x) == (300, 800, 0.5)
    left_title, right_title = fig.layout.annotations
    assert (left_title.text, right_title.text) == ("left", "right")
    assert left_title.font.size == 15 and left_title.yanchor == "bottom"
    # a panel title is centred over its panel, at its top
    assert left_title.x == pytest.approx(sum(fig.layout.xaxis.domain) / 2)
    assert right_title.y == pytest.approx(fig.layout.yaxis2.domain[1])


def test_grid_rows_run_top_to_bottom_and_do_not_overlap():
    panels = [Panel(i) for i in range(1, 5)]
    fig = figure("t", panels, cols=2, hspace=0.1, vspace=0.2)
    lay = fig.layout
    assert lay.xaxis.domain == lay.xaxis3.domain and lay.xaxis2.domain == lay.xaxis4.domain
    assert lay.yaxis.domain == lay.yaxis2.domain and lay.yaxis3.domain == lay.yaxis4.domain
    top, bottom = lay.yaxis.domain, lay.yaxis3.domain
    assert top[1] == pytest.approx(1.0) and bottom[0] == pytest.approx(0.0)
    assert top[0] - bottom[1] == pytest.approx(0.2)           # the row gap
    assert top[1] - top[0] == pytest.approx(bottom[1] - bottom[0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 5.0), min_size=1, max_size=5), st.floats(0.0, 0.15))
def test_columns_fill_the_width_in_proportion_to_widths(widths, hspace):
    panels = [Panel(i) for i in range(1, len(widths) + 1)]
    fig = figure("t", panels, widths=widths, hspace=hspace)
    domains = [fig.layout[f"xaxis{'' if i == 1 else i}"].domain for i in range(1, len(widths) + 1)]
    assert domains[0][0] == pytest.approx(0.0) and domains[-1][1] == pytest.approx(1.0)
    for (_, end), (start, _) in zip(domains, domains[1:]):
        assert start - end == pytest.approx(hspace)           # no overlap, the given gap
    spans = [b - a for a, b in domains]
    for span, w in zip(spans, widths):
        assert span / spans[0] == pytest.approx(w / widths[0])


def test_guide_lines_and_labels_land_on_their_panel():
    left, right = Panel(1), Panel(2)
    right.hline(1.0, text="ratio = 1")
    right.vline(2.5, text="here", opacity=0.2, layer="below")
    left.hline(10, line=dict(color="#999", dash="dot", width=1), text="chance", side="right",
               above=False, inset=0, font=dict(size=11))
    fig = figure("t", [left, right])
    h_left, h, v = fig.layout.shapes  # panel by panel
    # a horizontal line spans its panel's width at a data y
    assert (h.xref, h.x0, h.x1, h.yref, h.y0, h.y1) == ("x2 domain", 0, 1, "y2", 1.0, 1.0)
    assert h.line.color == GUIDE["color"] and h.line.dash == GUIDE["dash"]
    # a vertical line spans its panel's height at a data x; shape settings pass through
    assert (v.yref, v.y0, v.y1, v.xref, v.x0) == ("y2 domain", 0, 1, "x2", 2.5)
    assert v.line.dash == MARK["dash"] and v.opacity == 0.2 and v.layer == "below"
    assert h_left.xref == "x domain" and h_left.yref == "y"
    labels = {a.text: a for a in fig.layout.annotations}
    ratio, here, chance = labels["ratio = 1"], labels["here"], labels["chance"]
    assert (ratio.xref, ratio.yref, ratio.y, ratio.x) == ("x2 domain", "y2", 1.0, 0.01)
    assert ratio.xanchor == "left" and ratio.yanchor == "bottom"
    assert ratio.font.color == GUIDE["color"]                 # in the line's colour
    assert (here.xref, here.x, here.yref, here.y) == ("x2", 2.5, "y2 domain", 1)
    assert (chance.x, chance.xanchor, chance.yanchor) == (1, "right", "top")
    assert chance.font.size == 11


def test_a_guide_line_can_have_a_legend_entry_and_a_panel_a_note():
    p = Panel(1)
    p.hline(5.0, line=dict(color="#B00020", width=2), name="input flow", showlegend=True)
    p.note("2 units not shown", 0.99, 0.01, xanchor="right")
    fig = figure("t", [p])
    (line,) = fig.layout.shapes
    assert line.name == "input flow" and line.showlegend is True
    (note,) = fig.layout.annotations
    assert (note.xref, note.yref, note.x, note.y) == ("x domain", "y domain", 0.99, 0.01)


def test_match_x_ties_every_x_axis_to_the_first():
    fig = figure("t", [Panel(i) for i in range(1, 4)], match_x=True)
    assert [fig.layout.xaxis2.matches, fig.layout.xaxis3.matches] == ["x", "x"]
    assert fig.layout.xaxis.matches is None
    assert figure("t", [Panel(1), Panel(2)]).layout.xaxis2.matches is None
