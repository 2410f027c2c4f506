"""Figures of several panels, built from plain dicts.

A :class:`Panel` collects one subplot: its traces (of any type), its x and y axis
settings, guide lines and notes, as plain dicts. :func:`figure` lays the panels out row by
row and makes the figure in one call, so plotly validates it once. That is several times
faster than ``make_subplots`` and ``add_trace(row=, col=)``: fast enough to rebuild a
figure on every slider move.

>>> left, right = Panel(1), Panel(2)
>>> left.add(x=[0, 1, 2], y=[2.0, 1.2, 0.9], name="loss")
>>> left.xaxis.update(title="step")
>>> right.add(type="bar", x=["a", "b"], y=[3, 5], name="count")
>>> right.hline(4, text="target")
>>> fig = figure("Two panels", [left, right], titles=["loss", "counts"], widths=[0.6, 0.4])
>>> [t.xaxis for t in fig.data], fig.layout.xaxis2.domain
(['x', 'x2'], (0.64, 1.0))
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from .style import TEMPLATE, readable_log_ticks

__all__ = ["GUIDE", "MARK", "Panel", "figure"]

GUIDE = dict(color="#444444", width=1.5, dash="dash")  # a reference level (y = 1, chance)
MARK = dict(color="#222222", width=1.5, dash="dot")    # a chosen x (the slider's position)


class Panel:
    """One subplot as plain dicts: traces, x/y axis settings, shapes and annotations.

    ``index`` numbers the panel's axes as plotly does: 1 draws on x/y, 2 on x2/y2, ...
    Give the panels of a figure the indices 1, 2, 3, ... in the order they are laid out.
    """

    def __init__(self, index: int = 1):
        n = "" if index == 1 else str(index)
        self.x, self.y = f"x{n}", f"y{n}"
        self.traces, self.shapes, self.annotations = [], [], []
        self.xaxis, self.yaxis = {}, {}

    def add(self, type: str = "scatter", **trace):
        """A trace on this panel: a scatter unless ``type`` says otherwise (``"bar"``, ...)."""
        self.traces.append({"type": type, **trace, "xaxis": self.x, "yaxis": self.y})

    def hline(self, y, line=GUIDE, text: str = "", *, side: str = "left", above: bool = True,
              inset: float = 0.01, font=None, **shape):
        """A horizontal line across the panel at ``y``. ``text`` labels it at its ``side``
        end (``inset`` of the panel's width in from the edge), just above or below it, in
        the line's colour unless ``font`` says otherwise. Further shape settings pass
        through: ``opacity``, ``layer="below"``, ``name`` and ``showlegend`` (a legend
        entry for the line)."""
        self.shapes.append(dict(type="line", xref=f"{self.x} domain", x0=0, x1=1, yref=self.y,
                                y0=y, y1=y, line=line, **shape))
        if text:
            self.annotations.append(dict(
                xref=f"{self.x} domain", x=inset if side == "left" else 1 - inset, yref=self.y,
                y=y, text=text, showarrow=False, xanchor=side,
                yanchor="bottom" if above else "top",
                font=font or dict(color=line["color"], size=12)))

    def vline(self, x, line=MARK, text: str = "", *, font=None, **shape):
        """A vertical line up the panel at ``x``, labelled ``text`` at its top right (in the
        line's colour unless ``font`` says otherwise). Further shape settings pass through
        as for :meth:`hline`."""
        self.shapes.append(dict(type="line", xref=self.x, x0=x, x1=x, yref=f"{self.y} domain",
                                y0=0, y1=1, line=line, **shape))
        if text:
            self.annotations.append(dict(
                xref=self.x, x=x, yref=f"{self.y} domain", y=1, text=text, showarrow=False,
                xanchor="left", yanchor="top", font=font or dict(color=line["color"], size=12)))

    def note(self, text: str, x: float, y: float, **annotation):
        """Text at (``x``, ``y``) in the panel's own frame: 0 to 1 across and up the panel."""
        self.annotations.append(dict(text=text, xref=f"{self.x} domain", x=x,
                                     yref=f"{self.y} domain", y=y, showarrow=False, **annotation))


def figure(title: str, panels, *, cols: int | None = None, widths=None, titles=None,
           subtitle: str = "", title_size: int = 14, hspace: float = 0.1, vspace: float = 0.16,
           match_x: bool = False, height: int = 450, width=None, **layout) -> go.Figure:
    """A figure in nbkit's style of ``panels``, laid out row by row, ``cols`` to a row
    (default: all in one row).

    Args:
        title: the figure's title; ``subtitle`` is a smaller line under it (give the
            figure a larger top margin, ``margin=dict(t=110)``, to make room for it).
        widths: relative column widths (default: equal). Rows are equally high.
        titles: one title per panel, centred above it, ``title_size`` px.
        hspace, vspace: the gaps between columns and between rows, as fractions of the
            plotting area.
        match_x: every panel's x axis follows the first one's (they zoom together).
        **layout: further layout settings (``legend``, ``margin``, ...).
    """
    cols = cols or len(panels)
    rows = -(-len(panels) // cols)
    widths = widths or [1.0] * cols
    usable = 1.0 - hspace * (cols - 1)
    columns, start = [], 0.0
    for w in widths:  # min(): rounding must not take the last column past 1
        columns.append([start, min(1.0, start + usable * w / sum(widths))])
        start = columns[-1][1] + hspace
    h = (1.0 - vspace * (rows - 1)) / rows
    axes, traces, shapes, notes = {}, [], [], []
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        bottom = (rows - 1 - r) * (h + vspace)  # the last row starts at exactly 0
        top = min(1.0, bottom + h)
        xaxis = dict(domain=columns[c], anchor=p.y, **p.xaxis)
        if match_x and i > 0:
            xaxis["matches"] = panels[0].x
        axes["xaxis" + p.x[1:]] = xaxis
        axes["yaxis" + p.y[1:]] = dict(domain=[bottom, top], anchor=p.x, **p.yaxis)
        if titles:
            notes.append(dict(text=titles[i], x=sum(columns[c]) / 2, y=top, xref="paper",
                              yref="paper", xanchor="center", yanchor="bottom",
                              showarrow=False, font=dict(size=title_size)))
    for p in panels:  # the panels' own notes after every panel title
        traces += p.traces
        shapes += p.shapes
        notes += [_on_axes(a, p) for a in p.annotations]
    text = f"{title}<br><sup>{subtitle}</sup>" if subtitle else title
    return readable_log_ticks(go.Figure(data=traces, layout=dict(
        template=TEMPLATE, title=dict(text=text), height=height, width=width, shapes=shapes,
        annotations=notes, **axes, **layout)))


def _on_axes(note: dict, p: Panel) -> dict:
    """A panel's note in plotly's units. Shapes take data values on a log axis, but
    annotations take their log10, so a label given at a data value (an :meth:`Panel.hline`
    or :meth:`Panel.vline` text) would sit a decade away from its line."""
    note = dict(note)
    for key, ref, axis in (("x", p.x, p.xaxis), ("y", p.y, p.yaxis)):
        if note.get(f"{key}ref") == ref and axis.get("type") == "log":
            note[key] = math.log10(note[key])
    return note

