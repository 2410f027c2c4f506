"""Figures for the learning-rule notebooks: training curves with the alignment angles
(``05_feedback_alignment``), published and full-scale results beside each other, and the
depth-by-noise comparison of local rules and weight estimation (``06_two_routes``).

Pure builders: plain dicts and lists in, ``go.Figure`` out. The shapes they take:

- a **run** (one rule trained once)::

    {"rule": "feedback_alignment", "steps": [0, 10, ...],       # logged SGD steps
     "train_loss": [...], "test_acc": [...],                  # per logged step (0..1)
     "alignment": {layer: [degrees, ...]},                    # W against Bᵀ
     "gradient": {layer: [degrees, ...]}}                     # δ against backprop's δ

- a **grid** (final results over depth and noise)::

    {"depths": [2, 4, 6], "sigmas": [0.0, 0.1, 0.3], "rules": [...],
     "test_acc": {rule: [[acc per sigma] per depth]},
     "alignment": {rule: [[mean final angle per sigma] per depth]}}

- a **collected result** of ``nbkit.experiments`` (``data/results/learning_rules*.json``).
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import PUBLISHED_DASH, TEMPLATE, color_for, label_for, layer_colors

__all__ = ["LOCAL_RULES", "ESTIMATION_RULES", "PUBLISHED_RESNET_ERROR", "PUBLISHED_MLP_ACC",
           "SHORT", "route_of", "training_curves", "published_figure", "full_results_figure",
           "provenance_text", "two_routes_figure", "mean_angle", "final_by_rule",
           "routes_full_figure"]

# [TR]'s two routes: local rules learn B from what the layer sees; weight estimation
# rules use W (or W x) to estimate it.
LOCAL_RULES = ("feedback_alignment", "weight_mirror", "information_alignment")
ESTIMATION_RULES = ("symmetric_alignment", "kolen_pollack", "activation_alignment")

# Published numbers (SCIENCE.md). CIFAR-10 test error (%) from a public PyTorch benchmark;
# its sign-symmetry variant is uSF.
PUBLISHED_RESNET_ERROR = {
    "ResNet-20": {"backprop": 8.6, "feedback_alignment": 32.2, "sign_symmetry": 10.1},
    "ResNet-56": {"backprop": 8.3, "feedback_alignment": 34.9, "sign_symmetry": 8.2},
}
# Akrout et al. 2019, MLP test accuracy (%).
PUBLISHED_MLP_ACC = {
    "MNIST": {"feedback_alignment": 97.8, "weight_mirror": 98.5, "kolen_pollack": 98.5},
    "CIFAR-10": {"feedback_alignment": 43.0, "weight_mirror": 46.2, "kolen_pollack": 47.6},
}
_SYMBOLS = ("circle", "diamond", "square", "triangle-up")
_SMALL = dict(size=11, color="#666")
SHORT = {"backprop": "BP", "feedback_alignment": "FA", "sign_symmetry": "SS",
         "weight_mirror": "WM", "kolen_pollack": "KP", "information_alignment": "IA",
         "activation_alignment": "AA", "symmetric_alignment": "SA"}


def _tick(rule: str) -> str:
    """A rule's display name broken over lines, for category axes."""
    return label_for(rule).replace(" ", "<br>")


def _ordered(rules) -> list[str]:
    return [r for r in RULE_ORDER if r in rules] + sorted(set(rules) - set(RULE_ORDER))


