"""The app of notebook 07 (``07_your_own_model``): pick a torchvision architecture and a
compression; every pruner prunes a fresh copy (:func:`nbkit.studies.own_model.prune_all`)
and :func:`nbkit.viz.own_model.own_model_figure` draws its layers and its effective
density.

>>> app = own_model_app(own_model.QUICK, model="mobilenet_v2", log10_rho=2.0)
"""

from __future__ import annotations

import html

import ipywidgets as W

from ..studies import own_model as study
from ..viz.own_model import own_model_figure
from ..viz.style import label_for
from .app import App

__all__ = ["own_model_app"]


def _describe(result: dict) -> str:
    parts = []
    for method, r in result["pruners"].items():
        name = f"<b>{html.escape(label_for(method))}</b>"
        if "error" in r:
            parts.append(f"{name} refused: {html.escape(r['error'])}")
            continue
        collapse = (f"empties layer{'s' if len(r['collapsed']) > 1 else ''} "
                    + ", ".join(map(str, r["collapsed"][:6]))
                    + (" ..." if len(r["collapsed"]) > 6 else "")
                    if r["collapsed"] else "no layer empty")
        eff = "n/a" if r["effective"] is None else f"{r['effective']:.3g}"
        parts.append(f"{name}: {collapse}; effective density {eff}"
                     + (" (scored on the linearised network: ReLU6 saturates)"
                        if r.get("linearized") else ""))
    if result.get("effective_error"):
        parts.append(f"Effective density: {html.escape(result['effective_error'])}")
    return "<br>".join(parts)


def own_model_app(settings: study.Settings = study.QUICK, *, model: str = "mobilenet_v2",
                  log10_rho: float = 2.0) -> App:
    """A model dropdown and a compression slider (log10 ρ); a new model or compression
    prunes with every pruner behind the progress bar (seconds), then comes from the
    cache."""
    controls = {
        "model": W.Dropdown(options=[(label, key) for key, (label, _) in study.MODELS.items()],
                            value=model, description="model"),
        "log10_rho": W.SelectionSlider(options=list(settings.log10_rhos), value=log10_rho,
                                       description="log10 ρ", continuous_update=False),
    }

    def compute(model, log10_rho):
        return study.prune_all(model, log10_rho, settings)

    return App(controls, compute, own_model_figure, describe=_describe)
