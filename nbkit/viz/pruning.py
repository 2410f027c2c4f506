"""Figures of pruning at initialization: layer collapse (the SynFlow paper's Fig. 1), the
critical compression of each pruner against the maximal one, effective density, and the
iterative-SynFlow views (per-layer densities over the iterations and the synaptic-flow
ratio of Fig. 7).

Pure builders: lists, arrays and dicts in, ``go.Figure`` out. Each panel is drawn by a
``_panel_*`` helper into a :class:`~nbkit.viz.panels.Panel` (plain trace and axis dicts),
so a panel looks the same alone and inside a dashboard, and a figure is validated once
when it is made (fast enough to redraw on every slider move). Densities are drawn on log
axes; a density of exactly 0 (a collapsed layer) cannot sit on a log axis, so it is drawn
at a floor one decade below the smallest non-zero density, on a tick labelled "0".
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .panels import Panel, figure
from .style import PUBLISHED_DASH, color_for, label_for, layer_colors

__all__ = ["SCHEDULE_COLORS", "density_floor", "layer_labels", "layer_status",
           "layer_collapse_figure", "critical_compression_figure", "effective_density_figure",
           "connectivity_figure", "flow_ratio_figure", "synflow_iterations_figure"]

# The two pruning schedules of iterative SynFlow (not pruners or rules, so not in style).
SCHEDULE_COLORS = {"exponential": "#FF7F0E", "linear": "#6A3D9A"}
REFERENCE_DASH = "dot"  # full-scale runs loaded from data/results/
RED = "#B00020"
_SUP = str.maketrans("-0123456789.", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹·")


def _pow10(e: float) -> str:
    """10^e as text: 10³, 10^3.25."""
    return f"10{str(int(e)).translate(_SUP)}" if float(e).is_integer() else f"10^{e:g}"


def density_floor(sizes, *densities) -> float:
    """Where a density of 0 is drawn on a log axis: the decade below the smallest
    non-zero density possible, 1/(largest layer), or found in ``densities``."""
    smallest = 1.0 / max(int(s) for s in sizes)
    for d in densities:
        d = np.asarray(d, dtype=float)
        if (d > 0).any():
            smallest = min(smallest, float(d[d > 0].min()))
    e = math.floor(math.log10(smallest))
    return 10.0 ** (e if 10.0 ** e < smallest else e - 1)


def _floored(values, floor: float) -> np.ndarray:
    """Densities with 0 moved to the floor (NaN, a point not measured, stays a gap)."""
    v = np.asarray(values, dtype=float)
    return np.where(v > 0, v, np.where(v == 0, floor, np.nan))


def _log_density_axis(floor: float, title: str) -> dict:
    """A log y axis from the floor to 1 whose lowest tick reads "0"."""
    lo = int(round(math.log10(floor)))
    text = ["0"] + [_pow10(e) for e in range(lo + 1, 0)] + ["1"]
    return dict(type="log", title=title, tickvals=[10.0 ** e for e in range(lo, 1)],
                ticktext=text, range=[lo - 0.2, 0.1])


def layer_labels(layers, sizes=None) -> list[str]:
    """Short legend labels for prunable tensors: "1 conv (1.73k)", ..., "14 fc (5.12k)"."""
    out = []
    for i, name in enumerate(layers):
        parts = [p for p in str(name).removesuffix(".weight").split(".") if not p.isdigit()]
        label = f"{i + 1} {parts[-1] if parts else name}"
        out.append(label if sizes is None else f"{label} ({_si(sizes[i])})")
    return out


def _si(n) -> str:
    n = float(n)
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{int(n)}"


def layer_status(density_now, *, effective=None, disconnected=None) -> str:
    """One line: collapsed layers, disconnection and effective density at a compression."""
    d = np.asarray(density_now, dtype=float)
    if np.isnan(d).all():
        return "not reached (the pruning run stopped early)"
    empty = [str(i + 1) for i in np.flatnonzero(d <= 0)]
    parts = [f"layer collapse: layer {', '.join(empty)} empty" if empty else "no layer collapse"]
    if disconnected is not None:
        # An empty layer leaves a path from input to output only around it, through a
        # residual connection: say so, or "empty · connected" reads as a contradiction.
        parts.append("disconnected" if disconnected else
                     "still connected: skip connections route around the empty layers"
                     if empty else "connected")
    if effective is not None:
        parts.append(f"effective density {effective:.3g}")
    return " · ".join(parts)


def _note(title: str, note: str = "", subtitle: str = "") -> str:
    if note:
        title += f" <span style='font-size:13px;color:#666'>({note})</span>"
    if subtitle:
        title += f"<br><span style='font-size:14px'>{subtitle}</span>"
    return title


# ----------------------------------------------------------------- Fig. 1 panels

def _panel_curves(p, log10_rho, layers, sizes, density, *, current=None, published=None,
                  reference=None, floor=None):
    """Per-layer density against log10 compression, one line per layer; the published
    curves dashed and a full-scale run's dotted, in the same layer colours."""
    density = np.asarray(density, dtype=float)
    colors = layer_colors(len(layers))
    for j, name in enumerate(layer_labels(layers, sizes)):
        kept = np.rint(density[:, j] * sizes[j])
        p.add(x=list(log10_rho), y=_floored(density[:, j], floor), mode="lines+markers",
              name=name, legendgroup=f"layer{j}", line=dict(color=colors[j], width=2),
              marker=dict(size=4), customdata=np.stack([density[:, j], kept], -1),
              hovertemplate=(f"<b>{layers[j]}</b> ({sizes[j]:,} weights)<br>log10 ρ = %{{x:.2f}}"
                             "<br>density = %{customdata[0]:.3g}<br>kept %{customdata[1]:,}"
                             "<extra></extra>"))
    for ref, dash in ((published, PUBLISHED_DASH), (reference, REFERENCE_DASH)):
        if not ref:
            continue
        rd = np.asarray(ref["density"], dtype=float)
        for j in range(min(rd.shape[1], len(layers))):
            p.add(x=list(ref["log10_rho"]), y=_floored(rd[:, j], floor), mode="lines",
                  name=ref["label"], legendgroup=ref["label"], showlegend=j == 0,
                  line=dict(color=colors[j], width=1.3, dash=dash), opacity=0.85,
                  customdata=rd[:, j],
                  hovertemplate=(f"<b>{ref.get('hover', ref['label'])}</b><br>layer {j + 1}"
                                 "<br>log10 ρ = %{x:.2f}<br>density = %{customdata:.3g}"
                                 "<extra></extra>"))
    if current is not None:
        p.vline(current)
    top = max([max(log10_rho)] + [max(r["log10_rho"]) for r in (published, reference) if r])
    p.xaxis.update(title="compression log10 ρ  (ρ = 1/density)", range=[-0.1, top + 0.1])
    p.yaxis.update(_log_density_axis(floor, "layer density (fraction kept)"))