def _error_panel(fig, nbkit_error: dict | None, name: str, published: dict, *, row=1, col=1):
    """Test error per rule: nbkit's as solid bars, each published model's as open
    markers on the same categories (no lines: the rules are categories, not a series).
    Ticks are the short names (BP, FA, ...); hover and legend give the full ones."""
    nbkit_error = {r: v for r, v in (nbkit_error or {}).items() if v is not None}
    if nbkit_error:
        rules = _ordered(nbkit_error)
        fig.add_trace(go.Bar(
            x=[SHORT.get(r, r) for r in rules], y=[nbkit_error[r] for r in rules],
            marker_color=[color_for(r) for r in rules], name=name, opacity=0.85,
            customdata=[label_for(r) for r in rules],
            hovertemplate="%{customdata}<br>test error %{y:.2f}% (nbkit)<extra></extra>"),
            row=row, col=col)
    for i, (model, errors) in enumerate(published.items()):
        rules = _ordered(errors)
        fig.add_trace(go.Scatter(
            x=[SHORT.get(r, r) for r in rules], y=[errors[r] for r in rules],
            name=f"{model}, published", mode="markers",
            # white-filled, so that a marker shows on a black (backprop) bar too
            marker=dict(symbol=_SYMBOLS[i], size=12, color="white",
                        line=dict(width=2, color="#222")),
            customdata=[label_for(r) for r in rules],
            hovertemplate=f"%{{customdata}}<br>{model}: %{{y:.1f}}% test error (published)"
                          "<extra></extra>"), row=row, col=col)
    fig.update_yaxes(title_text="test error (%)", rangemode="tozero", row=row, col=col)
    fig.update_xaxes(tickangle=0, categoryorder="array",
                     categoryarray=[SHORT.get(r, r) for r in RULE_ORDER], row=row, col=col)


def route_of(rule: str) -> str:
    """``"reference"`` (backprop), ``"local"`` or ``"estimation"`` (weight estimation),
    or ``"other"`` (sign symmetry)."""
    if rule == "backprop":
        return "reference"
    if rule in LOCAL_RULES:
        return "local"
    if rule in ESTIMATION_RULES:
        return "estimation"
    return "other"


def _subplots(title: str, rows: int, cols: int, titles, *, height: int, note: str | None = None,
              **kw) -> go.Figure:
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), **kw)
    text = title if not note else f"{title}<br><sup>{note}</sup>"
    fig.update_layout(template=TEMPLATE, title=dict(text=text), height=height,
                      margin=dict(t=110 if note else 90))
    fig.update_annotations(font_size=14)
    return fig


def _axis(n: int) -> str:
    return "" if n == 1 else str(n)


def _guide(axis: int, *, y=None, x=None, text: str = "", line=None, opacity: float = 1.0,
           position: str = "right", above: bool = False) -> tuple[dict, dict | None]:
    """A horizontal (``y=``) or vertical (``x=``) line across subplot ``axis`` (1-based, in
    plotly's axis numbering), as a layout shape and an optional label. Much cheaper than
    ``add_hline`` when a figure is rebuilt at every training update."""
    a = _axis(axis)
    line = line or dict(color="#999", dash="dot", width=1)
    if y is not None:
        shape = dict(type="line", xref=f"x{a} domain", x0=0, x1=1, yref=f"y{a}", y0=y, y1=y,
                     line=line, opacity=opacity, layer="below")
        label = dict(xref=f"x{a} domain", x=1 if position == "right" else 0, yref=f"y{a}",
                     y=y, text=text, showarrow=False, font=_SMALL,
                     yanchor="bottom" if above else "top",
                     xanchor="right" if position == "right" else "left") if text else None
    else:
        shape = dict(type="line", yref=f"y{a} domain", y0=0, y1=1, xref=f"x{a}", x0=x, x1=x,
                     line=line, opacity=opacity, layer="below")
        label = None
    return shape, label


def _add_guides(fig: go.Figure, guides) -> None:
    shapes = [g[0] for g in guides]
    labels = [g[1] for g in guides if g[1] is not None]
    fig.update_layout(shapes=list(fig.layout.shapes) + shapes,
                      annotations=list(fig.layout.annotations) + labels)


def _runs(runs) -> list[dict]:
    if isinstance(runs, dict) and "rule" in runs:
        return [runs]
    if isinstance(runs, dict):
        return [dict(r, rule=r.get("rule", k)) for k, r in runs.items()]
    return list(runs)


def _finite(values) -> list:
    return [v for v in values if v is not None and math.isfinite(v)]


def mean_angle(per_layer: dict, index: int = -1) -> float:
    """The mean over layers of ``{layer: [degrees ...]}`` at one logged step (NaN if none)."""
    vals = _finite([v[index] for v in per_layer.values() if len(v)])
    return sum(vals) / len(vals) if vals else math.nan


# ----------------------------------------------------------------- notebook 05 ---

