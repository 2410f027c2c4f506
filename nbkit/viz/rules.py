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

from ..rules import registry
from ..studies.learning_rules import final_by_rule, results_by_rule
from ..studies.learning_rules import mean_over_layers as mean_angle
from ..studies.two_routes import x_value
from .panels import Panel, figure
from .style import PUBLISHED_DASH, color_for, label_for, layer_colors

__all__ = ["RULE_ORDER", "LOCAL_RULES", "ESTIMATION_RULES", "PUBLISHED_RESNET_ERROR",
           "PUBLISHED_MLP_ACC", "SHORT", "route_of", "training_curves", "published_figure",
           "full_results_figure", "provenance_text", "two_routes_figure", "mean_angle",
           "final_by_rule", "routes_full_figure", "sensitivity_figure", "claim_figure"]

# The rules' display order and [TR]'s two routes come from the registry (each rule's
# `order` and `route`): local rules learn B from what the layer sees; weight estimation
# rules use W (or W x) to estimate it. The builders ask the registry at call time, so a
# rule registered later is placed too; these tuples are the registry at import, for the
# notebooks.
RULE_ORDER = tuple(registry.ordered())
LOCAL_RULES = tuple(r for r in RULE_ORDER if registry.route(r) == "local")
ESTIMATION_RULES = tuple(r for r in RULE_ORDER if registry.route(r) == "estimation")
route_of = registry.route  # "reference" (backprop), "local", "estimation" or "other"

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
# A faint dotted guide line (chance, 90°) under the traces, labelled small at its right end.
_GUIDE = dict(line=dict(color="#999", dash="dot", width=1), layer="below", side="right",
              inset=0, font=dict(size=12, color="#666"))
SHORT = {r: registry.short(r) for r in registry.RULES}  # "FA" for feedback alignment


def _tick(rule: str) -> str:
    """A rule's display name broken over lines, for category axes."""
    return label_for(rule).replace(" ", "<br>")


def _error_panel(p: Panel, nbkit_error: dict | None, name: str, published: dict):
    """Test error per rule: nbkit's as solid bars, each published model's as open
    markers on the same categories (no lines: the rules are categories, not a series).
    Ticks are the short names (BP, FA, ...); hover and legend give the full ones."""
    nbkit_error = {r: v for r, v in (nbkit_error or {}).items() if v is not None}
    if nbkit_error:
        rules = registry.ordered(nbkit_error)
        p.add(type="bar", x=[registry.short(r) for r in rules], y=[nbkit_error[r] for r in rules],
              marker=dict(color=[color_for(r) for r in rules]), name=name, opacity=0.85,
              customdata=[label_for(r) for r in rules],
              hovertemplate="%{customdata}<br>test error %{y:.2f}% (nbkit)<extra></extra>")
    for i, (model, errors) in enumerate(published.items()):
        rules = registry.ordered(errors)
        p.add(x=[registry.short(r) for r in rules], y=[errors[r] for r in rules],
              name=f"{model}, published", mode="markers",
              # white-filled, so that a marker shows on a black (backprop) bar too
              marker=dict(symbol=_SYMBOLS[i], size=12, color="white",
                          line=dict(width=2, color="#222")),
              customdata=[label_for(r) for r in rules],
              hovertemplate=f"%{{customdata}}<br>{model}: %{{y:.1f}}% test error (published)"
                            "<extra></extra>")
    p.yaxis.update(title="test error (%)", rangemode="tozero")
    p.xaxis.update(tickangle=0, categoryorder="array",
                   categoryarray=[registry.short(r) for r in registry.ordered()])


def _runs(runs) -> list[dict]:
    if isinstance(runs, dict) and "rule" in runs:
        return [runs]
    if isinstance(runs, dict):
        return [dict(r, rule=r.get("rule", k)) for k, r in runs.items()]
    return list(runs)


def _finite(values) -> list:
    return [v for v in values if v is not None and math.isfinite(v)]



# ----------------------------------------------------------------- notebook 05 ---