def _panel_bars(p, layers, sizes, density_now, *, published_now=None, label="published",
                floor=None):
    """Per-layer density at one compression: a bar per layer, published as dashed ticks."""
    d = np.asarray(density_now, dtype=float)
    x = np.arange(1, len(layers) + 1)
    p.add(type="bar", x=x, y=_floored(d, floor), showlegend=False, name="this compression",
          marker=dict(color=layer_colors(len(layers))),
          customdata=np.stack([d, np.rint(d * np.asarray(sizes)), sizes], -1),
          hovertext=layers, text=np.where(d == 0, "empty", ""), textposition="outside",
          textfont=dict(color=RED, size=13), textangle=-90, constraintext="none",
          cliponaxis=False,
          hovertemplate=("<b>%{hovertext}</b><br>density = %{customdata[0]:.3g}<br>kept "
                         "%{customdata[1]:,} of %{customdata[2]:,}<extra></extra>"))
    if published_now is not None:
        xs, ys = [], []
        for i, v in enumerate(_floored(np.asarray(published_now, float)[:len(layers)], floor)):
            xs += [i + 0.6, i + 1.4, None]
            ys += [v, v, None]
        p.add(x=xs, y=ys, mode="lines", name=label, showlegend=False,
              line=dict(color="#111111", width=2.5, dash=PUBLISHED_DASH),
              hovertemplate=f"{label}<br>density = %{{y:.3g}}<extra></extra>")
    p.xaxis.update(title="layer (input → output)", tickvals=list(x))
    p.yaxis.update(_log_density_axis(floor, "layer density at this ρ"))