def training_curves(runs, *, title: str = "Training with each learning rule",
                    note: str | None = None, height: int = 720) -> go.Figure:
    """2×2 panels over SGD steps: training loss, test accuracy, the weight alignment angle
    per layer (W against Bᵀ) and the δ angle per layer (the error each layer sends back,
    against backprop's).

    ``runs`` is one run, a list of runs, or ``{rule: run}``. With one rule the layers get
    a colour ramp (input dark, classifier light); with several, each rule keeps its fixed
    colour and its layers run from faint (input) to solid (classifier). ``note`` is shown
    under the title (the settings used).
    """
    runs = _runs(runs)
    fig = _subplots(title, 2, 2, ("Training loss", "Test accuracy",
                                  "Weight angle between W and Bᵀ, per layer",
                                  "δ angle against backprop, per layer"),
                    height=height, note=note, vertical_spacing=0.14, horizontal_spacing=0.09)
    single = len(runs) == 1
    pending = []  # (trace, row, col), added in one call
    for run in runs:
        rule = run["rule"]
        name, color = label_for(rule), color_for(rule)
        steps = list(run.get("steps", []))
        common = dict(mode="lines+markers", marker=dict(size=5), legendgroup=rule)
        pending.append((go.Scatter(
            x=steps, y=list(run.get("train_loss", [])), name=name, line=dict(color=color),
            hovertemplate=f"{name}<br>step %{{x}}<br>train loss %{{y:.3f}}<extra></extra>",
            showlegend=not single, **common), 1, 1))
        pending.append((go.Scatter(
            x=steps, y=[100 * a for a in run.get("test_acc", [])], name=name,
            line=dict(color=color), showlegend=False,
            hovertemplate=f"{name}<br>step %{{x}}<br>test accuracy %{{y:.1f}}%<extra></extra>",
            **common), 1, 2))
        for col, key, what in ((1, "alignment", "W vs Bᵀ"), (2, "gradient", "δ vs backprop")):
            layers = list(run.get(key, {}).items())
            ramp = layer_colors(len(layers) + 1)[:len(layers)]  # stop short of yellow
            for i, (layer, values) in enumerate(layers):
                frac = i / max(len(layers) - 1, 1)
                style = (dict(color=ramp[i]) if single else
                         dict(color=color, width=1.2 + 1.3 * frac))
                n = min(len(steps), len(values))
                pending.append((go.Scatter(
                    x=steps[:n], y=list(values)[:n], mode="lines",
                    name=(layer if single else name), line=style,
                    opacity=1.0 if single else 0.35 + 0.65 * frac,
                    legendgroup=(f"layer:{layer}" if single else rule),
                    showlegend=single and col == 1,
                    hovertemplate=(f"{name} · {layer}<br>step %{{x}}<br>{what}: "
                                   "%{y:.1f}°<extra></extra>")), 2, col))
    fig.add_traces([t for t, _, _ in pending], rows=[r for _, r, _ in pending],
                   cols=[c for _, _, c in pending])
    _add_guides(fig, [_guide(2, y=10, text="chance"),
                      _guide(3, y=90, text="90° = unrelated", above=True),
                      _guide(4, y=90, text="90° = unrelated", above=True)])
    fig.update_xaxes(matches="x")
    fig.update_xaxes(title_text="SGD step", row=2)
    fig.update_yaxes(title_text="cross-entropy (nats)", row=1, col=1)
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=2, rangemode="tozero")
    angle_max = max([90.0] + [v for r in runs for k in ("alignment", "gradient")
                              for vs in r.get(k, {}).values() for v in _finite(vs)])
    for col in (1, 2):
        fig.update_yaxes(title_text="angle (degrees)", range=[-3, min(180, angle_max + 8)],
                         row=2, col=col)
    if single:
        fig.update_layout(legend=dict(title=dict(text=f"{label_for(runs[0]['rule'])}<br>"
                                                       "layer (input → output)")))
    else:
        fig.update_layout(legend=dict(title=dict(text="rule (faint: input layer,<br>"
                                                       "solid: classifier)")))
    return fig


