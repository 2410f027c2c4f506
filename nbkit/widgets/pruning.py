"""The apps of notebook 01 (``01_layer_collapse``): Fig. 1 of the SynFlow paper live, and
disconnection beside collapse.

The science is in :mod:`nbkit.pruning` and :mod:`nbkit.probes`; :mod:`.sweeps` runs it
over a grid once per model (cached), so that moving a slider only looks a number up and
redraws (well under 0.3 s), and :mod:`nbkit.viz.pruning` draws it. This module adds the
published curves, the full-scale runs from data/results, and the apps.

>>> app = layer_collapse_app(settings=QUICK)   # compression slider, pruner and model
>>> app.controls["log10_rho"].value = 3.0
>>> app.figure.layout.title.text
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import ipywidgets as W

from .. import data as _data
from .. import device as _device
from .. import pruning
from ..viz import pruning as viz
from ..viz.style import label_for, new_figure
from .app import App
from .sweeps import (
    FULL,
    FULL_MODELS,
    PRUNERS,
    QUICK,
    QUICK_MODELS,
    Settings,
    build_model,
    clear_cache,
    describe_model,
    iter_sweep,
    log10_rho_grid,
    sweep,
    sweep_steps,
)

__all__ = ["PRUNERS", "Settings", "QUICK", "FULL", "QUICK_MODELS", "FULL_MODELS",
           "build_model", "describe_model", "log10_rho_grid", "sweep", "iter_sweep",
           "published_fig1", "full_results", "full_results_table", "collapse_view",
           "connectivity_view", "layer_collapse_app", "connectivity_app", "clear_cache"]

DATA_DIR = _data.DATA_DIR


# ------------------------------------------------------------ published and full runs

@lru_cache(maxsize=1)
def published_fig1(path=None) -> dict:
    """The SynFlow paper's Fig. 1 (VGG-16-BN, CIFAR-100), from data/reference."""
    path = Path(path) if path else DATA_DIR / "reference" / "synflow_fig1.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it ships with nbkit in data/reference/")
    return json.loads(path.read_text())


def _vgg16_shaped(model: str) -> bool:
    return model.partition("/")[0] == "vgg16_bn"


def _published_label(model: str) -> str:
    width = "" if "/" not in model else "full-width "
    return f"published: {width}VGG-16-BN, CIFAR-100"


def full_results(folder=None, pattern: str = "layer_collapse*.json") -> list[dict]:
    """Collected ``layer_collapse`` runs found in data/results (from ``python -m
    nbkit.experiments``), each ``{"label", "hover", "model", "summary", "provenance",
    "file"}`` (a short legend label, and the provenance for hover text); an empty list
    when there are none."""
    folder = Path(folder) if folder else DATA_DIR / "results"
    found = []
    for path in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        try:
            doc = json.loads(path.read_text())
            summary, prov = doc["summary"], doc.get("provenance", {})
        except (OSError, ValueError, KeyError):
            continue
        devices = ", ".join(prov.get("devices", [])) or "unknown device"
        date = str(prov.get("last_date", ""))[:10]
        seeds = max((len(v) for v in summary.get("critical_per_seed", {}).values()), default=0)
        commits = ", ".join(c[:7] for c in prov.get("git_commits", []) if c)
        found.append({"model": doc.get("config", {}).get("model", "?"), "summary": summary,
                      "provenance": prov, "file": path.name,
                      "label": f"nbkit full run ({seeds} seeds, {date})" if seeds
                      else f"nbkit full run ({date})",
                      "hover": f"{path.name}: {doc.get('variant', '?')} variant, {devices}, "
                               f"{date}" + (f", git {commits}" if commits else "")})
    return found


def full_results_table(result: dict) -> str:
    """One collected run set of :func:`full_results` as text: where, when and how long it
    ran, then per pruner the critical compression (median over seeds, and per seed), the
    largest compression at which the network is still connected, and the paper's value."""
    summary, prov = result["summary"], result["provenance"]
    published = published_fig1()["pruners"]
    devices = ", ".join(prov.get("devices", [])) or "an unknown device"
    minutes = float(prov.get("total_seconds") or 0) / 60
    lines = [f"{result['file']}: {result['model']}, {prov.get('runs', '?')} prunings on "
             f"{devices}, {str(prov.get('last_date', ''))[:10]}, {minutes:.0f} min",
             f"{'pruner':<10} {'critical log10 rho':>18} {'per seed':>16} "
             f"{'still connected':>16} {'published':>10}"]

    def show(x):
        return "none" if x is None else f"{x:.2f}"

    for method in [m for m in PRUNERS if m in summary.get("critical", {})]:
        seeds = summary.get("critical_per_seed", {}).get(method, {})
        per_seed = " ".join("none" if v is None else f"{v:g}" for v in seeds.values())
        pub = published.get(method, {}).get("critical_log10_rho")
        lines.append(f"{method:<10} {show(summary['critical'][method]):>18} {per_seed:>16} "
                     f"{show(summary.get('critical_disconnected', {}).get(method)):>16} "
                     f"{show(pub):>10}")
    if summary.get("maximal_log10_rho") is not None:
        lines.append(f"{'rho_max':<10} {summary['maximal_log10_rho']:>18.2f}")
    return "\n".join(lines)