def training_curves(runs, *, title: str = "Training with each learning rule",
                    note: str | None = None, height: int = 480) -> go.Figure:
    """2×2 panels over SGD steps: training loss, test accuracy, the weight alignment angle
    per layer (W against Bᵀ) and the δ angle per layer (the error each layer sends back,
    against backprop's).

    ``runs`` is one run, a list of runs, or ``{rule: run}``. With one rule the layers get
    a colour ramp (input dark, classifier light); with several, each rule keeps its fixed
    colour and its layers run from faint (input) to solid (classifier). ``note`` is shown
    under the title (the settings used).
    """
    runs = _runs(runs)
    loss, acc, weight, delta = (Panel(i) for i in range(1, 5))
    single = len(runs) == 1
    for run in runs:
        rule = run["rule"]
        name, color = label_for(rule), color_for(rule)
        steps = list(run.get("steps", []))
        common = dict(mode="lines+markers", marker=dict(size=5), legendgroup=rule)
        loss.add(x=steps, y=list(run.get("train_loss", [])), name=name, line=dict(color=color),
                 hovertemplate=f"{name}<br>step %{{x}}<br>train loss %{{y:.3f}}<extra></extra>",
                 showlegend=not single, **common)
        acc.add(x=steps, y=[100 * a for a in run.get("test_acc", [])], name=name,
                line=dict(color=color), showlegend=False,
                hovertemplate=f"{name}<br>step %{{x}}<br>test accuracy %{{y:.1f}}%<extra></extra>",
                **common)
        for panel, key, what in ((weight, "alignment", "W vs Bᵀ"),
                                 (delta, "gradient", "global δ vs backprop")):
            layers = list(run.get(key, {}).items())
            ramp = layer_colors(len(layers) + 1)[:len(layers)]  # stop short of yellow
            for i, (layer, values) in enumerate(layers):
                frac = i / max(len(layers) - 1, 1)
                style = (dict(color=ramp[i]) if single else
                         dict(color=color, width=1.2 + 1.3 * frac))
                n = min(len(steps), len(values))
                panel.add(x=steps[:n], y=list(values)[:n], mode="lines",
                          name=(layer if single else name), line=style,
                          opacity=1.0 if single else 0.35 + 0.65 * frac,
                          legendgroup=(f"layer:{layer}" if single else rule),
                          showlegend=single and panel is weight,
                          hovertemplate=(f"{name} · {layer}<br>step %{{x}}<br>{what}: "
                                         "%{y:.1f}°<extra></extra>"))
    acc.hline(10, text="chance", above=False, **_GUIDE)
    angle_max = max([90.0] + [v for r in runs for k in ("alignment", "gradient")
                              for vs in r.get(k, {}).values() for v in _finite(vs)])
    for panel in (weight, delta):
        panel.hline(90, text="90° = unrelated", **_GUIDE)
        panel.xaxis.update(title="SGD step")
        panel.yaxis.update(title="angle (degrees)", range=[-3, min(180, angle_max + 8)])
    loss.yaxis.update(title="cross-entropy (nats)")
    acc.yaxis.update(title="test accuracy (%)", rangemode="tozero")
    legend = (f"{label_for(runs[0]['rule'])}<br>layer (input → output)" if single else
              "rule (faint: input layer,<br>solid: classifier)")
    return figure(title, [loss, acc, weight, delta], cols=2, subtitle=note or "",
                  titles=["Training loss", "Test accuracy",
                          "Weight angle between W and Bᵀ, per layer",
                          "Global δ angle: δx against full backprop's, per layer"],
                  hspace=0.09, vspace=0.16, match_x=True, height=height,
                  margin=dict(t=110 if note else 90, b=50),
                  legend=dict(title=dict(text=legend)))