def published_figure(nbkit_error: dict | None = None, *, height: int = 430,
                     nbkit_label: str = "nbkit, resnet20 (full mode)") -> go.Figure:
    """Published reference numbers, drawn dashed and labelled published: CIFAR-10 test
    error of backprop, FA and sign symmetry on ResNet-20/56 (left) and Akrout et al.'s
    MLP test accuracy for FA, weight mirror and Kolen-Pollack (right).

    ``nbkit_error`` (``{rule: test error %}``, e.g. from a full-mode run) is drawn as solid
    bars beside the published ResNet numbers.
    """
    fig = _subplots("Published results, for reference", 1, 2,
                    ("CIFAR-10 test error, ResNets (lower is better)",
                     "Akrout et al. 2019, MLP test accuracy"), height=height,
                    horizontal_spacing=0.12)
    _error_panel(fig, nbkit_error, nbkit_label, PUBLISHED_RESNET_ERROR)
    for i, (dataset, accs) in enumerate(PUBLISHED_MLP_ACC.items()):
        fig.add_trace(go.Scatter(
            x=[_tick(r) for r in accs], y=list(accs.values()),
            name=f"MLP on {dataset}, published", mode="lines+markers",
            line=dict(color="#444", dash=PUBLISHED_DASH, width=1.5),
            marker=dict(symbol=_SYMBOLS[i + 2], size=11, color=[color_for(r) for r in accs],
                        line=dict(color="#222", width=1)),
            text=[dataset] * len(accs),
            hovertemplate="%{x}<br>%{text}: %{y:.1f}% test accuracy (published)"
                          "<extra></extra>"), row=1, col=2)
    fig.update_yaxes(title_text="test accuracy (%)", range=[0, 100], row=1, col=2)
    fig.update_xaxes(tickangle=0, row=1, col=2)
    return fig


def provenance_text(merged: dict) -> str:
    """One line saying where a collected result comes from: variant, runs present, device,
    torch version, commit and dates."""
    prov = merged.get("provenance", {})
    commits = ", ".join(c[:10] for c in prov.get("git_commits", [])) or "unknown commit"
    dirty = " (uncommitted changes)" if prov.get("git_dirty") else ""
    runs = prov.get("runs", len(merged.get("runs", [])))
    declared = prov.get("runs_declared") or runs
    return (f"{merged.get('experiment', '?')} · variant {merged.get('variant', '?')} · "
            f"{runs} of {declared} runs · {', '.join(prov.get('devices', [])) or '?'} · "
            f"torch {', '.join(prov.get('torch', [])) or '?'} · commit {commits}{dirty} · "
            f"{prov.get('first_date', '?')[:10]} to {prov.get('last_date', '?')[:10]}")


def full_results_figure(merged: dict, *, height: int = 540) -> go.Figure:
    """A collected ``learning_rules`` result: final test error per rule beside the
    published ResNet-20 numbers (open markers), and the mean weight and δ angles over layers
    along training. The provenance is in the subtitle."""
    config = merged.get("config", {})
    model = config.get("model", "?")
    data = config.get("data", "?")
    fig = _subplots(f"Full-scale runs: {model} on {data}", 1, 3,
                    ("Test error (lower is better)", "Mean weight angle, W vs Bᵀ",
                     "Mean δ angle against backprop"),
                    height=height, note=provenance_text(merged), horizontal_spacing=0.08)
    by_rule = _results_by_rule(merged)
    order = _ordered(by_rule)
    errors = {r: 100 * (1 - sum(x["test_acc"] for x in by_rule[r]) / len(by_rule[r]))
              for r in order}
    _error_panel(fig, errors, "nbkit", {"ResNet-20": PUBLISHED_RESNET_ERROR["ResNet-20"]})
    for col, key in ((2, "weight_angles"), (3, "delta_angles")):
        for r in order:
            result = by_rule[r][0]
            angles = result.get(key) or {}
            layers = angles.get("layers", {})
            steps = angles.get("steps", [])
            ys = [mean_angle(layers, i) for i in range(len(steps))]
            fig.add_trace(go.Scatter(
                x=steps, y=ys, mode="lines", name=label_for(r), legendgroup=r,
                line=dict(color=color_for(r)), showlegend=col == 2,
                hovertemplate=f"{label_for(r)}<br>step %{{x}}<br>%{{y:.1f}}°<extra></extra>"),
                row=1, col=col)
    for col in (2, 3):
        fig.update_yaxes(title_text="angle (degrees)", rangemode="tozero", row=1, col=col)
        fig.update_xaxes(title_text="SGD step", row=1, col=col)
    return fig