def _reference_curves(model: str, method: str, results) -> dict | None:
    for r in results:
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
        ref = published_fig1()
        published = {"log10_rho": ref["log10_rho"],
                     "density": ref["pruners"][method]["density_median"],
                     "label": _published_label(s["model"])}
    i = s["log10_rho"].index(x)
    crit = p["critical"]
    stop = p.get("stopped", [None] * len(s["log10_rho"]))[i]
    status = (f"the run stopped at iteration {stop}: no input→output path was left, so the "
              "flow R = 0 and SynFlow had nothing to rank" if stop else
              viz.layer_status(p["density"][i], effective=p["effective"][i],
                               disconnected=p["disconnected"][i]))
    parts = [f"<b>{label_for(method)}</b> at ρ = 10^{x:g} (density {10 ** -x:.3g}): " + status,
             "critical compression " + ("none (collapses at once)" if crit is None
                                        else f"10^{crit:g}")]
    if published is not None:
        parts[-1] += (f" (published, CIFAR-100: "
                      f"10^{published_fig1()['pruners'][method]['critical_log10_rho']:g})")
    if clamp:
        parts.append(clamp)
    figure = dict(log10_rho=s["log10_rho"], layers=s["layers"], sizes=s["sizes"],
                  density=p["density"], method=method, current=x, effective=p["effective"],
                  disconnected=p["disconnected"], published=published,
                  reference=_reference_curves(s["model"], method, results),
                  model=describe_model(s["model"]), note=_note(s, method))
    return {"figure": figure, "caption": "<br>".join(parts)}


def _note(s: dict, method: str | None = None) -> str:
    st = s["settings"]
    if method == "synflow" or method is None:
        extra = f"SynFlow {st['synflow_iterations']} iterations"
    elif pruning.needs_data(method):
        extra = f"{st['prune_samples']} {st['data']} samples"
    else:
        extra = "one shot"
    return f"{st['name']} mode, {extra}"


def connectivity_view(s: dict, log10_rho: float, *, results=()) -> dict:
    """Keyword arguments of :func:`nbkit.viz.pruning.connectivity_figure` for sweep
    ``s`` at one compression, plus a caption."""
    x, clamp = _clamp(log10_rho, s)
    i = s["log10_rho"].index(x)
    ps = s["pruners"]
    published = reference = None
    if _vgg16_shaped(s["model"]):
        ref = published_fig1()["pruners"]
        published = {m: ref[m]["critical_log10_rho"] for m in ps if m in ref}
    ref_label = "full run"
    for r in results:
        if r["model"] == s["model"].partition("/")[0]:
            reference = r["summary"].get("critical")
            ref_label = r["label"]
            break
    rows = [f"{label_for(m)}: effective density {p['effective'][i]:.3g}"
            + (" (disconnected)" if p["disconnected"][i] else "") for m, p in ps.items()]
    caption = (f"At ρ = 10^{x:g} (nominal density {10 ** -x:.3g}): " + "; ".join(rows)
               + (f"<br>{clamp}" if clamp else ""))
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
    for frac in sweep_steps(model, settings, pruners=pruners, device=device):
        if frac < 1:
            yield _pending(model, frac)
    return sweep(model, settings, pruners=pruners, device=device)


def _default_model(models_, settings):
    return models_[0] if models_ else (QUICK_MODELS[0] if settings.name == "quick"
                                       else FULL_MODELS[0])


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


def layer_collapse_app(settings: Settings = QUICK, *, models=None, pruners=PRUNERS,
                       log10_rho: float = 3.0, pruner: str = "magnitude", device=None,
                       results=None) -> App:
    """Fig. 1, live: a compression slider (log10 ρ from 0 to 6), a pruner dropdown and a
    model dropdown over :func:`nbkit.viz.pruning.layer_collapse_figure`. A model is
    swept once (a progress bar shows while it runs); then every control change is a
    lookup. ``results``: collected full runs (default: :func:`full_results`)."""
    models_ = tuple(models or (QUICK_MODELS if settings.name == "quick" else FULL_MODELS))
    results = full_results() if results is None else results

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
                "model": _model_dropdown(models_, _default_model(models_, settings), device)}
    return App(controls, compute, build, describe=lambda r: r.get("caption", ""))


def connectivity_app(settings: Settings = QUICK, *, models=None, pruners=PRUNERS,
                     log10_rho: float = 3.0, device=None, results=None) -> App:
    """Effective density and critical compression of every pruner: a compression slider
    and a model dropdown over :func:`nbkit.viz.pruning.connectivity_figure` (same cached
    sweeps as :func:`layer_collapse_app`)."""
    models_ = tuple(models or (QUICK_MODELS if settings.name == "quick" else FULL_MODELS))
    results = full_results() if results is None else results

    def compute(log10_rho, model):
        s = yield from _swept(model, settings, pruners, device)
        yield {**connectivity_view(s, log10_rho, results=results), "progress": 1.0}

    def build(result):
        if result.get("pending"):
            return _pending_figure(result)
        return viz.connectivity_figure(**result["figure"])

    controls = {"log10_rho": _rho_slider(log10_rho),
                "model": _model_dropdown(models_, _default_model(models_, settings), device)}
    return App(controls, compute, build, describe=lambda r: r.get("caption", ""))
