"""Apps of the pruning notebooks: layer collapse (``01_layer_collapse``) and iterative
SynFlow (``03_synflow_iterations``).

The science is in :mod:`nbkit.pruning` and :mod:`nbkit.probes`; this module runs it over
a grid once (a *sweep*, cached per model and settings), so that moving a slider only
looks a number up and redraws (well under 0.3 s), and hands the numbers to
:mod:`nbkit.viz.pruning`.

>>> app = layer_collapse_app(settings=QUICK)   # compression slider, pruner and model
>>> app.controls["log10_rho"].value = 3.0
>>> app.figure.layout.title.text
"""

from __future__ import annotations

import copy
import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import ipywidgets as W
import numpy as np
import torch

from .. import data as _data
from .. import device as _device
from .. import models, probes, pruning, seed
from ..viz import pruning as viz
from ..viz.style import label_for, new_figure
from .app import App

__all__ = ["PRUNERS", "ITERATIONS", "Settings", "QUICK", "FULL", "QUICK_MODELS",
           "FULL_MODELS", "build_model", "describe_model", "log10_rho_grid", "sweep",
           "iter_sweep", "published_fig1", "full_results", "collapse_view", "connectivity_view",
           "iteration_study", "iterations_view", "layer_collapse_app", "connectivity_app",
           "synflow_iterations_app", "clear_cache"]

PRUNERS = ("random", "magnitude", "snip", "grasp", "synflow")
ITERATIONS = (1, 2, 5, 10, 20, 50, 100)
DATA_DIR = _data.DATA_DIR
# Fig. 7 of the SynFlow paper (VGG-19 at ImageNet init, ρ = 10³): the largest flow ratio
# of a run against its number of iterations.
PUBLISHED_MAX_RATIO = {"exponential": {1: 15.35, 70: 0.96, 100: 0.67}, "linear": {100: 14.4}}


@dataclass(frozen=True)
class Settings:
    """How the notebooks prune.

    Args:
        name: "quick" or "full", shown in the figures.
        synflow_iterations: SynFlow's iterations per pruning (the paper: 100).
        prune_samples: pruning samples of SNIP and GraSP (the paper: 10 × classes).
        step: grid step in log10 ρ (the paper: 0.25).
        max_log10_rho: the largest compression of the grid (capped at the model's ρ_max).
        critical_step: grid step of the critical-compression search of notebook 03.
        seed: seeds the model's initialisation and the random pruner.
        data: the dataset SNIP and GraSP draw their pruning samples from.
        cpu_threads: torch threads while sweeping on the CPU (None: leave as is). The
            quick models are small enough that one thread is fastest: on a busy 2-core
            machine, synchronising two threads per tiny op made sweeps 10-30x slower.
    """

    name: str = "quick"
    synflow_iterations: int = 20
    prune_samples: int = 100
    step: float = 0.25
    max_log10_rho: float = 6.0
    critical_step: float = 0.25
    seed: int = 0
    data: str = "cifar10-mini"
    cpu_threads: int | None = None

    def text(self) -> str:
        return (f"{self.name} mode: SynFlow {self.synflow_iterations} iterations, "
                f"SNIP/GraSP on {self.prune_samples} {self.data} samples, "
                f"log10 ρ step {self.step:g}")


QUICK = Settings("quick", synflow_iterations=20, cpu_threads=1)
FULL = Settings("full", synflow_iterations=100)
QUICK_MODELS = ("vgg16_bn/8", "vgg11_bn/8", "resnet20", "vgg16_bn")
FULL_MODELS = ("vgg16_bn", "vgg19_bn", "vgg11_bn", "resnet20")


# --------------------------------------------------------------------------- models