def _results_by_rule(merged: dict) -> dict[str, list]:
    """``{rule: [result of each run]}`` of a collected ``learning_rules`` result."""
    by_rule: dict[str, list] = {}
    for run in merged.get("runs", []):
        rule = run.get("config", {}).get("rule", merged.get("config", {}).get("rule"))
        by_rule.setdefault(rule, []).append(run["result"])
    return by_rule


def final_by_rule(merged: dict) -> dict:
    """From a collected ``learning_rules`` result, per rule (in :data:`RULE_ORDER`): the
    final ``test_acc`` (a fraction, mean over seeds) and the final mean over layers of the
    weight angle, the δ angle and ‖B‖/‖W‖ (first seed)."""
    by_rule = _results_by_rule(merged)
    out = {}
    for r in _ordered(by_rule):
        first = by_rule[r][0]
        layers = {k: (first.get(k) or {}).get("layers", {})
                  for k in ("weight_angles", "delta_angles", "norm_ratios")}
        out[r] = {"test_acc": sum(x["test_acc"] for x in by_rule[r]) / len(by_rule[r]),
                  "weight_angle": mean_angle(layers["weight_angles"]),
                  "delta_angle": mean_angle(layers["delta_angles"]),
                  "norm_ratio": mean_angle(layers["norm_ratios"])}
    return out


def routes_full_figure(merged: dict, *, height: int = 480, width: int = 1000) -> go.Figure:
    """The two routes at full scale, from a collected ``learning_rules`` result: final test
    accuracy against the final mean weight angle (left) and δ angle (right) of every rule,
    local rules as dotted squares, weight estimation as circles."""
    final = final_by_rule(merged)
    fig = _subplots("Full-scale runs: accuracy against alignment, by route", 1, 2,
                    ("Weight angle, W vs Bᵀ (final, mean over layers)",
                     "δ angle against backprop (final, mean over layers)"),
                    height=height, note=provenance_text(merged), horizontal_spacing=0.1)
    for col, key in ((1, "weight_angle"), (2, "delta_angle")):
        for r, f in final.items():
            style = _route_style(r)
            fig.add_trace(go.Scatter(
                x=[f[key]], y=[100 * f["test_acc"]], mode="markers+text",
                text=[SHORT.get(r, r)], textposition="top center", name=label_for(r),
                legendgroup=style["legendgroup"], legendgrouptitle_text=style[
                    "legendgrouptitle_text"], showlegend=col == 1,
                marker=dict(symbol=style["symbol"], size=13, color=color_for(r),
                            line=dict(width=1, color="#222")),
                hovertemplate=(f"{label_for(r)}<br>{key.replace('_', ' ')} %{{x:.1f}}°"
                               f"<br>test accuracy %{{y:.1f}}%<br>‖B‖/‖W‖ "
                               f"{f['norm_ratio']:.2f}<extra></extra>")), row=1, col=col)
        fig.update_xaxes(title_text="angle (degrees)", range=[-5, 95], row=1, col=col)
        fig.update_yaxes(title_text="test accuracy (%)", row=1, col=col)
    fig.update_layout(width=width, legend=dict(groupclick="toggleitem"))
    return fig


RULE_ORDER = ("backprop", "feedback_alignment", "sign_symmetry", "weight_mirror",
              "information_alignment", "kolen_pollack", "activation_alignment",
              "symmetric_alignment")


# ----------------------------------------------------------------- notebook 06 ---

def _route_style(rule: str) -> dict:
    route = route_of(rule)
    group = {"reference": "reference", "local": "local rules",
             "estimation": "weight estimation", "other": "other"}[route]
    dash = "dot" if route == "local" else "solid"
    symbol = {"local": "square", "estimation": "circle"}.get(route, "diamond")
    return dict(legendgroup=group, legendgrouptitle_text=group, dash=dash, symbol=symbol)


def _nearest(values, x) -> int:
    return min(range(len(values)), key=lambda i: abs(values[i] - x))