def published_figure(nbkit_error: dict | None = None, *, height: int = 430,
                     nbkit_label: str = "nbkit, resnet20 (full mode)") -> go.Figure:
    """Published reference numbers, drawn dashed and labelled published: CIFAR-10 test
    error of backprop, FA and sign symmetry on ResNet-20/56 (left) and Akrout et al.'s
    MLP test accuracy for FA, weight mirror and Kolen-Pollack (right).

    ``nbkit_error`` (``{rule: test error %}``, e.g. from a full-mode run) is drawn as solid
    bars beside the published ResNet numbers.
    """
    resnet, mlp = Panel(1), Panel(2)
    _error_panel(resnet, nbkit_error, nbkit_label, PUBLISHED_RESNET_ERROR)
    for i, (dataset, accs) in enumerate(PUBLISHED_MLP_ACC.items()):
        mlp.add(x=[_tick(r) for r in accs], y=list(accs.values()),
                name=f"MLP on {dataset}, published", mode="lines+markers",
                line=dict(color="#444", dash=PUBLISHED_DASH, width=1.5),
                marker=dict(symbol=_SYMBOLS[i + 2], size=11, color=[color_for(r) for r in accs],
                            line=dict(color="#222", width=1)),
                text=[dataset] * len(accs),
                hovertemplate="%{x}<br>%{text}: %{y:.1f}% test accuracy (published)"
                              "<extra></extra>")
    mlp.yaxis.update(title="test accuracy (%)", range=[0, 100])
    mlp.xaxis.update(tickangle=0)
    return figure("Published results, for reference", [resnet, mlp],
                  titles=["CIFAR-10 test error, ResNets (lower is better)",
                          "Akrout et al. 2019, MLP test accuracy"],
                  hspace=0.12, height=height, margin=dict(t=90))


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
    by_rule = results_by_rule(merged)
    order = registry.ordered(by_rule)
    errors = {r: 100 * (1 - sum(x["test_acc"] for x in by_rule[r]) / len(by_rule[r]))
              for r in order}
    error, weight, delta = Panel(1), Panel(2), Panel(3)
    _error_panel(error, errors, "nbkit", {"ResNet-20": PUBLISHED_RESNET_ERROR["ResNet-20"]})
    for panel, key in ((weight, "weight_angles"), (delta, "delta_angles")):
        for r in order:
            result = by_rule[r][0]
            angles = result.get(key) or {}
            layers = angles.get("layers", {})
            steps = angles.get("steps", [])
            ys = [mean_angle(layers, i) for i in range(len(steps))]
            panel.add(x=steps, y=ys, mode="lines", name=label_for(r), legendgroup=r,
                      line=dict(color=color_for(r)), showlegend=panel is weight,
                      hovertemplate=(f"{label_for(r)}<br>step %{{x}}<br>%{{y:.1f}}°"
                                     "<extra></extra>"))
        panel.yaxis.update(title="angle (degrees)", rangemode="tozero")
        panel.xaxis.update(title="SGD step")
    return figure(f"Full-scale runs: {model} on {data}", [error, weight, delta],
                  subtitle=provenance_text(merged),
                  titles=["Test error (lower is better)", "Mean weight angle, W vs Bᵀ",
                          "Mean global δ angle against backprop"],
                  hspace=0.08, height=height, margin=dict(t=110))


