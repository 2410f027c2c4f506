"""The app of notebook 03 (``03_synflow_iterations``): how iterating SynFlow keeps every
layer alive. One *study* runs SynFlow on a model at one compression with every number of
iterations and both schedules, records the per-layer densities and the flow ratio of
each iteration (Fig. 7 of the SynFlow paper), and finds the critical compression of each
run; the app's slider and toggle then only pick a run.

>>> study = iteration_study("vgg16_bn/8", QUICK, log10_rho=3.0)
>>> app = synflow_iterations_app(study, iterations=100)
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict

import ipywidgets as W
import numpy as np

from .. import device as _device
from .. import probes, pruning, seed
from ..viz import pruning as viz
from .app import App
from .sweeps import (
    FULL,
    QUICK,
    Settings,
    build_model,
    describe_model,
    log10_rho_grid,
    prune_synflow,
)

__all__ = ["ITERATIONS", "PUBLISHED_MAX_RATIO", "QUICK", "FULL", "iteration_study",
           "iterations_view", "synflow_iterations_app", "describe_model", "clear_cache"]

ITERATIONS = (1, 2, 5, 10, 20, 50, 100)
# Fig. 7 of the SynFlow paper (VGG-19 at ImageNet init, ρ = 10³): the largest flow ratio
# of a run against its number of iterations.
PUBLISHED_MAX_RATIO = {"exponential": {1: 15.35, 70: 0.96, 100: 0.67}, "linear": {100: 14.4}}

_STUDIES: dict = {}


def clear_cache() -> None:
    """Forget every cached iteration study."""
    _STUDIES.clear()


def _finite(x):
    return x if math.isfinite(x) else None


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
    dev = _device.get(device)
    key = (model, settings, float(log10_rho), iterations, tuple(schedules), critical, str(dev))
    if key in _STUDIES:
        return _STUDIES[key]
    seed(settings.seed)
    dense = build_model(model, device=dev)
    params = pruning.prunable_parameters(dense)
    layers, sizes = list(params), [p.numel() for p in params.values()]
    rho_max = math.log10(sum(sizes) / len(sizes))
    if not 0 < log10_rho <= rho_max:
        raise ValueError(f"log10_rho must be in (0, {rho_max:.2f}] for {model} (ρ_max = N/L);"
                         f" got {log10_rho}")
    with _device.cpu_threads(settings.cpu_threads, dev):
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
        stopped = prune_synflow(net, 10.0 ** -log10_rho, n, s, dev, history)
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


def _critical_synflow(dense, n, schedule, step, dev, lo=None):
    """Largest log10 ρ on the grid 0, step, ..., log10(N/L) at which SynFlow with ``n``
    iterations leaves no layer empty (a run whose network disconnects before its last
    iteration fails too). More iterations collapse no sooner, so the bisection starts at
    ``lo`` (the critical compression of fewer iterations) when given and still holds."""
    sizes = [p.numel() for p in pruning.prunable_parameters(dense).values()]
    grid = log10_rho_grid(sizes, step)

    def fails(x):
        net = copy.deepcopy(dense)
        return (prune_synflow(net, 10.0 ** -x, n, schedule, dev) is not None
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