def two_routes_figure(grid: dict, depth, sigma, *, rules=None,
                      height: int = 600, width: int = 1000) -> go.Figure:
    """Local rules against weight estimation. Left: test accuracy against depth at noise
    ``sigma``; middle: test accuracy against noise at ``depth``; right: the final weight
    angle (W vs Bᵀ, mean over layers) of each rule at (``depth``, ``sigma``). Local rules
    are dotted with square markers, weight-estimation rules solid with circles, backprop
    black. The selected depth and noise are marked."""
    depths, sigmas = list(grid["depths"]), list(grid["sigmas"])
    di, si = _nearest(depths, depth), _nearest(sigmas, sigma)
    d, s = depths[di], sigmas[si]
    rules = [r for r in (rules or grid["rules"]) if r in grid["test_acc"]]
    note = grid.get("note")
    fig = _subplots("Two routes to credit assignment without weight symmetry", 1, 3,
                    (f"Test accuracy against depth (σ = {s:g})",
                     f"Test accuracy against update noise (depth {d})",
                     f"Weight angle at the end (depth {d}, σ = {s:g})"),
                    height=height, note=note, horizontal_spacing=0.09,
                    column_widths=[0.36, 0.36, 0.28])
    fig.update_layout(width=width)
    for rule in rules:
        st = _route_style(rule)
        name, color = label_for(rule), color_for(rule)
        acc = grid["test_acc"][rule]
        common = dict(legendgroup=st["legendgroup"], mode="lines+markers",
                      line=dict(color=color, dash=st["dash"], width=2.2),
                      marker=dict(symbol=st["symbol"], size=8, color=color))
        fig.add_trace(go.Scatter(
            x=depths, y=[100 * acc[i][si] for i in range(len(depths))], name=name,
            legendgrouptitle_text=st["legendgrouptitle_text"],
            hovertemplate=(f"{name}<br>depth %{{x}}, σ = {s:g}<br>test accuracy "
                           "%{y:.1f}%<extra></extra>"), **common), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=sigmas, y=[100 * a for a in acc[di]], name=name, showlegend=False,
            hovertemplate=(f"{name}<br>depth {d}, σ = %{{x:g}}<br>test accuracy "
                           "%{y:.1f}%<extra></extra>"), **common), row=1, col=2)
    bars = [r for r in rules if r != "backprop" and r in grid.get("alignment", {})]
    fig.add_trace(go.Bar(
        y=[SHORT.get(r, r) for r in bars], x=[grid["alignment"][r][di][si] for r in bars],
        orientation="h", marker_color=[color_for(r) for r in bars], showlegend=False,
        name="weight angle", customdata=[label_for(r) for r in bars],
        text=[f"{grid['alignment'][r][di][si]:.0f}°" for r in bars], textposition="outside",
        cliponaxis=False,
        marker_pattern_shape=["." if route_of(r) == "local" else "" for r in bars],
        hovertemplate="%{customdata}<br>weight angle %{x:.1f}°<extra></extra>"), row=1, col=3)
    accs = [100 * a for r in rules for row in grid["test_acc"][r] for a in row
            if a is not None and math.isfinite(a)]
    top = max(accs + [10.0]) * 1.08
    mark = dict(color="#888", width=8)
    guides = [_guide(1, x=d, line=mark, opacity=0.18), _guide(2, x=s, line=mark, opacity=0.18)]
    if grid.get("chance") is not None:
        guides += [_guide(a, y=100 * grid["chance"], text="chance") for a in (1, 2)]
    _add_guides(fig, guides)
    fig.update_xaxes(title_text=grid.get("depth_label", "depth (weight layers)"), row=1, col=1,
                     tickvals=depths)
    fig.update_xaxes(title_text="noise σ (θ += lr·ξ, ξ ~ N(0, σ²) per step)", row=1, col=2,
                     tickvals=sigmas)
    fig.update_xaxes(title_text="angle between W and Bᵀ (degrees)", range=[0, 95], row=1,
                     col=3)
    fig.update_yaxes(autorange="reversed", row=1, col=3)
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=1, range=[0, top])
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=2, range=[0, top])
    # The legend sits under the panels, so that the figure fits a 1000 px notebook cell.
    fig.update_layout(legend=dict(groupclick="toggleitem", orientation="h", x=0, xanchor="left",
                                  y=-0.2, yanchor="top"),
                      margin=dict(b=150, r=40))
    return fig
