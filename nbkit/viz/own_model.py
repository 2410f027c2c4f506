"""Notebook 07's figure: every pruner on one model at one compression. Left, the density
of each layer (input → output) per pruner, on a log axis, with emptied layers marked;
right, the effective density of each pruner (the share of all weights kept *and* on an
input-output path) against the nominal density."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .panels import GUIDE, Panel, figure
from .style import color_for, label_for

__all__ = ["own_model_figure"]


def own_model_figure(result: dict, *, height: int = 470, width: int = 1000) -> go.Figure:
    """``result`` as :func:`nbkit.studies.own_model.prune_all` returns it."""
    nominal = float(result["density"])
    runs = {m: r for m, r in result["pruners"].items() if "density" in r}
    floor = 10.0 ** math.floor(math.log10(max(nominal, 1e-12)) - 2)
    left, right = Panel(1), Panel(2)
    n = len(result["layers"])
    x = np.arange(1, n + 1)
    for method, r in runs.items():
        d = np.asarray(r["density"], dtype=float)
        left.add(x=x, y=np.maximum(d, floor), mode="lines+markers", name=label_for(method)
                 + (" (linearised)" if r.get("linearized") else ""),
                 legendgroup=method, line=dict(color=color_for(method), width=2),
                 marker=dict(size=np.where(d == 0, 11, 5), color=color_for(method),
                             symbol=np.where(d == 0, "x", "circle").tolist()),
                 customdata=np.stack([d, np.asarray(result["sizes"])], -1),
                 hovertext=result["layers"],
                 hovertemplate="layer %{x}: %{hovertext}<br>density %{customdata[0]:.3g} of "
                               "%{customdata[1]:,} weights<extra>" + label_for(method)
                               + "</extra>")
    left.hline(floor, line=dict(color="#B00020", width=1, dash="dot"), text="empty (× marks)",
               side="right", above=False)
    left.hline(nominal, line=GUIDE, text=f"nominal density {nominal:.3g}", side="left")
    left.xaxis.update(title="layer (input → output)")
    left.yaxis.update(title="layer density (log)", type="log")
    names = [m for m in runs if runs[m]["effective"] is not None]
    eff = [runs[m]["effective"] for m in names]
    if not names:
        right.note("effective density: not defined<br>for this model (see the caption)",
                   0.5, 0.5, font=dict(size=13, color="#666"))
    right.add(type="bar", x=[label_for(m) for m in names], y=eff, showlegend=False,
              marker=dict(color=[color_for(m) for m in names]),
              text=[f"{e:.2g}" if e > 0 else "0: cut" for e in eff], textposition="outside",
              cliponaxis=False, hovertemplate="%{x}: effective density %{y:.3g}<extra></extra>")
    right.hline(nominal, line=GUIDE, text="nominal", side="left")
    right.yaxis.update(title="effective density", rangemode="tozero",
                       range=[0, 1.25 * max([nominal, *eff])])
    refused = [m for m, r in result["pruners"].items() if "error" in r]
    sub = (f"{n} layers with a weight; every pruner from the same initialisation"
           + (f"; refused: {', '.join(label_for(m) for m in refused)} (see the caption)"
              if refused else ""))
    return figure(f"{result['label']} pruned at initialization to density {nominal:.3g}",
                  [left, right], widths=[0.68, 0.32], hspace=0.1, subtitle=sub,
                  titles=["density of each layer", "kept weights on an input-output path"],
                  height=height, width=width, margin=dict(t=110, b=100),
                  legend=dict(orientation="h", y=-0.26, x=0, font=dict(size=12)))