def routes_full_figure(merged: dict, *, height: int = 480, width: int = 1000) -> go.Figure:
    """The two routes at full scale, from a collected ``learning_rules`` result: final test
    accuracy against the final mean weight angle (left) and δ angle (right) of every rule,
    local rules as dotted squares, weight estimation as circles."""
    final = final_by_rule(merged)
    panels = [Panel(1), Panel(2)]
    for panel, key in zip(panels, ("weight_angle", "delta_angle")):
        for r, f in final.items():
            style = _route_style(r)
            panel.add(x=[f[key]], y=[100 * f["test_acc"]], mode="markers+text",
                      text=[registry.short(r)], textposition="top center", name=label_for(r),
                      legendgroup=style["group"], legendgrouptitle=dict(text=style["group"]),
                      showlegend=panel is panels[0],
                      marker=dict(symbol=style["symbol"], size=13, color=color_for(r),
                                  line=dict(width=1, color="#222")),
                      hovertemplate=(f"{label_for(r)}<br>{key.replace('_', ' ')} %{{x:.1f}}°"
                                     f"<br>test accuracy %{{y:.1f}}%<br>‖B‖/‖W‖ "
                                     f"{f['norm_ratio']:.2f}<extra></extra>"))
        panel.xaxis.update(title="angle (degrees)", range=[-5, 95])
        panel.yaxis.update(title="test accuracy (%)")
    return figure("Full-scale runs: accuracy against alignment, by route", panels,
                  subtitle=provenance_text(merged),
                  titles=["Weight angle, W vs Bᵀ (final, mean over layers)",
                          "Global δ angle against backprop (final, mean over layers)"],
                  hspace=0.1, height=height, width=width, margin=dict(t=110),
                  legend=dict(groupclick="toggleitem"))


# ----------------------------------------------------------------- notebook 06 ---

def _route_style(rule: str) -> dict:
    """How a rule is drawn by its route: a legend group, a dash and a marker symbol."""
    route = registry.route(rule)
    group = {"reference": "reference", "local": "local rules",
             "estimation": "weight estimation", "other": "other"}[route]
    dash = "dot" if route == "local" else "solid"
    symbol = {"local": "square", "estimation": "circle"}.get(route, "diamond")
    return dict(group=group, dash=dash, symbol=symbol)


def _nearest(values, x) -> int:
    return min(range(len(values)), key=lambda i: abs(values[i] - x))


def two_routes_figure(grid: dict, depth, sigma, *, rules=None,
                      height: int = 500, width: int = 1000) -> go.Figure:
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
    by_depth, by_noise, angles = Panel(1), Panel(2), Panel(3)
    for rule in rules:
        st = _route_style(rule)
        name, color = label_for(rule), color_for(rule)
        acc = grid["test_acc"][rule]
        common = dict(legendgroup=st["group"], mode="lines+markers",
                      line=dict(color=color, dash=st["dash"], width=2.2),
                      marker=dict(symbol=st["symbol"], size=8, color=color))
        by_depth.add(x=depths, y=[100 * acc[i][si] for i in range(len(depths))], name=name,
                     legendgrouptitle=dict(text=st["group"]),
                     hovertemplate=(f"{name}<br>depth %{{x}}, σ = {s:g}<br>test accuracy "
                                    "%{y:.1f}%<extra></extra>"), **common)
        by_noise.add(x=sigmas, y=[100 * a for a in acc[di]], name=name, showlegend=False,
                     hovertemplate=(f"{name}<br>depth {d}, σ = %{{x:g}}<br>test accuracy "
                                    "%{y:.1f}%<extra></extra>"), **common)
    # the reference (backprop, B = Wᵀ) has no angle to show
    bars = [r for r in rules
            if registry.route(r) != "reference" and r in grid.get("alignment", {})]
    angles.add(type="bar", y=[registry.short(r) for r in bars],
               x=[grid["alignment"][r][di][si] for r in bars], orientation="h",
               marker=dict(color=[color_for(r) for r in bars],
                           pattern=dict(shape=["." if registry.route(r) == "local" else ""
                                               for r in bars])),
               showlegend=False, name="weight angle", customdata=[label_for(r) for r in bars],
               text=[f"{grid['alignment'][r][di][si]:.0f}°" for r in bars],
               textposition="outside", cliponaxis=False,
               hovertemplate="%{customdata}<br>weight angle %{x:.1f}°<extra></extra>")
    accs = [100 * a for r in rules for row in grid["test_acc"][r] for a in row
            if a is not None and math.isfinite(a)]
    top = max(accs + [10.0]) * 1.08
    mark = dict(color="#888", width=8)
    by_depth.vline(d, line=mark, opacity=0.18, layer="below")
    by_noise.vline(s, line=mark, opacity=0.18, layer="below")
    for panel in (by_depth, by_noise):
        if grid.get("chance") is not None:
            panel.hline(100 * grid["chance"], text="chance", above=False, **_GUIDE)
        panel.yaxis.update(title="test accuracy (%)", range=[0, top])
    by_depth.xaxis.update(title=grid.get("depth_label", "depth (weight layers)"),
                          tickvals=depths)
    by_noise.xaxis.update(title="noise σ (θ += lr·ξ, ξ ~ N(0, σ²) per step)", tickvals=sigmas)
    angles.xaxis.update(title="angle between W and Bᵀ (degrees)", range=[0, 95])
    angles.yaxis.update(autorange="reversed")
    # The legend sits under the panels, so that the figure fits a 1000 px notebook cell.
    return figure("Two routes to credit assignment without weight symmetry",
                  [by_depth, by_noise, angles], subtitle=note or "",
                  titles=[f"Test accuracy against depth (σ = {s:g})",
                          f"Test accuracy against update noise (depth {d})",
                          f"Weight angle at the end (depth {d}, σ = {s:g})"],
                  widths=[0.36, 0.36, 0.28], hspace=0.09, height=height, width=width,
                  legend=dict(groupclick="toggleitem", orientation="h", x=0, xanchor="left",
                              y=-0.2, yanchor="top"),
                  margin=dict(t=110 if note else 90, b=150, r=40))


