"""Apps of the conservation-laws notebook (``02_conservation_laws``): toggle what breaks
the laws, and Fig. 4.

- :func:`conservation_app`: a small net whose objective, biases, BatchNorm mode, residual
  block and activation are controls; draws Fig. 3 beside the layer totals, and prints
  the conservation report's verdict under the figure.
- :func:`fig4_app`: average score against layer size on a paper model (vgg16_bn).

The numbers come from :mod:`nbkit.studies.conservation` (cached on the control values,
so moving back to a setting seen before only redraws), the figures from
:mod:`nbkit.viz.probes`.
"""

from __future__ import annotations

import html

import ipywidgets as W

from ..studies import conservation as study
from ..viz import probes as vp
from ..viz.style import OBJECTIVE_LABELS
from .app import App

__all__ = ["conservation_app", "fig4_app"]


def _title(setting: dict) -> str:
    parts = [{"conv": "small conv net", "mlp": "MLP"}[setting["arch"]],
             setting["activation"].replace("_", " ")]
    if setting["bias"]:
        parts.append("biases")
    if setting["batchnorm"] != "none":
        parts.append(f"BatchNorm ({setting['batchnorm']} mode)")
    if setting["residual"]:
        parts.append("residual block")
    return f"{OBJECTIVE_LABELS[setting['objective']]} on a {', '.join(parts)}"


def _build_conservation(result: dict):
    return vp.conservation_figure(result["flows"], result["totals"],
                                  input_flow=result["input_flow"],
                                  cut_totals=result["cut_totals"],
                                  title=_title(result["setting"]))


def _describe_report(result: dict) -> str:
    lines = []
    for line in str(result["report"]).splitlines():
        color = "#1B5E20" if ": holds" in line else "#B00020" if "breaks" in line else "#333"
        lines.append(f"<span style='color:{color}'>{html.escape(line)}</span>")
    return "<div style='font-family:monospace;font-size:13px'>" + "<br>".join(lines) + "</div>"


def conservation_app(settings: study.Settings = study.QUICK, *, objective: str = "synflow",
                     arch: str = "conv", bias: bool = False, batchnorm: str = "none",
                     residual: bool = False, activation: str = "relu") -> App:
    """Fig. 3 and the layer totals of a small net, with a control for everything that
    can break the conservation laws; the report's verdict is printed under the figure."""
    style = {"description_width": "initial"}
    controls = {
        "objective": W.Dropdown(options=[(OBJECTIVE_LABELS[k], k) for k in study.OBJECTIVES],
                                value=objective, description="objective", style=style),
        "arch": W.Dropdown(options=[("small conv net", "conv"), ("MLP", "mlp")], value=arch,
                           description="network", style=style),
        "activation": W.Dropdown(options=[("ReLU", "relu"), ("leaky ReLU", "leaky_relu"),
                                          ("tanh", "tanh")], value=activation,
                                 description="activation", style=style),
        "bias": W.Checkbox(value=bias, description="nonzero biases", indent=False),
        "residual": W.Checkbox(value=residual, description="residual block", indent=False),
        "batchnorm": W.ToggleButtons(options=[("no BatchNorm", "none"), ("BN eval", "eval"),
                                              ("BN train", "train")], value=batchnorm,
                                     style={"button_width": "115px"}),
    }

    def compute(**values):
        return study.conservation(**values, settings=settings)

    return App(controls, compute, _build_conservation, describe=_describe_report)


def _build_fig4(result: dict):
    points = result["points"]
    return vp.layer_size_figure(
        points, title=(f"Fig. 4: {OBJECTIVE_LABELS[result['objective']]} on "
                       f"{result['model']} at init, slope {points['slope']:.3f}"))


def _describe_fig4(result: dict) -> str:
    slope = result["points"]["slope"]
    verdict = ("every layer carries the same total score, so single-shot pruning empties "
               "the largest layers first" if abs(slope + 1) < 0.05 else
               "the layer totals differ: this objective is not conserved layer by layer here")
    return f"fitted log-log slope <b>{slope:.3f}</b>: {html.escape(verdict)}"


def fig4_app(settings: study.Settings = study.QUICK, *, model: str = "vgg16_bn",
             objective: str = "synflow", models: tuple = study.FIG4_MODELS) -> App:
    """Average score against layer size (Fig. 4) for a chosen model and objective (the
    loss on ``settings.fig4_samples`` cifar10-mini images)."""
    options = list(dict.fromkeys([model, *models]))
    controls = {
        "model": W.Dropdown(options=options, value=model, description="model"),
        "objective": W.Dropdown(options=[(OBJECTIVE_LABELS[k], k) for k in study.OBJECTIVES],
                                value=objective, description="objective"),
    }

    def compute(model, objective):
        return study.fig4(model, objective, settings)

    return App(controls, compute, _build_fig4, describe=_describe_fig4)