def build_model(name: str, num_classes: int = 10, device=None):
    """An nbkit model by name, or ``"<vgg>/<k>"``: that VGG with every width divided by k
    (same depth and layer plan, k² times fewer weights), e.g. ``"vgg16_bn/8"``."""
    if "/" not in name:
        return models.build(name, num_classes=num_classes, device=device)
    base, _, k = name.partition("/")
    plan_name = base.removesuffix("_bn")
    if plan_name not in models.VGG_PLANS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown model {name!r}: use an nbkit model name or "
                         "'<vgg name>/<width divisor>' such as 'vgg16_bn/8'")
    plan = [c if c == "M" else max(1, c // int(k)) for c in models.VGG_PLANS[plan_name]]
    model = models.init_weights(models.VGG(plan, num_classes, 3, base.endswith("_bn")))
    model.input_shape, model.arch = (3, 32, 32), base
    return model.to(_device.get(device)) if device is not None else model


def describe_model(name: str) -> str:
    """``"vgg16_bn/8"`` -> ``"vgg16_bn at 1/8 width"``."""
    base, _, k = name.partition("/")
    return f"{base} at 1/{k} width" if k else base


def log10_rho_grid(sizes, step: float = 0.25, top: float = 6.0) -> list[float]:
    """0, step, ... up to ``top`` or the model's maximal compression log10(N/L) (one weight
    per layer left), whichever is lower."""
    hi = min(top, math.log10(sum(sizes) / len(sizes)))
    return [round(i * step, 6) for i in range(int(math.floor(hi / step + 1e-9)) + 1)]


# --------------------------------------------------------------------------- sweeps

@contextmanager
def _threads(settings: Settings, device):
    """Run with ``settings.cpu_threads`` torch threads on the CPU, then restore."""
    n = settings.cpu_threads
    if n is None or device.type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


_SWEEPS: dict = {}
_STUDIES: dict = {}


def clear_cache() -> None:
    """Forget every cached sweep and iteration study."""
    _SWEEPS.clear()
    _STUDIES.clear()


def _critical(grid, failed) -> float | None:
    ok = [x for x, bad in zip(grid, failed) if not bad]
    return max(ok) if ok else None


def _finite(x):
    return x if math.isfinite(x) else None


def iter_sweep(model: str, settings: Settings = QUICK, *, pruners=PRUNERS, device=None):
    """Prune ``model`` at initialization with every pruner at every compression of the
    grid, as in Fig. 1 of the SynFlow paper: each point is a fresh copy of the same
    initialised network pruned once, globally (SynFlow with
    ``settings.synflow_iterations`` exponential iterations, the others in one shot).

    Yields ``(fraction done, sweep so far)`` after each pruner. The sweep is a dict:
    ``model``, ``layers``, ``sizes``, ``log10_rho`` (the grid), ``rho_max_log10``
    (log10 N/L), ``settings`` and, per pruner in ``pruners``, ``density``
    (``[point][layer]`` kept fractions), ``effective`` (effective density),
    ``collapsed``, ``disconnected``, ``critical`` (largest log10 ρ with no empty layer),
    ``connected`` (largest log10 ρ still connected) and ``seconds``.
    """
    unknown = [p for p in pruners if p not in pruning.methods()]
    if unknown:
        raise ValueError(f"unknown pruner(s) {unknown}; choose from {pruning.methods()}")
    dev = _device.get(device)
    with _threads(settings, dev):
        seed(settings.seed)
        dense = build_model(model, device=dev)
        params = pruning.prunable_parameters(dense)
        layers, sizes = list(params), [p.numel() for p in params.values()]
        dense_eff = pruning.effective_density(dense)
    grid = log10_rho_grid(sizes, settings.step, settings.max_log10_rho)
    out = {"model": model, "layers": layers, "sizes": sizes, "log10_rho": grid,
           "rho_max_log10": math.log10(sum(sizes) / len(sizes)), "settings": asdict(settings),
           "device": str(dev), "pruners": {}}
    batches = None
    for i, method in enumerate(pruners):
        t0 = time.perf_counter()
        if method in ("snip", "grasp") and batches is None:
            batches = _data.load(settings.data).pruning_batches(
                settings.prune_samples, device=dev, seed=settings.seed)
        its = settings.synflow_iterations if method == "synflow" else 1
        rows, eff, stopped = [[1.0] * len(layers)], [dense_eff], [None]
        with _threads(settings, dev):
            for x in grid[1:]:
                net = copy.deepcopy(dense)
                seed(settings.seed)
                if method == "synflow":
                    stopped.append(_synflow(net, 10.0 ** -x, its, "exponential", dev))
                else:
                    pruning.prune(net, method, 10.0 ** -x, iterations=its, data=batches,
                                  device=dev)
                    stopped.append(None)
                if stopped[-1] is None:
                    density = pruning.layer_density(net)
                    rows.append([density[n] for n in layers])
                    eff.append(pruning.effective_density(net))
                else:  # the run could not reach this compression: no densities to show
                    rows.append([math.nan] * len(layers))
                    eff.append(0.0)
        collapsed = [k is not None or min(r) == 0 for r, k in zip(rows, stopped)]
        disconnected = [e == 0 for e in eff]
        out["pruners"][method] = {
            "density": rows, "effective": eff, "collapsed": collapsed, "stopped": stopped,
            "disconnected": disconnected, "critical": _critical(grid, collapsed),
            "connected": _critical(grid, disconnected), "iterations": its,
            "seconds": time.perf_counter() - t0}
        yield (i + 1) / len(pruners), out


def _key(model, settings, pruners, device):
    return (model, settings, tuple(pruners), str(_device.get(device)))


def sweep(model: str, settings: Settings = QUICK, *, pruners=PRUNERS, device=None,
          progress: bool = False) -> dict:
    """The whole sweep of :func:`iter_sweep`, computed once per (model, settings,
    pruners, device) and cached."""
    key = _key(model, settings, pruners, device)
    if key not in _SWEEPS:
        steps = iter_sweep(model, settings, pruners=pruners, device=device)
        if progress:
            from tqdm.auto import tqdm
            steps = tqdm(steps, total=len(pruners), desc=f"sweep {model}")
        last = None
        for _, partial in steps:
            last = partial
        _SWEEPS[key] = last
    return _SWEEPS[key]


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
    nbkit.experiments``), each ``{"label", "model", "summary", "provenance", "file"}``;
    an empty list when there are none."""
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
        found.append({"model": doc.get("config", {}).get("model", "?"), "summary": summary,
                      "provenance": prov, "file": path.name,
                      "label": f"full run ({doc.get('variant', '?')}, {devices}, {date})"})
    return found


def _reference_curves(model: str, method: str, results) -> dict | None:
    for r in results:
        if r["model"] == model.partition("/")[0] and method in r["summary"].get("density", {}):
            pts = r["summary"]["density"][method]
            keys = sorted(pts, key=float)
            return {"log10_rho": [float(k) for k in keys], "density": [pts[k] for k in keys],
                    "label": r["label"]}
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
    elif method in ("snip", "grasp"):
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


def _sweep_steps(model, settings, pruners, device):
    """Generator: progress placeholders while a sweep runs, then nothing (it is cached)."""
    key = _key(model, settings, pruners, device)
    if key in _SWEEPS:
        return
    last = None
    for frac, partial in iter_sweep(model, settings, pruners=pruners, device=device):
        last = partial
        if frac < 1:
            yield _pending(model, frac)
    _SWEEPS[key] = last


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
        yield from _sweep_steps(model, settings, pruners, device)
        s = _SWEEPS[_key(model, settings, pruners, device)]
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
        yield from _sweep_steps(model, settings, pruners, device)
        s = _SWEEPS[_key(model, settings, pruners, device)]
        yield {**connectivity_view(s, log10_rho, results=results), "progress": 1.0}

    def build(result):
        if result.get("pending"):
            return _pending_figure(result)
        return viz.connectivity_figure(**result["figure"])

    controls = {"log10_rho": _rho_slider(log10_rho),
                "model": _model_dropdown(models_, _default_model(models_, settings), device)}
    return App(controls, compute, build, describe=lambda r: r.get("caption", ""))


# ------------------------------------------------------------ iterative SynFlow (03)

def iteration_study(model: str, settings: Settings = QUICK, *, log10_rho: float = 3.0,
                    iterations=ITERATIONS, schedules=("exponential", "linear"),
                    critical: bool = True, device=None, progress: bool = False) -> dict:
    """SynFlow on ``model`` at compression 10^log10_rho with every number of
    ``iterations`` and every schedule (cached).

    Returns ``{"model", "layers", "sizes", "log10_rho", "iterations", "rho_max_log10",
    "runs": {schedule: {n: run}}, "critical": {schedule: [log10 ρ per n]}}``, where a run
    holds, per iteration, ``layer_density`` ([iteration][layer]), ``density`` and the
    synaptic-flow ``ratio`` (:func:`nbkit.probes.flow_ratio`), plus ``max_ratio`` and
    ``collapsed``. ``critical`` (when asked) is
    :func:`nbkit.pruning.critical_compression` on a grid of ``settings.critical_step``.
    """
    iterations = tuple(int(n) for n in iterations)
    key = (model, settings, float(log10_rho), iterations, tuple(schedules), critical,
           str(_device.get(device)))
    if key in _STUDIES:
        return _STUDIES[key]
    dev = _device.get(device)
    seed(settings.seed)
    dense = build_model(model, device=dev)
    params = pruning.prunable_parameters(dense)
    layers, sizes = list(params), [p.numel() for p in params.values()]
    rho_max = math.log10(sum(sizes) / len(sizes))
    if not 0 < log10_rho <= rho_max:
        raise ValueError(f"log10_rho must be in (0, {rho_max:.2f}] for {model} (ρ_max = N/L);"
                         f" got {log10_rho}")
    with _threads(settings, dev):
        runs, crit = _iteration_runs(dense, layers, log10_rho, iterations, schedules,
                                     critical, settings, dev, progress, model)
    out = {"model": model, "layers": layers, "sizes": sizes, "log10_rho": float(log10_rho),
           "iterations": list(iterations), "rho_max_log10": rho_max, "runs": runs,
           "critical": crit if critical else None, "settings": asdict(settings)}
    _STUDIES[key] = out
    return out


def _iteration_runs(dense, layers, log10_rho, iterations, schedules, critical, settings, dev,
                    progress, model):
    jobs = [(s, n) for s in schedules for n in iterations]
    steps = jobs
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(jobs, desc=f"SynFlow runs on {model}")
    runs = {s: {} for s in schedules}
    crit = {s: [] for s in schedules}
    for s, n in steps:
        net, history = copy.deepcopy(dense), []
        stopped = _synflow(net, 10.0 ** -log10_rho, n, s, dev, history)
        ratio = probes.flow_ratio(history) if history else np.zeros(0)
        runs[s][n] = {"layer_density": [[h["layer_density"][k] for k in layers]
                                        for h in history],
                      "density": [h["density"] for h in history], "ratio": ratio.tolist(),
                      "max_ratio": float(np.max(ratio)) if ratio.size else float("nan"),
                      "collapsed": stopped is not None or pruning.collapsed(net),
                      "stopped": stopped}
        if critical:
            crit[s].append(_critical_synflow(dense, n, s, settings.critical_step, dev,
                                             lo=crit[s][-1] if crit[s] else None))
    return runs, crit


def _synflow(net, density, n, schedule, dev, history=None) -> int | None:
    """Prune ``net`` with ``n`` SynFlow iterations. Returns None, or the iteration at which
    the run had to stop because the network no longer connected input to output (R = 0,
    so SynFlow has no score left to rank); ``history`` then holds the iterations before."""
    try:
        pruning.prune(net, "synflow", density, iterations=n, schedule=schedule, device=dev,
                      history=history)
        return None
    except AssertionError:  # R = 0 in float32 and float64: disconnected mid-run
        pass
    if history is not None:
        history.clear()
    n_total = sum(p.numel() for p in pruning.prunable_parameters(net).values())
    alive = n_total - sum(int((~m).sum()) for m in pruning.masks(net).values())
    for k, count in enumerate(pruning.schedule_counts(alive, n_total, density, n, schedule)):
        step = []
        try:
            pruning.prune(net, "synflow", count / n_total, device=dev, history=step)
        except AssertionError:
            return k + 1
        if history is not None:
            history.extend({**h, "iteration": k + 1} for h in step)
    return None


def _critical_synflow(dense, n, schedule, step, dev, lo=None):
    """Largest log10 ρ on the grid 0, step, ..., log10(N/L) at which SynFlow with ``n``
    iterations leaves no layer empty (a run whose network disconnects before its last
    iteration fails too). More iterations collapse no sooner, so the bisection starts at
    ``lo`` (the critical compression of fewer iterations) when given and still holds."""
    sizes = [p.numel() for p in pruning.prunable_parameters(dense).values()]
    grid = log10_rho_grid(sizes, step)

    def fails(x):
        net = copy.deepcopy(dense)
        return (_synflow(net, 10.0 ** -x, n, schedule, dev) is not None
                or pruning.collapsed(net))

    if not fails(grid[-1]):
        return grid[-1]
    good, bad = 0, len(grid) - 1
    if lo in grid[1:-1] and not fails(lo):
        good = grid.index(lo)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (good, mid) if fails(grid[mid]) else (mid, bad)
    return grid[good] if good or not fails(grid[0]) else None


def iterations_view(study: dict, iterations: int, schedule: str) -> dict:
    """Keyword arguments of :func:`nbkit.viz.pruning.synflow_iterations_figure` for one
    run of ``study``, plus a caption."""
    if schedule not in study["runs"]:
        raise ValueError(f"schedule {schedule!r} is not in this study; choose from "
                         f"{list(study['runs'])}")
    if iterations not in study["runs"][schedule]:
        raise ValueError(f"{iterations} iterations were not run; choose from "
                         f"{study['iterations']}")
    run = study["runs"][schedule][iterations]
    its = study["iterations"]
    crit = study["critical"] or {}
    # A ratio is infinite once a layer has no flow left (it collapsed). The figure gets
    # a gap there, since widget messages cannot carry inf or NaN.
    max_ratio = {s: [_finite(study["runs"][s][n]["max_ratio"]) for n in its]
                 for s in study["runs"]}
    peak = run["max_ratio"]
    above = sum(r >= 1 for r in run["ratio"])
    caption = (f"{iterations} {schedule} iteration{'s' if iterations != 1 else ''} to "
               f"ρ = 10^{study['log10_rho']:g}: largest flow ratio {peak:.3g} ("
               + ("stays below 1: no iteration removes a whole layer's flow"
                  if peak < 1 else "above 1: an iteration can remove more than the weakest "
                  "layer's total flow") + ")"
               + (f"; above 1 in {above} of {len(run['ratio'])} iterations"
                  if peak >= 1 and len(run["ratio"]) > 1 else "")
               + f"; {'a layer collapsed' if run['collapsed'] else 'no layer collapsed'}.")
    if crit:
        c = crit[schedule][its.index(iterations)]
        caption += (" Critical compression with this schedule: "
                    + ("none." if c is None else f"10^{c:g}."))
    figure = dict(layers=study["layers"], sizes=study["sizes"],
                  layer_density=run["layer_density"], overall=run["density"],
                  ratio=run["ratio"], schedule=schedule, n=iterations,
                  log10_rho=study["log10_rho"], iterations=its, max_ratio=max_ratio,
                  critical={s: v for s, v in crit.items()}, rho_max_log10=study["rho_max_log10"],
                  published_max={s: PUBLISHED_MAX_RATIO[s] for s in study["runs"]
                                 if s in PUBLISHED_MAX_RATIO},
                  model=describe_model(study["model"]),
                  note=f"{study['settings']['name']} mode")
    return {"figure": figure, "caption": caption}


def synflow_iterations_app(study: dict, *, iterations: int = 100,
                           schedule: str = "exponential") -> App:
    """An iterations slider and a schedule toggle over the runs of ``study`` (from
    :func:`iteration_study`), drawn by :func:`nbkit.viz.pruning.synflow_iterations_figure`."""
    its = study["iterations"]
    if iterations not in its:
        iterations = its[-1]
    controls = {"iterations": W.SelectionSlider(options=its, value=iterations,
                                                description="iterations",
                                                continuous_update=False),
                "schedule": W.ToggleButtons(options=list(study["runs"]), value=schedule,
                                            description="schedule")}

    def compute(iterations, schedule):
        return iterations_view(study, iterations, schedule)

    return App(controls, compute, lambda r: viz.synflow_iterations_figure(**r["figure"]),
               describe=lambda r: r["caption"])
