"""The apps of notebook 01 (``01_layer_collapse``): Fig. 1 of the SynFlow paper live, and
disconnection beside collapse.

The numbers come from :mod:`nbkit.studies.collapse` (every model is swept once, cached,
so moving a slider only looks a number up and redraws, well under 0.3 s) and the figures
from :mod:`nbkit.viz.pruning`. This module only builds the views and the controls.

>>> app = layer_collapse_app(collapse.QUICK)   # compression slider, pruner and model
>>> app.controls["log10_rho"].value = 3.0
>>> app.figure.layout.title.text
"""

from __future__ import annotations

import ipywidgets as W

from .. import device as _device
from ..studies import collapse
from ..studies.collapse import PRUNERS, describe_model
from ..viz import pruning as viz
from ..viz.style import label_for, new_figure
from .app import App

__all__ = ["collapse_view", "connectivity_view", "layer_collapse_app", "connectivity_app"]


def _vgg16_shaped(model: str) -> bool:
    return model.partition("/")[0] == "vgg16_bn"


def _published_label(model: str) -> str:
    width = "" if "/" not in model else "full-width "
    return f"published: {width}VGG-16-BN, CIFAR-100"


def _readable(results):
    return [r for r in results if "error" not in r]


def _errors(results) -> str:
    """The unreadable collected files, as caption lines."""
    return "".join(f"<br><span style='color:#B00020'>{r['error']}</span>" for r in results
                   if "error" in r)


def _reference_curves(model: str, method: str, results) -> dict | None:
    for r in _readable(results):
        if r["model"] == model.partition("/")[0] and method in r["summary"].get("density", {}):
            pts = r["summary"]["density"][method]
            keys = sorted(pts, key=float)
            return {"log10_rho": [float(k) for k in keys], "density": [pts[k] for k in keys],
                    "label": r["label"], "hover": r.get("hover", r["label"])}
    return None


# ------------------------------------------------------------------------ views

def _clamp(log10_rho: float, s: dict) -> tuple[float, str]:
    """The grid point nearest ``log10_rho``, and a note when it lies beyond the grid."""
    grid = s["log10_rho"]
    x = min(grid, key=lambda g: abs(g - float(log10_rho)))
    if float(log10_rho) > grid[-1] + 1e-9:
        return x, (f"{describe_model(s['model'])} keeps one weight per layer at ρ_max = N/L "
                   f"≈ 10^{s['rho_max_log10']:.2f}, so its grid stops at 10^{grid[-1]:g}")
    return x, ""


def collapse_view(s: dict, method: str, log10_rho: float, *, results=()) -> dict:
    """Keyword arguments of :func:`nbkit.viz.pruning.layer_collapse_figure` for one
    pruner of sweep ``s`` at one compression, plus a caption."""
    if method not in s["pruners"]:
        raise ValueError(f"pruner {method!r} is not in this sweep; choose from "
                         f"{list(s['pruners'])}")
    x, clamp = _clamp(log10_rho, s)
    p = s["pruners"][method]
    published = None
    if _vgg16_shaped(s["model"]):
        ref = collapse.published_fig1()
        published = {"log10_rho": ref["log10_rho"],
                     "density": ref["pruners"][method]["density_median"],
                     "label": _published_label(s["model"])}
    i = s["log10_rho"].index(x)
    crit = p["critical"]
    status = viz.layer_status(p["density"][i], effective=p["effective"][i],
                              disconnected=p["disconnected"][i])
    parts = [f"<b>{label_for(method)}</b> at ρ = 10^{x:g} (density {10 ** -x:.3g}): " + status,
             "critical compression " + ("none (collapses at once)" if crit is None
                                        else f"10^{crit:g}")]
    if published is not None:
        parts[-1] += (f" (published, CIFAR-100: "
                      f"10^{ref['pruners'][method]['critical_log10_rho']:g})")
    if clamp:
        parts.append(clamp)
    figure = dict(log10_rho=s["log10_rho"], layers=s["layers"], sizes=s["sizes"],
                  density=p["density"], method=method, current=x, effective=p["effective"],
                  disconnected=p["disconnected"], published=published,
                  reference=_reference_curves(s["model"], method, results),
                  model=describe_model(s["model"]), note=_note(s, method))
    return {"figure": figure, "caption": "<br>".join(parts) + _errors(results)}


def _note(s: dict, method: str | None = None) -> str:
    """"quick mode, SynFlow 20 iterations" (how ``method`` pruned; without a method, how
    the iterating pruners did)."""
    st = s["settings"]
    if method is None:
        extra = ", ".join(f"{label_for(m)} {p['iterations']} iterations"
                          for m, p in s["pruners"].items() if p["iterations"] > 1)
    elif s["pruners"][method]["iterations"] > 1:
        extra = f"{label_for(method)} {s['pruners'][method]['iterations']} iterations"
    elif s["pruners"][method]["needs_data"]:
        extra = f"{st['prune_samples']} {st['data']} samples"
    else:
        extra = "one shot"
    return f"{st['name']} mode" + (f", {extra}" if extra else "")


