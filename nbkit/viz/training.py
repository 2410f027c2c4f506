"""Figures of pruned networks after training (SynFlow paper, Fig. 6).

Pure builders: plain dicts of accuracies in, ``go.Figure`` out. Accuracies are top-1
in percent, compressions are log10 ρ (ρ = 1 / density), as in the paper.

A *curve* is a dict ``{"method": pruner, "log10_rho": [...], "top1": [...]}`` with
optional ``"std"`` (error bars), ``"kind"`` and ``"label"``. The kind sets the line:

- ``"live"``: this run, solid with filled markers;
- ``"shuffled"``: the same pruner with its masks shuffled within each layer, dotted
  with open markers;
- ``"full"``: full-scale nbkit results loaded from disk, solid and thicker;
- ``"published"``: the paper's numbers, dashed (:data:`nbkit.viz.style.PUBLISHED_DASH`).

Colours are the fixed pruner colours of :mod:`nbkit.viz.style`.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .style import PUBLISHED_DASH, color_for, label_for, new_figure

__all__ = ["accuracy_figure", "shuffle_figure", "KINDS"]

KINDS = {
    "live": dict(dash="solid", width=2.5, symbol="circle", suffix=""),
    "shuffled": dict(dash="dot", width=2, symbol="circle-open", suffix=" (layer-wise shuffle)"),
    "full": dict(dash="solid", width=3, symbol="square", suffix=" (nbkit, full scale)"),
    "published": dict(dash=PUBLISHED_DASH, width=2, symbol="diamond-open",
                      suffix=" (published)"),
}


def _check_curve(c: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    for key in ("method", "log10_rho", "top1"):
        if key not in c:
            raise ValueError(f"a curve needs 'method', 'log10_rho' and 'top1'; got {sorted(c)}")
    x = np.asarray(c["log10_rho"], dtype=float)
    y = np.asarray(c["top1"], dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"{c['method']}: {x.size} compressions but {y.size} accuracies")
    std = None if c.get("std") is None else np.asarray(c["std"], dtype=float)
    if std is not None and std.shape != y.shape:
        raise ValueError(f"{c['method']}: std must have one value per accuracy")
    order = np.argsort(x, kind="stable")
    return x[order], y[order], None if std is None else std[order]


def _curve_trace(c: dict) -> go.Scatter:
    kind = c.get("kind", "live")
    if kind not in KINDS:
        raise ValueError(f"unknown curve kind {kind!r}; choose one of {sorted(KINDS)}")
    style = KINDS[kind]
    x, y, std = _check_curve(c)
    method = c["method"]
    name = c.get("label") or f"{label_for(method)}{style['suffix']}"
    hover = (f"<b>{name}</b><br>log10 ρ = %{{customdata[0]:.2f}} "
             "(density %{customdata[1]:.3g})"
             "<br>top-1 %{y:.2f}%" + (" ± %{customdata[2]:.2f}" if std is not None else "")
             + "<extra></extra>")
    custom = np.stack([x, 10.0 ** -x, std if std is not None else np.zeros_like(x)], axis=1)
    return go.Scatter(
        x=10.0 ** x, y=y, mode="lines+markers", name=name, legendgroup=method,
        line=dict(color=color_for(method), dash=style["dash"], width=style["width"]),
        marker=dict(symbol=style["symbol"], size=8 if kind != "published" else 7,
                    color=color_for(method), line=dict(width=1.5, color=color_for(method))),
        # set even when hidden: a live figure updated in place must drop old error bars
        error_y=(dict(type="data", array=std, visible=True, thickness=1, width=3)
                 if std is not None else dict(type="data", array=np.zeros_like(y),
                                              visible=False)),
        opacity=0.85 if kind == "published" else 1.0,
        customdata=custom, hovertemplate=hover)


def _hline(fig, y, name, color, dash, xmax):
    fig.add_trace(go.Scatter(x=[1.0, xmax], y=[y, y], mode="lines", name=name,
                             line=dict(color=color, dash=dash, width=1.5),
                             hovertemplate=f"{name}: %{{y:.2f}}%<extra></extra>"))


def accuracy_figure(curves, *, dense: float | dict | None = None, chance: float | None = None,
                    title: str = "Accuracy after training, pruned at initialization",
                    note: str | None = None, height: int = 430, width=None) -> go.Figure:
    """Top-1 accuracy against compression ratio ρ (log axis), one line per curve (Fig. 6).

    Args:
        curves: curve dicts (see the module docstring), drawn in the given order.
        dense: the unpruned network's accuracy (a dotted black line); a dict
            ``{label: value}`` draws several (e.g. nbkit's and the paper's).
        chance: chance accuracy (a grey line), e.g. 10 for ten classes.
        note: a line of small text under the plot (data, recipe, caveats).
    """
    curves = list(curves)
    xs = [v for c in curves for v in np.asarray(c.get("log10_rho", []), dtype=float).ravel()]
    xmax = 10.0 ** (max(xs) if xs else 3.0)
    fig = new_figure(title, "compression ratio ρ = 1 / density", "top-1 test accuracy (%)",
                     xlog=True, height=height, width=width)
    for c in curves:
        fig.add_trace(_curve_trace(c))
    denses = dense if isinstance(dense, dict) else ({"dense": dense} if dense is not None
                                                    else {})
    dashes = iter(["dot", PUBLISHED_DASH, "dashdot", "longdash"])
    for label, value in denses.items():
        if value is not None and math.isfinite(float(value)):
            _hline(fig, float(value), label, "#111111", next(dashes, "dot"), xmax)
    if chance is not None:
        _hline(fig, float(chance), f"chance ({chance:g}%)", "#9E9E9E", "dot", xmax)
    fig.update_xaxes(dtick=1, exponentformat="power")
    fig.update_yaxes(rangemode="tozero")
    if note:
        # placed in pixels under the axis title, with room for every line of the note
        lines = note.count("<br>") + 1
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=0, yshift=-74,
                           xanchor="left", yanchor="top", showarrow=False, align="left",
                           font=dict(size=12, color="#555"))
        fig.update_layout(margin=dict(b=84 + 16 * lines))
    return fig


def shuffle_figure(original: dict, shuffled: dict, *, log10_rho: float,
                   dense: float | None = None, chance: float | None = None,
                   title: str | None = None, height: int = 430, width=None) -> go.Figure:
    """The layer-wise shuffle sanity check: each pruner's accuracy with its own mask
    (solid bars) and with that mask shuffled within every layer (hatched bars), at one
    compression.

    Args:
        original, shuffled: ``{pruner: top-1 (%)}``.
    """
    methods = [m for m in original if m in shuffled]
    if not methods:
        raise ValueError("original and shuffled share no pruner; give both as "
                         "{pruner: top-1 (%)}")
    rho = f"10<sup>{log10_rho:g}</sup>"
    fig = new_figure(title or f"Layer-wise shuffle at ρ = {rho}: same layer densities, "
                     "random positions", "pruner", "top-1 test accuracy (%)", height=height,
                     width=width, barmode="group", bargap=0.25)
    labels = [label_for(m) for m in methods]
    colors = [color_for(m) for m in methods]
    for name, values, pattern in (("pruner's mask", original, ""),
                                  ("shuffled within each layer", shuffled, "/")):
        fig.add_trace(go.Bar(
            x=labels, y=[float(values[m]) for m in methods], name=name,
            marker=dict(color=colors, pattern=dict(shape=pattern, fillmode="overlay",
                                                   fgcolor="white", size=6),
                        line=dict(color=colors, width=1.5)),
            hovertemplate=f"<b>%{{x}}</b>, {name}<br>top-1 %{{y:.2f}}%<extra></extra>"))
    for value, label, color in ((dense, "dense", "#111111"), (chance, "chance", "#9E9E9E")):
        if value is not None:
            fig.add_hline(y=float(value), line=dict(color=color, dash="dot", width=1.5),
                          name=f"{label} ({float(value):.1f}%)", showlegend=True)
    top = max([float(v) for v in (*original.values(), *shuffled.values(), dense or 0.0)])
    fig.update_xaxes(title_text=None)
    fig.update_yaxes(range=[0, 1.1 * top if top > 0 else 1.0])
    fig.update_layout(legend=dict(orientation="h", y=-0.12, x=0, xanchor="left",
                                  yanchor="top"), margin=dict(b=90))
    return fig