def layer_collapse_figure(log10_rho, layers, sizes, density, *, method: str, current: float,
                          effective=None, disconnected=None, published=None, reference=None,
                          model: str = "", note: str = "", height: int = 520) -> go.Figure:
    """Fig. 1, live: per-layer density against compression for one pruner (left) and the
    per-layer densities at the chosen compression (right).

    Args:
        log10_rho: the compressions of the sweep (log10 of 1/density).
        layers, sizes: names and sizes of the prunable tensors, input to output.
        density: ``[len(log10_rho)][len(layers)]`` kept fractions.
        method: the pruner (named in the title).
        current: the compression chosen with the slider (must be in ``log10_rho``).
        effective, disconnected: per compression, effective density and whether the
            network is disconnected (optional; shown under the title).
        published: ``{"log10_rho", "density", "label"}``, drawn dashed (the paper's).
        reference: the same from a full-scale run, drawn dotted.
    """
    log10_rho = [float(r) for r in log10_rho]
    if float(current) not in log10_rho:
        raise ValueError(f"compression {current} is not in the sweep {log10_rho}")
    i = log10_rho.index(float(current))
    density = np.asarray(density, dtype=float)
    floor = density_floor(sizes, *[r["density"] for r in (published, reference) if r])
    status = layer_status(density[i],
                          effective=None if effective is None else effective[i],
                          disconnected=None if disconnected is None else disconnected[i])
    curves, bars = Panel(1), Panel(2)
    _panel_curves(curves, log10_rho, layers, sizes, density, current=current,
                  published=published, reference=reference, floor=floor)
    pub_now = None
    if published and float(current) in [float(r) for r in published["log10_rho"]]:
        pub_now = published["density"][[float(r) for r in published["log10_rho"]].index(
            float(current))]
    _panel_bars(bars, layers, sizes, density[i], published_now=pub_now, floor=floor,
                label=published["label"] if published else "published")
    return figure(_note(f"Layer collapse: {label_for(method)} on {model}", note,
                         f"at ρ = {_pow10(current)}: {status}"),
                  [curves, bars], widths=[0.58, 0.42], title_size=15, height=height,
                  titles=["per-layer density against compression",
                          f"per-layer density at ρ = {_pow10(current)}"],
                  legend=dict(font=dict(size=12), tracegroupgap=0), margin=dict(t=120))


# ------------------------------------------------- critical compression, connectivity

def _panel_critical(p, critical: dict, rho_max_log10: float, *, connected=None,
                    published=None, reference=None, reference_label="full run",
                    published_label="published", current=None):
    """Critical compression per pruner (bars) against the maximal one, log10(N/L)."""
    methods = list(critical)
    y = np.arange(len(methods))
    names = [label_for(m) for m in methods]
    p.add(type="bar", y=y, orientation="h", width=0.6, showlegend=False,
          x=[np.nan if critical[m] is None else critical[m] for m in methods], name="live",
          marker=dict(color=[color_for(m) for m in methods]), hovertext=names,
          hovertemplate=("<b>%{hovertext}</b><br>critical log10 ρ = %{x:.2f} (no layer empty)"
                         "<extra></extra>"))
    if connected:
        p.add(y=y, x=[connected.get(m) for m in methods], mode="markers", hovertext=names,
              name="largest ρ still connected",
              marker=dict(symbol="diamond", size=11, color="white",
                          line=dict(color="#222222", width=2)),
              hovertemplate=("<b>%{hovertext}</b><br>still connected up to log10 ρ = "
                             "%{x:.2f}<extra></extra>"))
    for ref, dash, label in ((published, PUBLISHED_DASH, published_label),
                             (reference, REFERENCE_DASH, reference_label)):
        if not ref:
            continue
        xs, ys = [], []
        for i, m in enumerate(methods):
            if ref.get(m) is not None:
                xs += [ref[m], ref[m], None]
                ys += [i - 0.42, i + 0.42, None]
        p.add(x=xs, y=ys, mode="lines", name=label, line=dict(color="#111111", width=2.5,
                                                              dash=dash),
              hovertemplate=f"{label}<br>critical log10 ρ = %{{x:.2f}}<extra></extra>")
    p.vline(rho_max_log10, line=dict(color=RED, width=2, dash="dash"),
            text=f" ρ<sub>max</sub> = N/L ≈ {_pow10(round(rho_max_log10, 2))}")
    if current is not None:
        p.vline(current)
    p.yaxis.update(tickvals=list(y), ticktext=names, range=[-0.6, len(methods) + 0.1])
    p.xaxis.update(title="critical compression log10 ρ",
                   range=[0, max(6.3, rho_max_log10 + 0.3)])