def connectivity_view(s: dict, log10_rho: float, *, results=()) -> dict:
    """Keyword arguments of :func:`nbkit.viz.pruning.connectivity_figure` for sweep
    ``s`` at one compression, plus a caption."""
    x, clamp = _clamp(log10_rho, s)
    i = s["log10_rho"].index(x)
    ps = s["pruners"]
    published = reference = None
    if _vgg16_shaped(s["model"]):
        ref = collapse.published_fig1()["pruners"]
        published = {m: ref[m]["critical_log10_rho"] for m in ps if m in ref}
    ref_label = "full run"
    for r in _readable(results):
        if r["model"] == s["model"].partition("/")[0]:
            reference = r["summary"].get("critical")
            ref_label = r["label"]
            break
    rows = [f"{label_for(m)}: effective density {p['effective'][i]:.3g}"
            + (" (disconnected)" if p["disconnected"][i] else "") for m, p in ps.items()]
    caption = (f"At ρ = 10^{x:g} (nominal density {10 ** -x:.3g}): " + "; ".join(rows)
               + (f"<br>{clamp}" if clamp else "") + _errors(results))
    figure = dict(log10_rho=s["log10_rho"], effective={m: p["effective"] for m, p in ps.items()},
                  critical={m: p["critical"] for m, p in ps.items()},
                  rho_max_log10=s["rho_max_log10"], current=x, model=describe_model(s["model"]),
                  disconnected={m: p["disconnected"] for m, p in ps.items()},
                  connected={m: p["connected"] for m, p in ps.items()}, published=published,
                  published_label=_published_label(s["model"]), reference=reference,
                  reference_label=ref_label, note=_note(s))
    return {"figure": figure, "caption": caption}


def _pending(model: str, frac: float) -> dict:
    return {"pending": True, "progress": frac, "model": model}


def _pending_figure(result):
    return new_figure(f"Pruning {describe_model(result['model'])} at every compression… "
                      f"{100 * result['progress']:.0f}%", "compression log10 ρ",
                      "layer density", height=300)


def _swept(model, settings, pruners, device):
    """Generator: a progress placeholder after each pruner while ``model``'s sweep runs
    (nothing when it is cached); returns the sweep."""
    steps = collapse.sweep_steps(model, settings, pruners=pruners, device=device)
    while True:
        try:
            frac = next(steps)
        except StopIteration as done:
            return done.value
        yield _pending(model, frac)


def _models(models, settings) -> tuple:
    models = tuple(models or settings.models)
    if not models:
        raise ValueError("offer at least one model (settings.models is empty)")
    return models


def _model_dropdown(models_, value, device=None):
    """Models by name; full-width ones warn that their first sweep is slow on a CPU."""
    slow = _device.get(device).type == "cpu"
    return W.Dropdown(options=[(describe_model(m) + (" (first sweep: minutes on a CPU)"
                                                     if slow and "/" not in m else ""), m)
                               for m in models_], value=value, description="model",
                      layout=W.Layout(width="max-content"))


def _rho_slider(value=3.0):
    return W.FloatSlider(value=value, min=0.0, max=6.0, step=0.25, description="log10 ρ",
                         continuous_update=False, readout_format=".2f")


def layer_collapse_app(settings: collapse.Settings = collapse.QUICK, *, models=None,
                       pruners=PRUNERS, log10_rho: float = 3.0, pruner: str = "magnitude",
                       device=None, results=None) -> App:
    """Fig. 1, live: a compression slider (log10 ρ from 0 to 6), a pruner dropdown and a
    model dropdown over :func:`nbkit.viz.pruning.layer_collapse_figure`. A model is
    swept once (a progress bar shows while it runs); then every control change is a
    lookup. ``results``: collected full runs (default:
    :func:`nbkit.studies.collapse.full_runs`)."""
    models_ = _models(models, settings)
    results = collapse.full_runs() if results is None else results

    def compute(log10_rho, pruner, model):
        s = yield from _swept(model, settings, pruners, device)
        yield {**collapse_view(s, pruner, log10_rho, results=results), "progress": 1.0}

    def build(result):
        if result.get("pending"):
            return _pending_figure(result)
        return viz.layer_collapse_figure(**result["figure"])

    controls = {"log10_rho": _rho_slider(log10_rho),
                "pruner": W.Dropdown(options=[(label_for(p), p) for p in pruners],
                                     value=pruner, description="pruner"),
                "model": _model_dropdown(models_, models_[0], device)}
    return App(controls, compute, build, describe=lambda r: r.get("caption", ""))


def connectivity_app(settings: collapse.Settings = collapse.QUICK, *, models=None,
                     pruners=PRUNERS, log10_rho: float = 3.0, device=None,
                     results=None) -> App:
    """Effective density and critical compression of every pruner: a compression slider
    and a model dropdown over :func:`nbkit.viz.pruning.connectivity_figure` (same cached
    sweeps as :func:`layer_collapse_app`)."""
    models_ = _models(models, settings)
    results = collapse.full_runs() if results is None else results

    def compute(log10_rho, model):
        s = yield from _swept(model, settings, pruners, device)
        yield {**connectivity_view(s, log10_rho, results=results), "progress": 1.0}

    def build(result):
        if result.get("pending"):
            return _pending_figure(result)
        return viz.connectivity_figure(**result["figure"])

    controls = {"log10_rho": _rho_slider(log10_rho),
                "model": _model_dropdown(models_, models_[0], device)}
    return App(controls, compute, build, describe=lambda r: r.get("caption", ""))