# ------------------------------------------------------------- notebook 06: β/α ---

_ARCH_DASH = ("solid", "dash", "dot", "dashdot")


def sensitivity_figure(grid: dict, ratio: float, *, height: int = 470,
                       width: int = 1000) -> go.Figure:
    """[TR]'s fragility claim from a :func:`nbkit.studies.sensitivity.sensitivity_grid`:
    test accuracy, the local δ angle (B δy against Wᵀ δy) and ‖B‖/‖W‖ of each rule
    against β/α (log scale), one line per rule (its colour) and architecture (its dash),
    with the chosen β/α marked. A rule whose curves stay flat tolerates a mistuned β/α;
    one whose best β/α moves between architectures does not transfer."""
    ratios = [float(x) for x in grid["ratios"]]
    i = _nearest([math.log10(x) for x in ratios], math.log10(ratio))
    acc, angle, norm = Panel(1), Panel(2), Panel(3)
    for rule in grid["rules"]:
        for k, arch in enumerate(grid["architectures"]):
            name = f"{label_for(rule)}, {arch}"
            common = dict(x=ratios, mode="lines+markers", legendgroup=name,
                          line=dict(color=color_for(rule), dash=_ARCH_DASH[k % 4], width=2.2),
                          marker=dict(size=7, color=color_for(rule)))
            acc.add(y=[100 * a for a in grid["test_acc"][rule][arch]], name=name,
                    hovertemplate=f"{name}<br>β/α %{{x:g}}<br>test accuracy %{{y:.1f}}%"
                                  "<extra></extra>", **common)
            angle.add(y=grid["local_delta_angle"][rule][arch], name=name, showlegend=False,
                      hovertemplate=f"{name}<br>β/α %{{x:g}}<br>local δ angle %{{y:.1f}}°"
                                    "<extra></extra>", **common)
            norm.add(y=grid["norm_ratio"][rule][arch], name=name, showlegend=False,
                     hovertemplate=f"{name}<br>β/α %{{x:g}}<br>‖B‖/‖W‖ %{{y:.2f}}"
                                   "<extra></extra>", **common)
    for panel in (acc, angle, norm):
        panel.xaxis.update(type="log", title="β/α", tickvals=ratios,
                           ticktext=[f"{x:g}" for x in ratios])
        panel.vline(ratios[i])
    acc.yaxis.update(title="test accuracy (%)", rangemode="tozero")
    angle.yaxis.update(title="local δ angle (degrees)", range=[0, 95])
    norm.yaxis.update(title="‖B‖/‖W‖", type="log")
    norm.hline(1.0, text="‖B‖ = ‖W‖", side="right")
    return figure(f"Weight mirror against information alignment as β/α moves "
                  f"(marked: β/α = {ratios[i]:g})", [acc, angle, norm],
                  subtitle=grid.get("note", ""),
                  titles=["Test accuracy", "Local δ angle: B δy against Wᵀ δy",
                          "Length of B against W"],
                  hspace=0.08, height=height, width=width, margin=dict(t=110, b=70),
                  legend=dict(orientation="h", x=0, y=-0.22, yanchor="top"))