def _panel_effective(p, log10_rho, effective: dict, *, disconnected=None, current=None):
    """Effective over nominal density per pruner: the fraction of kept weights that lie
    on an input-to-output path (1: all useful, 0: the network is disconnected)."""
    log10_rho = [float(r) for r in log10_rho]
    nominal = 10.0 ** -np.asarray(log10_rho)
    for m, eff in effective.items():
        eff = np.asarray(eff, dtype=float)
        p.add(x=log10_rho, y=eff / nominal, mode="lines+markers", name=label_for(m),
              legendgroup=m, line=dict(color=color_for(m), width=2), marker=dict(size=5),
              customdata=np.stack([nominal, eff], -1),
              hovertemplate=(f"<b>{label_for(m)}</b><br>log10 ρ = %{{x:.2f}}<br>nominal "
                             "density = %{customdata[0]:.3g}<br>effective density = "
                             "%{customdata[1]:.3g}<br>useful fraction = %{y:.3f}"
                             "<extra></extra>"))
        dx = [r for r, dis in zip(log10_rho, (disconnected or {}).get(m, [])) if dis]
        if dx:
            p.add(x=dx, y=[0.0] * len(dx), mode="markers", name=f"{label_for(m)} disconnected",
                  legendgroup=m, showlegend=False,
                  marker=dict(symbol="x", size=9, color=color_for(m)),
                  hovertemplate=(f"<b>{label_for(m)}</b>: disconnected at log10 ρ = %{{x:.2f}}"
                                 "<extra></extra>"))
    if current is not None:
        p.vline(current)
    p.xaxis.update(title="compression log10 ρ", range=[-0.1, max(log10_rho) + 0.1])
    p.yaxis.update(title="effective / nominal density", range=[-0.05, 1.05])


def critical_compression_figure(critical: dict, rho_max_log10: float, *, model: str = "",
                                connected=None, published=None, reference=None,
                                published_label="published", reference_label="full run",
                                current=None) -> go.Figure:
    """Critical compression of each pruner against the maximal critical compression.

    Args:
        critical: pruner -> largest log10 ρ at which no layer is empty (None: none).
        rho_max_log10: log10(N/L), the compression at which one weight per layer is left.
        connected: pruner -> largest log10 ρ at which the network is still connected.
        published, reference: pruner -> log10 ρ, drawn as dashed / dotted ticks.
    """
    p = Panel()
    _panel_critical(p, critical, rho_max_log10, connected=connected, published=published,
                    reference=reference, current=current, published_label=published_label,
                    reference_label=reference_label)
    return figure(f"Critical compression on {model} against ρ_max", [p], height=400)


def effective_density_figure(log10_rho, effective: dict, *, model: str = "",
                             disconnected=None, current=None) -> go.Figure:
    """Effective against nominal density for every pruner (x marks: disconnected)."""
    p = Panel()
    _panel_effective(p, log10_rho, effective, disconnected=disconnected, current=current)
    return figure(f"How much of what is kept is still connected, on {model}", [p])


def connectivity_figure(log10_rho, effective: dict, critical: dict, rho_max_log10: float, *,
                        current: float, model: str = "", disconnected=None, connected=None,
                        published=None, reference=None, published_label="published",
                        reference_label="full run", note: str = "",
                        height: int = 480) -> go.Figure:
    """Effective against nominal density for every pruner (left) beside the critical
    compression of each against ρ_max (right)."""
    left, right = Panel(1), Panel(2)
    _panel_effective(left, log10_rho, effective, disconnected=disconnected, current=current)
    _panel_critical(right, critical, rho_max_log10, connected=connected, published=published,
                    reference=reference, current=current, published_label=published_label,
                    reference_label=reference_label)
    return figure(_note(f"Disconnection and critical compression on {model}", note),
                  [left, right], widths=[0.55, 0.45], hspace=0.12, height=height,
                  title_size=15, titles=["effective density (kept weights on an input→output "
                                         "path)", "critical compression against ρ_max"],
                  legend=dict(font=dict(size=12)), margin=dict(t=100))


# -------------------------------------------------------------- iterative SynFlow

def _iteration_axis(n: int, start: int = 1) -> dict:
    """A linear x axis over the iterations start..n of one run (integer ticks)."""
    return dict(title="pruning iteration", range=[start - 0.5, max(n, start + 1) + 0.5],
                dtick=1 if n <= 10 else None)


