"""Three diagrams where a picture beats the text, drawn from real numbers:

- :func:`network_diagram`: the units and weights of a small pruned network, kept weights
  on an input-output path, kept weights on none, and pruned ones (notebook 01: a network
  can be disconnected while no layer is empty);
- :func:`neuron_diagram`: one hidden unit with the synaptic saliency of each weight into
  and out of it (notebook 02: neuron-wise conservation);
- :func:`feedback_diagram`: one layer's forward path through W and backward path through
  B, and what B is under a learning rule (notebook 05).

Each is a plotly figure on hidden axes from 0 to 1, so it scales with its cell.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..rules import registry as _rules
from .style import PUBLISHED_DASH, TEMPLATE, label_for

__all__ = ["network_diagram", "neuron_diagram", "feedback_diagram"]

ON_PATH = "#1F4E79"    # a kept weight on some input-output path
OFF_PATH = "#E08A00"   # a kept weight on no path: it cannot change the output
PRUNED = "#D0D0D0"
POSITIVE, NEGATIVE = "#2E7D32", "#B00020"


def _canvas(title: str, height: int, width, note: str = "") -> go.Figure:
    fig = go.Figure(layout=dict(
        template=TEMPLATE, title=dict(text=title), height=height, width=width,
        xaxis=dict(visible=False, range=[-0.02, 1.02], fixedrange=True),
        yaxis=dict(visible=False, range=[-0.08, 1.05], fixedrange=True),
        margin=dict(l=20, r=20, t=70, b=20 if not note else 60), showlegend=False))
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=0, yshift=-10,
                           xanchor="left", yanchor="top", showarrow=False, align="left",
                           font=dict(size=13, color="#444"))
    return fig


def _column(n: int, x: float, top: float = 0.92, bottom: float = 0.08):
    ys = np.linspace(top, bottom, n) if n > 1 else np.array([(top + bottom) / 2])
    return np.full(n, x), ys


# ------------------------------------------------------------------- notebook 01 ---

def network_diagram(masks, effective, *, layer_names=None, title: str | None = None,
                    height: int = 420, width=None) -> go.Figure:
    """A small fully connected network, unit by unit, after pruning.

    Args:
        masks: one 0/1 array per layer, shaped (outputs, inputs) as a Linear weight.
        effective: the same shapes, 1 where a kept weight lies on some input-output path
            (:func:`nbkit.pruning.metrics.effective_masks`).
        layer_names: a label per layer (default "layer 1", ...).

    Kept weights on a path are dark and solid, kept weights on no path orange, pruned
    weights faint. Above each layer: how many of its weights it keeps.
    """
    masks = [np.asarray(m, dtype=float) for m in masks]
    effective = [np.asarray(e, dtype=float) for e in effective]
    if len(masks) != len(effective) or any(m.shape != e.shape for m, e in zip(masks, effective)):
        raise ValueError("masks and effective need the same number of layers and shapes")
    for k in range(1, len(masks)):
        if masks[k].shape[1] != masks[k - 1].shape[0]:
            raise ValueError(f"layer {k + 1} takes {masks[k].shape[1]} inputs but layer {k} "
                             f"has {masks[k - 1].shape[0]} outputs")
    sizes = [masks[0].shape[1]] + [m.shape[0] for m in masks]
    xs = np.linspace(0.08, 0.92, len(sizes))
    cols = [_column(n, x, top=0.84) for n, x in zip(sizes, xs)]
    names = layer_names or [f"layer {k}" for k in range(1, len(masks) + 1)]
    empty = [k + 1 for k, m in enumerate(masks) if not m.any()]
    on_path = sum(int(e.sum()) for e in effective)
    if title is None:
        if on_path == 0 and not empty:
            title = "Disconnected, yet no layer is empty: no path runs from input to output"
        elif empty:
            title = f"Layer {', '.join(map(str, empty))} empty: the network is cut"
        else:
            title = "Connected: some path of kept weights runs from input to output"
    fig = _canvas(title, height, width, note=(
        "dark: kept, on an input-output path · orange: kept, on no path (it cannot change "
        "the output) · grey: pruned"))
    for k, (m, e) in enumerate(zip(masks, effective)):
        (x0, y0), (x1, y1) = cols[k], cols[k + 1]
        for kind, color, dash, width_px in (("pruned", PRUNED, "dot", 1),
                                            ("off", OFF_PATH, "solid", 2.5),
                                            ("on", ON_PATH, "solid", 3)):
            sel = {"pruned": m == 0, "off": (m != 0) & (e == 0), "on": e != 0}[kind]
            ex, ey = [], []
            for j, i in zip(*np.nonzero(sel)):
                ex += [x0[i], x1[j], None]
                ey += [y0[i], y1[j], None]
            if ex:
                fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", hoverinfo="skip",
                                         line=dict(color=color, width=width_px, dash=dash)))
        kept = int(m.sum())
        fig.add_annotation(x=(xs[k] + xs[k + 1]) / 2, y=0.98, showarrow=False,
                           text=f"<b>{names[k]}</b><br>keeps {kept} of {m.size}",
                           font=dict(size=13, color="#B00020" if kept == 0 else "#222"))
    for k, (cx, cy) in enumerate(cols):
        role = "input" if k == 0 else "output" if k == len(cols) - 1 else "hidden"
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="markers", hovertemplate=f"{role} unit"
                                 "<extra></extra>",
                                 marker=dict(size=22, color="white",
                                             line=dict(color="#333", width=2))))
    fig.add_annotation(x=xs[0], y=-0.04, text="input", showarrow=False, font=dict(size=13))
    fig.add_annotation(x=xs[-1], y=-0.04, text="output", showarrow=False, font=dict(size=13))
    return fig


# ------------------------------------------------------------------- notebook 02 ---

def neuron_diagram(incoming, outgoing, *, unit: str = "a hidden unit", show: int = 6,
                   title: str | None = None, height: int = 420, width=None) -> go.Figure:
    """One hidden unit with the synaptic saliency S = θ ∂R/∂θ of each weight into it (left)
    and out of it (right); line width follows |S|, green is positive, red negative. The
    ``show`` largest on each side are drawn, the rest summed into one dashed line. The
    sums are printed under each side: neuron-wise conservation says they are equal."""
    inc = np.asarray(incoming, dtype=float).ravel()
    out = np.asarray(outgoing, dtype=float).ravel()
    if not inc.size or not out.size:
        raise ValueError("a unit needs at least one incoming and one outgoing weight")
    s_in, s_out = float(inc.sum()), float(out.sum())
    rel = abs(s_in - s_out) / max(abs(s_in), abs(s_out), 1e-300)
    if title is None:
        verb = "equals" if rel < 1e-6 else "differs from"
        title = f"Neuron-wise conservation at {unit}: what flows in {verb} what flows out"
    fig = _canvas(title, height, width)
    # widths follow single weights; a line that sums many is drawn dashed at most as wide
    biggest = max(float(np.abs(inc).max()), float(np.abs(out).max()), 1e-300)
    centre = (0.5, 0.5)
    for side, values, x in (("in", inc, 0.14), ("out", out, 0.86)):
        order = np.argsort(-np.abs(values))
        shown = [(f"w{i + 1}", values[i], "solid") for i in order[:show]]
        if values.size > show:
            rest = values[order[show:]]
            shown.append((f"{rest.size} more, summed", float(rest.sum()), "dash"))
        cx, cy = _column(len(shown), x, top=0.88, bottom=0.16)
        for (name, s, dash), px, py in zip(shown, cx, cy):
            color = POSITIVE if s >= 0 else NEGATIVE
            fig.add_trace(go.Scatter(
                x=[px, centre[0]], y=[py, centre[1]], mode="lines",
                line=dict(color=color, width=1 + 9 * min(1.0, abs(s) / biggest), dash=dash),
                hovertemplate=f"{name}: S = {s:.4g}<extra></extra>"))
            fig.add_annotation(x=px, y=py, text=f"{name}  S = {s:.3g}", showarrow=False,
                               xanchor="right" if side == "in" else "left",
                               xshift=-14 if side == "in" else 14,
                               font=dict(size=12, color=color))
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="markers", hoverinfo="skip",
                                 marker=dict(size=14, color="white",
                                             line=dict(color="#333", width=1.5))))
        total = s_in if side == "in" else s_out
        fig.add_annotation(x=x, y=0.0, showarrow=False, font=dict(size=14),
                           text=f"<b>{'incoming' if side == 'in' else 'outgoing'}: "
                                f"Σ S = {total:.6g}</b>")
    fig.add_trace(go.Scatter(x=[centre[0]], y=[centre[1]], mode="markers", hoverinfo="skip",
                             marker=dict(size=46, color="#FFF3C4",
                                         line=dict(color="#333", width=2))))
    fig.add_annotation(x=0.5, y=0.5, text="unit", showarrow=False, font=dict(size=13))
    fig.add_annotation(x=0.5, y=0.0, showarrow=False, font=dict(size=13, color="#444"),
                       text=f"relative difference {rel:.1e}")
    return fig


# ------------------------------------------------------------------- notebook 05 ---

def feedback_diagram(rule: str = "feedback_alignment", *, height: int = 380,
                     width=None) -> go.Figure:
    """One layer y = W x: the forward path through W (top, left to right) and the error's
    backward path (bottom, right to left) through the matrix B that ``rule`` uses in
    place of Wᵀ, with what B is under that rule (its registry entry's summary). Backprop
    ties B to W; rules that learn B draw the update that moves B; direct feedback
    alignment sends the network's output error e straight to the layer through D."""
    entry = _rules.RULES.get(rule)
    if entry is None:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(_rules.ordered())}")
    fig = _canvas(f"One layer, two paths: {label_for(rule)}", height, width, note=(
        f"<b>B under {label_for(rule)}:</b> {entry.summary}"))
    box = dict(type="rect", line=dict(color="#333", width=2), layer="below")
    fig.add_shape(x0=0.40, x1=0.60, y0=0.62, y1=0.90, fillcolor="#DCE9F5", **box)
    fig.add_annotation(x=0.5, y=0.76, text="<b>W</b>", showarrow=False, font=dict(size=22))
    direct = entry.feedback == "direct"
    fig.add_shape(x0=0.40, x1=0.60, y0=0.10, y1=0.38, fillcolor="#FBE3D6", **box)
    fig.add_annotation(x=0.5, y=0.24, text="<b>D</b>" if direct else "<b>B</b>",
                       showarrow=False, font=dict(size=22))
    arrow = dict(text="", showarrow=True, arrowhead=2, arrowsize=1.3, arrowwidth=2.5,
                 xref="x", yref="y", axref="x", ayref="y")
    fig.add_annotation(x=0.40, y=0.76, ax=0.12, ay=0.76, arrowcolor="#1F4E79", **arrow)
    fig.add_annotation(x=0.88, y=0.76, ax=0.60, ay=0.76, arrowcolor="#1F4E79", **arrow)
    fig.add_annotation(x=0.60, y=0.24, ax=0.88, ay=0.24, arrowcolor="#B00020", **arrow)
    fig.add_annotation(x=0.12, y=0.24, ax=0.40, ay=0.24, arrowcolor="#B00020", **arrow)
    for x, y, text, anchor in ((0.11, 0.76, "x", "right"), (0.89, 0.76, "y = W x", "left"),
                               (0.89, 0.24, "output error e" if direct else "δy", "left"),
                               (0.11, 0.24, "δx = D e" if direct else "δx = B δy", "right")):
        fig.add_annotation(x=x, y=y, text=text, showarrow=False, xanchor=anchor,
                           font=dict(size=16))
    ends = {"x": (0.12, 0.76), "y = W x": (0.88, 0.76),
            ("e" if direct else "δy"): (0.88, 0.24), ("δx = D e" if direct else "δx = B δy"):
            (0.12, 0.24)}
    fig.add_trace(go.Scatter(x=[p[0] for p in ends.values()], y=[p[1] for p in ends.values()],
                             mode="markers", text=list(ends),
                             hovertemplate="%{text}<extra></extra>",
                             marker=dict(size=9, color=["#1F4E79", "#1F4E79", "#B00020",
                                                        "#B00020"])))
    fig.add_annotation(x=0.5, y=0.97, text="forward", showarrow=False,
                       font=dict(size=13, color="#1F4E79"))
    fig.add_annotation(x=0.5, y=0.03, text="backward: the error each layer sends down",
                       showarrow=False, font=dict(size=13, color="#B00020"))
    link = {"transpose": "B = Wᵀ: the same weights, transported",
            "sign": "B = sign(Wᵀ): only W's signs cross",
            "learned": "B learns to align with Wᵀ",
            "fixed": "no link: B is fixed and random",
            "direct": "no link: D is fixed and random"}[entry.feedback]
    tied = entry.feedback in ("transpose", "sign", "learned")
    fig.add_shape(type="line", x0=0.5, x1=0.5, y0=0.62, y1=0.38, layer="below",
                  line=dict(color="#555" if tied else "#BBBBBB", width=2,
                            dash="solid" if entry.feedback == "transpose" else PUBLISHED_DASH
                            if tied else "dot"))
    fig.add_annotation(x=0.52, y=0.50, text=link, showarrow=False, xanchor="left",
                       font=dict(size=13, color="#333" if tied else "#888"))
    return fig