# ---------------------------------------------------- notebook 06: shipped studies ---

def claim_figure(rows: list, x: str, *, title: str, note: str = "", height: int = 460,
                 width: int = 1000) -> go.Figure:
    """A collected two-routes study (the ``rows`` of its summary) against ``x``
    (``"depth"``, ``"sigma"`` or ``"ratio"`` = β/α): test accuracy (left) and each rule's
    gap to backprop at the same x and model (right, when backprop was run), one line per
    rule (and per model when there are several: solid, dashed, ...), local rules dotted
    by route. A run that diverged is left out and named in the note."""
    models = sorted({r["model"] for r in rows})
    split = x != "depth" and len(models) > 1
    base = {(r["model"], x_value(r, x)): r["top1"] for r in rows
            if registry.route(r["rule"]) == "reference" and r["top1"] is not None}
    lines: dict = {}
    for r in rows:
        key = (r["rule"], r["model"] if split else "")
        lines.setdefault(key, []).append(r)
    acc, gap = Panel(1), Panel(2)
    for (rule, model), pts in sorted(lines.items(), key=lambda kv: (
            registry.ordered(list({k[0] for k in lines})).index(kv[0][0]), kv[0][1])):
        pts = sorted((p for p in pts if p["top1"] is not None), key=lambda p: x_value(p, x))
        xs = [x_value(p, x) for p in pts]
        style = _route_style(rule)
        name = label_for(rule) + (f", {model}" if model else "")
        dash = _ARCH_DASH[models.index(model) % 4] if model else style["dash"]
        common = dict(mode="lines+markers", name=name, legendgroup=name,
                      line=dict(color=color_for(rule), dash=dash, width=2.2),
                      marker=dict(symbol=style["symbol"], size=8, color=color_for(rule)))
        acc.add(x=xs, y=[p["top1"] for p in pts], hovertemplate=(
            f"{name}<br>{x} %{{x:g}}<br>test accuracy %{{y:.1f}}%<extra></extra>"), **common)
        gaps = [(xv, base[(p["model"], xv)] - p["top1"]) for p, xv in zip(pts, xs)
                if (p["model"], xv) in base]
        if base and registry.route(rule) != "reference" and gaps:
            gap.add(x=[g[0] for g in gaps], y=[g[1] for g in gaps], showlegend=False,
                    hovertemplate=(f"{name}<br>{x} %{{x:g}}<br>backprop minus rule "
                                   "%{y:.1f} pts<extra></extra>"), **common)
    label = {"depth": "depth (ResNet layers)", "sigma": "update noise σ", "ratio": "β/α"}[x]
    for p in (acc, gap):
        p.xaxis.update(title=label, **({"type": "log"} if x == "ratio" else {}))
        if x != "ratio":
            p.xaxis.update(tickvals=sorted({x_value(r, x) for r in rows}))
    acc.yaxis.update(title="test accuracy (%)", rangemode="tozero")
    gap.yaxis.update(title="backprop minus rule (points)")
    gap.hline(0.0, text="backprop", side="right")
    diverged = sorted({label_for(r["rule"]) for r in rows if r["top1"] is None})
    if diverged:
        note = (note + "; " if note else "") + "diverged (not drawn): " + ", ".join(diverged)
    return figure(title, [acc, gap], subtitle=note,
                  titles=["Test accuracy", "Gap to backprop at the same setting"],
                  hspace=0.1, height=height, width=width, margin=dict(t=110, b=110),
                  legend=dict(orientation="h", x=0, y=-0.28, yanchor="top"))