def _iterations_axis(iterations) -> dict:
    """A log x axis over the iteration counts, with a tick at each of them."""
    its = sorted({int(i) for i in iterations})
    return dict(type="log", title="number of iterations", tickvals=its,
                ticktext=[str(i) for i in its],
                range=[math.log10(its[0]) - 0.12, math.log10(its[-1]) + 0.12])


def _panel_iterations(p, layers, sizes, layer_density, *, overall=None):
    """Per-layer density after each pruning iteration (iteration 0: dense)."""
    d = np.asarray(layer_density, dtype=float).reshape(-1, len(layers))
    d = np.vstack([np.ones((1, len(layers))), d])
    k = np.arange(d.shape[0])
    floor = density_floor(sizes)
    colors = layer_colors(len(layers))
    mode = "lines+markers" if len(k) <= 21 else "lines"
    for j, name in enumerate(layer_labels(layers, sizes)):
        p.add(x=k, y=_floored(d[:, j], floor), mode=mode, name=name, legendgroup=f"l{j}",
              line=dict(color=colors[j], width=2), customdata=d[:, j],
              hovertemplate=(f"<b>{layers[j]}</b><br>iteration %{{x}}<br>density = "
                             "%{customdata:.3g}<extra></extra>"))
    if overall is not None:
        o = np.concatenate([[1.0], np.asarray(overall, dtype=float)])
        p.add(x=k[:len(o)], y=o, mode=mode, name="whole network",
              line=dict(color="#111111", width=3),
              hovertemplate="whole network<br>iteration %{x}<br>density = %{y:.3g}"
                            "<extra></extra>")
    p.xaxis.update(_iteration_axis(d.shape[0] - 1, 0))
    p.yaxis.update(_log_density_axis(floor, "layer density"))


def _infinite_ratios(p, xs, ratios, name: str, where: str):
    """Mark the infinite flow ratios of one schedule (a layer with no flow left) as ∞ at
    the top of a log panel, which would otherwise drop them silently."""
    ratios = np.asarray(ratios, dtype=float)
    inf = np.flatnonzero(np.isposinf(ratios))
    if not inf.size:
        return
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    top = 3 * max(float(finite.max()) if finite.size else 1.0, 1.0)
    p.add(x=np.asarray(xs)[inf], y=[top] * inf.size, mode="markers+text",
          text=["∞"] * inf.size, textposition="top center", legendgroup=name,
          showlegend=False, name=f"{name} schedule: infinite ratio",
          marker=dict(symbol="triangle-up", size=12, color=SCHEDULE_COLORS.get(name, "#555555")),
          hovertemplate=f"{name}<br>{where}<br>flow ratio = ∞: a layer had no flow left"
                        "<extra></extra>")


def _panel_flow_ratio(p, ratios: dict, *, legend=True):
    """The synaptic-flow ratio of every iteration (log y) with the y = 1 line."""
    n = 1
    for name, r in ratios.items():
        r = np.asarray(r, dtype=float)
        n = max(n, len(r))
        y = [float(v) if np.isfinite(v) and v > 0 else None for v in r]  # inf: a gap
        p.add(x=np.arange(1, len(r) + 1), y=y, mode="lines+markers",
              name=f"{name} schedule", legendgroup=name, showlegend=legend,
              line=dict(color=SCHEDULE_COLORS.get(name, "#555555"), width=2.5),
              marker=dict(size=9 if len(r) <= 5 else 5 if len(r) < 40 else 3),
              hovertemplate=(f"{name}<br>iteration %{{x}}<br>flow ratio = %{{y:.3g}}"
                             "<extra></extra>"))
        _infinite_ratios(p, np.arange(1, len(r) + 1), r, name, "iteration %{x}")
    p.hline(1.0, text="ratio = 1")
    p.xaxis.update(_iteration_axis(n))
    p.yaxis.update(type="log", title="pruned score / weakest layer's total",
                   exponentformat="power", dtick=1)


