"""One look for every figure: a template, fixed colours per pruner and per rule, and
a figure factory that always sets a title and labelled axes."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from ..pruning import scores as _scores
from ..rules import registry as _rules

PRUNER_COLORS = {
    "random": "#7F7F7F",
    "magnitude": "#D62728",
    "snip": "#1F77B4",
    "grasp": "#2CA02C",
    "grasp_paper": "#8C6D1F",  # the paper's own GraSP (T = 1): olive brown, beside GraSP
    "synflow": "#FF7F0E",
}

RULE_COLORS = {
    "backprop": "#000000",
    "feedback_alignment": "#D62728",
    "direct_feedback_alignment": "#E377C2",
    "sign_symmetry": "#9467BD",
    "weight_mirror": "#2CA02C",
    "kolen_pollack": "#FF7F0E",
    "information_alignment": "#17BECF",
    "activation_alignment": "#8C564B",
    "symmetric_alignment": "#1F77B4",
}

# Display names of the objectives R whose synaptic saliency (∂R/∂θ ⊙ θ) the
# conservation-law figures show.
OBJECTIVE_LABELS = {"synflow": "SynFlow R_SF", "loss": "loss (cross-entropy)",
                    "magnitude": "magnitude ½‖θ‖²"}

PUBLISHED_DASH = "dash"      # published numbers are drawn dashed, live ones solid
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=14)

TEMPLATE = go.layout.Template(layout=go.Layout(
    font=FONT, title=dict(x=0.02, xanchor="left", font=dict(size=18)),
    plot_bgcolor="white", paper_bgcolor="white", hovermode="closest",
    xaxis=dict(showgrid=True, gridcolor="#E5E5E5", zeroline=False, linecolor="#444",
               ticks="outside", mirror=True),
    yaxis=dict(showgrid=True, gridcolor="#E5E5E5", zeroline=False, linecolor="#444",
               ticks="outside", mirror=True),
    legend=dict(bgcolor="rgba(255,255,255,0.85)", bordercolor="#CCC", borderwidth=1),
    margin=dict(l=70, r=30, t=70, b=60), colorway=list(PRUNER_COLORS.values())))


def color_for(name: str) -> str:
    """The fixed colour of a pruner or learning rule (grey for anything else)."""
    return PRUNER_COLORS.get(name) or RULE_COLORS.get(name) or "#555555"


def label_for(name: str) -> str:
    """The display name of a pruner or learning rule, as its registry entry gives it
    (the name itself for anything else)."""
    if name in _scores.SCORERS:
        return _scores.label(name)
    if name in _rules.RULES:
        return _rules.label(name)
    return name


# Display names by name, as the registries give them when viz is imported.
PRUNER_LABELS = {m: _scores.label(m) for m in _scores.SCORERS}
RULE_LABELS = {r: _rules.label(r) for r in _rules.RULES}


def layer_colors(n: int, scale: str = "Viridis") -> list[str]:
    """``n`` colours running along a sequential scale, from the input layer to the output."""
    if n <= 1:
        return sample_colorscale(scale, [0.0])
    return sample_colorscale(scale, [i / (n - 1) for i in range(n)])


def readable_log_ticks(fig: go.Figure) -> go.Figure:
    """Label a log axis that spans less than three decades at 1, 2 and 5 × 10^k (or every
    digit when that gives fewer than three labels), and one up to six decades at each
    decade, in the axis's own font. Left to itself, plotly labels such axes with bare
    digits ("2", "5") at 3/4 of the tick font, too small to read on a projector. Axes
    with their own ticks are left alone."""
    values: dict[str, list] = {}
    for trace in fig.data:
        for key in ("x", "y"):
            ref = getattr(trace, f"{key}axis", None) or key
            data = getattr(trace, key, None)
            if data is None or isinstance(data, str):
                continue
            try:
                arr = np.asarray(data, dtype=float).ravel()
            except (TypeError, ValueError):
                continue
            values.setdefault(key + "axis" + ref[1:], []).append(arr[np.isfinite(arr) & (arr > 0)])
    for name, parts in values.items():
        axis = fig.layout[name] if name in fig.layout else None
        if axis is None or axis.type != "log" or axis.dtick is not None \
                or axis.tickvals is not None:
            continue
        data = np.concatenate(parts)
        if not data.size:
            continue
        lo, hi = float(data.min()), float(data.max())
        if hi / lo >= 1e6:  # plotly labels every decade or fewer: full-size already
            continue
        choices = [(1,)] if hi / lo >= 1e3 else [(1, 2, 5), tuple(range(1, 10))]
        for digits in choices:
            ticks = [d * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1,
                                                   math.ceil(math.log10(hi)) + 1)
                     for d in digits if lo / 1.3 <= d * 10.0 ** k <= hi * 1.3]
            if len(ticks) >= 3:
                break
        fig.layout[name].update(tickvals=ticks, ticktext=[f"{t:.6g}" for t in ticks])
    return fig


def new_figure(title: str, xaxis: str, yaxis: str, *, height: int = 450, width=None,
               xlog: bool = False, ylog: bool = False, **layout) -> go.Figure:
    """An empty figure in nbkit's style with a title and labelled (optionally log) axes."""
    fig = go.Figure(layout=dict(template=TEMPLATE, title=title, height=height, width=width,
                                xaxis_title=xaxis, yaxis_title=yaxis, **layout))
    if xlog:
        fig.update_xaxes(type="log")
    if ylog:
        fig.update_yaxes(type="log")
    return fig
