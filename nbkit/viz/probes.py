"""Figures of the conservation laws (SynFlow paper, Figs. 3 and 4).

Pure builders: the dicts of :mod:`nbkit.probes` (as plain arrays) in, ``go.Figure`` out.

- :func:`neuron_flow_figure` (Fig. 3): every hidden unit's incoming saliency against
  its outgoing saliency, log-log, on the line y = x where neuron-wise conservation holds.
- :func:`layer_size_figure` (Fig. 4): every layer's average score against its size,
  log-log, with the fitted slope; -1 when every layer carries the same total.
- :func:`layer_totals_figure`: every layer's (and every cut's) total saliency beside
  the input flow <dR/dx, x>, the network-wise law.
- :func:`conservation_figure`: Fig. 3 and the layer totals side by side, for the
  widget that toggles what breaks the laws.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .panels import Panel, figure
from .style import layer_colors, new_figure, readable_log_ticks

__all__ = ["neuron_flow_figure", "layer_size_figure", "layer_totals_figure",
           "conservation_figure", "short_name"]

_IDENTITY = dict(color="#222222", width=1.5, dash="dot")


def short_name(name: str) -> str:
    """A layer's display name: its weight's name without ``.weight``."""
    return name[:-len(".weight")] if name.endswith(".weight") else name


# ------------------------------------------------------------------------ Fig. 3

def _flow_traces(flows, *, log: bool, showlegend=True):
    """Scatter traces as dicts (one per hidden layer), the plotted range and what was
    left out."""
    flows = list(flows)
    colors = layer_colors(len(flows))
    signed = any((np.asarray(f["incoming"]) < 0).any() or (np.asarray(f["outgoing"]) < 0).any()
                 for f in flows)
    traces, lo, hi, dropped = [], math.inf, -math.inf, 0
    for k, (f, color) in enumerate(zip(flows, colors), start=1):
        inc = np.asarray(f["incoming"], dtype=float).ravel()
        out = np.asarray(f["outgoing"], dtype=float).ravel()
        if inc.shape != out.shape:
            raise ValueError(f"layer {f['layer']!r}: incoming has {inc.size} units but "
                             f"outgoing has {out.size}")
        units = np.arange(inc.size)
        x, y = (np.abs(inc), np.abs(out)) if log else (inc, out)
        keep = (x > 0) & (y > 0) if log else np.isfinite(x) & np.isfinite(y)
        dropped += int((~keep).sum())
        if keep.any():
            lo = min(lo, float(x[keep].min()), float(y[keep].min()))
            hi = max(hi, float(x[keep].max()), float(y[keep].max()))
        negative = (inc < 0) | (out < 0)
        traces.append(dict(
            type="scatter", x=x[keep], y=y[keep], mode="markers", name=f"hidden layer {k}",
            legendgroup=f["layer"], showlegend=showlegend,
            marker=dict(color=color, size=7, opacity=0.85,
                        symbol=np.where(negative[keep], "circle-open", "circle").tolist(),
                        line=dict(width=np.where(negative[keep], 2.0, 0.5).tolist(),
                                  color=np.where(negative[keep], color, "#333").tolist())),
            customdata=np.stack([units[keep], inc[keep], out[keep]], axis=1),
            hovertemplate=(f"<b>hidden layer {k}</b> ({short_name(f['layer'])}) unit "
                           "%{customdata[0]:d}<br>"
                           "incoming %{customdata[1]:.6g}<br>outgoing %{customdata[2]:.6g}"
                           "<extra></extra>")))
    return traces, lo, hi, dropped, signed


def _identity_line(lo, hi, log):
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = (1e-3, 1.0) if log else (0.0, 1.0)
    if log:
        lo, hi = lo / 1.5, hi * 1.5
    else:
        pad = 0.05 * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + pad
    return dict(type="scatter", x=[lo, hi], y=[lo, hi], mode="lines", name="y = x (conserved)",
                line=_IDENTITY, hoverinfo="skip")


def neuron_flow_figure(flows, *, title: str | None = None, log: bool = True,
                       height: int = 480, width=None) -> go.Figure:
    """Fig. 3: incoming against outgoing saliency of every hidden unit.

    Args:
        flows: what :func:`nbkit.probes.neuron_flows` returns, a list of
            ``{"layer": name, "incoming": array, "outgoing": array}``, one per hidden
            layer (coloured from the input to the output).
        log: log-log axes (the paper's). Saliency of a loss can be negative: then the
            magnitudes are plotted, units with a negative value drawn as open circles,
            and units with no flow at all (dead ReLUs) left out, as the caption says.
            Hover text always shows the signed values.
    """
    traces, lo, hi, dropped, signed = _flow_traces(flows, log=log)
    what = "|saliency|" if (log and signed) else "saliency"
    fig = new_figure(title or "Neuron-wise conservation: incoming = outgoing (Fig. 3)",
                     f"incoming {what} of a hidden unit (weights + bias)",
                     f"outgoing {what} of a hidden unit", xlog=log, ylog=log, height=height,
                     width=width)
    fig.add_traces([_identity_line(lo, hi, log), *traces])
    note = _flow_note(dropped, signed and log)
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0.99, y=0.01,
                           xanchor="right", yanchor="bottom", showarrow=False,
                           font=dict(size=12, color="#555"))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return readable_log_ticks(fig)


def _flow_note(dropped, signed):
    parts = []
    if signed:
        parts.append("open circles: negative saliency")
    if dropped:
        parts.append(f"{dropped} unit{'s' if dropped != 1 else ''} with zero flow not shown")
    return "; ".join(parts)


# ------------------------------------------------------------------------ Fig. 4

def layer_size_figure(points: dict, *, title: str | None = None, height: int = 480,
                      width=None) -> go.Figure:
    """Fig. 4: average score per weight of each prunable layer against the layer's size,
    log-log, with the least-squares fit.

    Args:
        points: what :func:`nbkit.probes.fig4_points` returns: ``{"layer": [names],
            "size": array, "average": array, "slope": float}``. When the averages are
            negative (a loss whose flow is negative) their magnitudes are plotted.
    """
    names = list(points["layer"])
    size = np.asarray(points["size"], dtype=float)
    avg = np.asarray(points["average"], dtype=float)
    if size.shape != avg.shape or size.size != len(names):
        raise ValueError("points need one size and one average per layer name")
    signed = bool((avg < 0).any())
    y = np.abs(avg)
    keep = (y > 0) & (size > 0)
    slope, intercept = math.nan, math.nan
    if keep.sum() >= 2 and len(set(size[keep].tolist())) > 1:
        slope, intercept = np.polyfit(np.log10(size[keep]), np.log10(y[keep]), 1)
    label = "|average score|" if signed else "average score"
    fig = new_figure(title or (f"Average score against layer size (Fig. 4): slope {slope:.2f}"
                               if math.isfinite(slope) else
                               "Average score against layer size (Fig. 4)"),
                     "layer size (number of weights)", f"{label} per weight", xlog=True,
                     ylog=True, height=height, width=width)
    if math.isfinite(slope):
        xs = np.array([size[keep].min() / 1.4, size[keep].max() * 1.4])
        fig.add_trace(go.Scatter(x=xs, y=10 ** (intercept + slope * np.log10(xs)), mode="lines",
                                 name=f"fit: slope {slope:.3f}", line=_IDENTITY,
                                 hoverinfo="skip"))
    if keep.any():
        # What conservation predicts: one total T for every layer, so average = T / size,
        # a line of slope -1 (through the geometric mean of the layer totals).
        xs = np.array([size[keep].min() / 1.4, size[keep].max() * 1.4])
        total = float(np.exp(np.mean(np.log(y[keep] * size[keep]))))
        fig.add_trace(go.Scatter(x=xs, y=total / xs, mode="lines",
                                 name="slope −1: every layer the same total",
                                 line=dict(color="#888888", width=1.5, dash="dash"),
                                 hoverinfo="skip"))
    colors = layer_colors(len(names))
    fig.add_trace(go.Scatter(
        x=size[keep], y=y[keep], mode="markers", name="layers (input → output)",
        marker=dict(color=np.array(colors, dtype=object)[keep].tolist(), size=11,
                    line=dict(width=1, color="#333")),
        customdata=np.stack([np.array([short_name(n) for n in names], dtype=object)[keep],
                             avg[keep]], axis=1),
        hovertemplate=("<b>%{customdata[0]}</b><br>%{x:,.0f} weights<br>"
                       "average score %{customdata[1]:.6g}<extra></extra>")))
    return readable_log_ticks(fig)


# -------------------------------------------------------------- network-wise law

def _totals_traces(totals: dict, cut_totals=None, showlegend=True):
    names = list(totals)
    # layers by number, as every figure numbers them; the module's name in the hover
    plain = {n: f"layer {k}" for k, n in enumerate(names, start=1)}
    labels = [plain[n] for n in names]
    values = np.array([float(totals[n]) for n in names])
    traces = [dict(type="scatter", x=labels, y=values, mode="lines+markers",
                   customdata=[short_name(n) for n in names],
                   name="layer total", showlegend=showlegend,
                   line=dict(color="#9E9E9E", width=1.5),
                   marker=dict(color=layer_colors(len(names)), size=13,
                               line=dict(width=1, color="#333")),
                   hovertemplate="<b>%{x}</b> (%{customdata})<br>total saliency %{y:.8g}"
                                 "<extra></extra>")]
    if cut_totals and set(cut_totals) != set(names):
        xs, ys, text = [], [], []
        for key, value in cut_totals.items():
            for member in key.split("+"):
                if member in totals:
                    xs.append(plain[member])
                    ys.append(float(value))
                    text.append(" + ".join(plain.get(k, short_name(k)) for k in key.split("+")))
        traces.append(dict(type="scatter", x=xs, y=ys, mode="markers", name="cut total",
                           showlegend=showlegend,
                           marker=dict(symbol="diamond", size=12, color="#111",
                                       line=dict(width=1, color="white")),
                           customdata=text,
                           hovertemplate="cut %{customdata}<br>total %{y:.8g}<extra></extra>"))
    return traces


def _totals_range(totals: dict, input_flow=None, cut_totals=None, min_span: float = 0.04):
    """A y range that shows every total, at least ``min_span`` (relative) wide, so that
    equal totals sit on a flat line and a deviation of a fraction of a percent shows."""
    ys = [float(v) for v in totals.values()] + [float(v) for v in (cut_totals or {}).values()]
    if input_flow is not None and math.isfinite(float(input_flow)):
        ys.append(float(input_flow))
    ys = [y for y in ys if math.isfinite(y)]
    if not ys:
        return None
    lo, hi = min(ys), max(ys)
    mid = 0.5 * (lo + hi)
    half = 0.5 * max(hi - lo, min_span * abs(mid), 1e-300) * 1.15
    return [mid - half, mid + half]


def _input_flow_line(input_flow) -> dict | None:
    """The dashed line at the input flow <dR/dx, x>, with a legend entry (None: none)."""
    if input_flow is None or not math.isfinite(float(input_flow)):
        return None
    return dict(y=float(input_flow), line=dict(color="#B00020", width=2, dash="dash"),
                name=f"input flow ⟨∂R/∂x, x⟩ = {float(input_flow):.4g}", showlegend=True)


def layer_totals_figure(totals: dict, *, input_flow: float | None = None,
                        cut_totals: dict | None = None, title: str | None = None,
                        height: int = 450, width=None) -> go.Figure:
    """Total saliency of every prunable layer (input to output), beside the input flow
    <dR/dx, x> (dashed). Network-wise conservation puts every layer on that line; the
    y range is at least 4% wide, so equal totals draw a flat line.

    Args:
        totals: ``{weight name: total}`` from ``nbkit.probes.layer_totals(model, S)``.
        input_flow: <dR/dx, x> (``conservation_report(...)["input_flow"]``), if any.
        cut_totals: ``layer_totals(model, S, by="cut")``; drawn as diamonds at each
            member layer when it differs from the layers (residual networks), where the
            law holds over cuts rather than single layers.
    """
    fig = new_figure(title or "Network-wise conservation: every layer carries the same total",
                     "prunable layer (input → output)", "total saliency of the layer",
                     height=height, width=width)
    fig.add_traces(_totals_traces(totals, cut_totals))
    line = _input_flow_line(input_flow)
    if line:
        fig.add_hline(**line)
    fig.update_yaxes(range=_totals_range(totals, input_flow, cut_totals))
    return readable_log_ticks(fig)


def conservation_figure(flows, totals: dict, *, input_flow: float | None = None,
                        cut_totals: dict | None = None, title: str | None = None,
                        log: bool = True, height: int = 470, width=None) -> go.Figure:
    """Both laws at once: Fig. 3 (left) and the layer totals (right)."""
    units, layers = Panel(1), Panel(2)
    traces, lo, hi, dropped, signed = _flow_traces(flows, log=log)
    for t in (_identity_line(lo, hi, log), *traces):
        units.add(**t)
    what = "|saliency|" if (log and signed) else "saliency"
    axis_type = "log" if log else "linear"
    units.xaxis.update(title=f"incoming {what}", type=axis_type)
    units.yaxis.update(title=f"outgoing {what}", type=axis_type)
    note = _flow_note(dropped, signed and log)
    if note:
        units.note(note, 0.99, 0.01, xanchor="right", yanchor="bottom",
                   font=dict(size=12, color="#555"))
    for t in _totals_traces(totals, cut_totals):
        layers.add(**t)
    line = _input_flow_line(input_flow)
    if line:
        layers.hline(**line)
    layers.xaxis.update(title="prunable layer (input → output)", tickangle=-30)
    layers.yaxis.update(title="total saliency",
                        range=_totals_range(totals, input_flow, cut_totals))
    return figure(title or "Conservation of synaptic saliency", [units, layers],
                  titles=["neuron-wise: incoming vs outgoing per unit",
                          "network-wise: total per layer"], hspace=0.12, height=height,
                  width=width, legend=dict(orientation="h", y=-0.38, x=0, yanchor="top"),
                  margin=dict(b=160))