def _panel_max_ratio(p, iterations, max_ratio: dict, *, published=None, current=None,
                     label="published"):
    """Largest flow ratio of a run against its number of iterations, per schedule."""
    for name, vals in max_ratio.items():
        _infinite_ratios(p, list(iterations), vals, name, "%{x} iterations")
        vals = [v if np.isfinite(v) else None for v in np.asarray(vals, dtype=float)]
        p.add(x=list(iterations), y=vals, mode="lines+markers", name=f"{name} schedule",
              legendgroup=name, line=dict(color=SCHEDULE_COLORS.get(name, "#555555"), width=2.5),
              hovertemplate=(f"{name}<br>%{{x}} iterations<br>max flow ratio = %{{y:.3g}}"
                             "<extra></extra>"))
    for name, pts in (published or {}).items():
        xs, ys = zip(*sorted(pts.items()))
        p.add(x=list(xs), y=list(ys), mode="markers", name=f"{label}, {name}",
              marker=dict(symbol="circle-open", size=12, line=dict(width=2.5),
                          color=SCHEDULE_COLORS.get(name, "#555555")),
              hovertemplate=(f"{label}, {name}<br>%{{x}} iterations<br>max ratio = %{{y:.3g}}"
                             "<extra></extra>"))
    p.hline(1.0)
    if current is not None:
        p.vline(current)
    p.xaxis.update(_iterations_axis(iterations))
    p.yaxis.update(type="log", title="max flow ratio", exponentformat="power", dtick=1)


def _panel_critical_iterations(p, iterations, critical: dict, rho_max_log10: float, *,
                               current=None):
    """Critical compression against the number of iterations, per schedule."""
    for name, vals in critical.items():
        p.add(x=list(iterations), y=[np.nan if v is None else v for v in vals],
              mode="lines+markers", name=name, legendgroup=name, showlegend=False,
              line=dict(color=SCHEDULE_COLORS.get(name, "#555555"), width=2.5),
              marker=dict(size=7),
              hovertemplate=(f"{name}<br>%{{x}} iterations<br>critical log10 ρ = %{{y:.2f}}"
                             "<extra></extra>"))
    p.hline(rho_max_log10, line=dict(color=RED, width=2, dash="dash"), side="right",
            text=f"ρ<sub>max</sub> = N/L ≈ {_pow10(round(rho_max_log10, 2))}")
    if current is not None:
        p.vline(current)
    p.xaxis.update(_iterations_axis(iterations))
    p.yaxis.update(title="critical log10 ρ", range=[0, rho_max_log10 + 0.6])


def flow_ratio_figure(ratios: dict, *, title="Synaptic-flow ratio per iteration") -> go.Figure:
    """Fig. 7: the flow ratio of each iteration, per schedule, against the y = 1 line."""
    p = Panel()
    _panel_flow_ratio(p, ratios)
    return figure(title, [p])


def synflow_iterations_figure(*, layers, sizes, layer_density, overall, ratio, schedule: str,
                              n: int, log10_rho: float, iterations, max_ratio: dict,
                              critical: dict, rho_max_log10: float, published_max=None,
                              published_label: str = "published: VGG-19, ImageNet",
                              model: str = "", note: str = "", height: int = 545):
    """The iterative-SynFlow dashboard for one run (``n`` iterations of ``schedule`` to
    compression 10^log10_rho): per-layer densities over its iterations, its flow ratio per
    iteration (Fig. 7), and over all runs the largest flow ratio and the critical
    compression against the number of iterations, per schedule."""
    r = np.asarray(ratio, dtype=float)
    peak = float(np.nanmax(r)) if r.size else float("nan")
    verdict = "stays below 1" if peak < 1 else "exceeds 1"
    panels = [Panel(i) for i in range(1, 5)]
    _panel_iterations(panels[0], layers, sizes, layer_density, overall=overall)
    _panel_flow_ratio(panels[1], {schedule: r}, legend=False)
    _panel_max_ratio(panels[2], iterations, max_ratio, published=published_max, current=n,
                     label=published_label)
    _panel_critical_iterations(panels[3], iterations, critical, rho_max_log10, current=n)
    title = (f"Iterative SynFlow on {model}: {n} {schedule} iteration{'s' if n != 1 else ''}"
             f" to ρ = {_pow10(log10_rho)}")
    return figure(_note(title, note), panels, cols=2, hspace=0.11, vspace=0.22, height=height,
                  title_size=15, titles=["per-layer density across the iterations",
                                         f"flow ratio per iteration (max {peak:.3g}: {verdict})",
                                         "largest flow ratio against iterations",
                                         "critical compression against iterations"],
                  legend=dict(font=dict(size=12), tracegroupgap=0), margin=dict(t=80, b=50))
