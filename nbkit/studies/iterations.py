"""Fig. 7 of the SynFlow paper: why iterating SynFlow keeps every layer alive.

One study prunes a model at one compression with every number of iterations and both
schedules, records each iteration's layer densities and synaptic-flow ratio, and finds
each run's critical compression. Notebook 03's slider and toggle then only pick a run.

>>> study = iteration_study(QUICK)                   # vgg16_bn at 1/8 width, ρ = 10³
>>> study["runs"]["exponential"][100]["max_ratio"]     # below 1: no layer can empty
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from .. import device as _device
from .. import probes, pruning, seed
from . import collapse
from .collapse import build_model, log10_rho_grid
from .common import cached, for_mode

__all__ = ["ITERATIONS", "SCHEDULES", "PUBLISHED_MAX_RATIO", "Settings", "QUICK", "FULL",
           "MODES", "settings", "iteration_study"]

ITERATIONS = (1, 2, 5, 10, 20, 50, 100)
SCHEDULES = tuple(pruning.SCHEDULES)  # exponential, linear
# Fig. 7 of the SynFlow paper (VGG-19 at ImageNet init, ρ = 10³): the largest flow ratio
# of a run against its number of iterations.
PUBLISHED_MAX_RATIO = {"exponential": {1: 15.35, 70: 0.96, 100: 0.67}, "linear": {100: 14.4}}
SYNFLOW = "synflow"  # the pruner this study is about


@dataclass(frozen=True)
class Settings(collapse.Settings):
    """The pruning settings of :class:`nbkit.studies.collapse.Settings`, plus what the
    iteration study prunes: ``model`` to compression 10^``log10_rho`` with every number
    of ``iterations`` and every one of ``schedules``."""

    model: str = "vgg16_bn/8"
    log10_rho: float = 3.0
    iterations: tuple = ITERATIONS
    schedules: tuple = SCHEDULES


QUICK = Settings(**{**collapse.QUICK.as_dict(), "model": "vgg16_bn/8"})
FULL = Settings(**{**collapse.FULL.as_dict(), "model": "vgg19_bn"})
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL`, with ``changes``."""
    return for_mode(MODES, mode, **changes)


def iteration_study(settings: Settings = QUICK, *, critical: bool = True, device=None,
                    progress: bool = False) -> dict:
    """SynFlow on ``settings.model`` at compression 10^``settings.log10_rho`` with every
    number of ``settings.iterations`` and every schedule of ``settings.schedules``
    (cached).

    Returns ``{"model", "layers", "sizes", "log10_rho", "iterations", "rho_max_log10",
    "runs": {schedule: {n: run}}, "critical": {schedule: [log10 ρ per n]}}``, where a run
    holds, per iteration, ``layer_density`` ([iteration][layer]), ``density`` and the
    synaptic-flow ``ratio`` (:func:`nbkit.probes.flow_ratio`), plus ``max_ratio`` and
    ``collapsed``. ``critical`` (when asked) is the largest compression on a grid of
    ``settings.critical_step`` at which the run leaves no layer empty.
    """
    return _study(settings, bool(critical), _device.get(device), progress=progress)


@cached(maxsize=8)
def _study(settings, critical, dev, *, progress=False):
    model, log10_rho = settings.model, float(settings.log10_rho)
    iterations, schedules = tuple(int(n) for n in settings.iterations), settings.schedules
    unknown = [s for s in schedules if s not in SCHEDULES]
    if unknown:
        raise ValueError(f"unknown schedule(s) {unknown}; choose from {list(SCHEDULES)}")
    seed(settings.seed)
    dense = build_model(model, device=dev)
    params = pruning.prunable_parameters(dense)
    layers, sizes = list(params), [p.numel() for p in params.values()]
    rho_max = math.log10(sum(sizes) / len(sizes))
    if not 0 < log10_rho <= rho_max:
        raise ValueError(f"log10_rho must be in (0, {rho_max:.2f}] for {model} (ρ_max = N/L);"
                         f" got {log10_rho}")
    jobs = [(s, n) for s in schedules for n in iterations]
    if progress:
        from tqdm.auto import tqdm
        jobs = tqdm(jobs, desc=f"SynFlow runs on {model}")
    runs = {s: {} for s in schedules}
    crit = {s: [] for s in schedules}
    with _device.cpu_threads(settings.cpu_threads, dev):
        for s, n in jobs:
            net, history = copy.deepcopy(dense), []
            pruning.prune(net, SYNFLOW, 10.0 ** -log10_rho, iterations=n, schedule=s,
                          device=dev, history=history)
            ratio = probes.flow_ratio(history)
            runs[s][n] = {"layer_density": [[h["layer_density"][k] for k in layers]
                                            for h in history],
                          "density": [h["density"] for h in history], "ratio": ratio.tolist(),
                          "max_ratio": float(np.max(ratio)) if ratio.size else math.nan,
                          "collapsed": pruning.collapsed(net)}
            if critical:
                crit[s].append(_critical(dense, n, s, settings.critical_step, dev,
                                         lo=crit[s][-1] if crit[s] else None))
    return {"model": model, "layers": layers, "sizes": sizes, "log10_rho": log10_rho,
            "iterations": list(iterations), "rho_max_log10": rho_max, "runs": runs,
            "critical": crit if critical else None, "settings": settings.as_dict()}


def _critical(dense, n, schedule, step, dev, lo=None):
    """Largest log10 ρ on the grid 0, step, ..., log10(N/L) at which SynFlow with ``n``
    iterations leaves no layer empty. More iterations collapse no sooner, so the
    bisection starts at ``lo`` (the critical compression of fewer iterations) when given
    and still holds."""
    sizes = [p.numel() for p in pruning.prunable_parameters(dense).values()]
    grid = log10_rho_grid(sizes, step)

    def fails(x):
        net = copy.deepcopy(dense)
        pruning.prune(net, SYNFLOW, 10.0 ** -x, iterations=n, schedule=schedule, device=dev)
        return pruning.collapsed(net)

    if not fails(grid[-1]):
        return grid[-1]
    good, bad = 0, len(grid) - 1
    if lo in grid[1:-1] and not fails(lo):
        good = grid.index(lo)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (good, mid) if fails(grid[mid]) else (mid, bad)
    return grid[good] if good or not fails(grid[0]) else None
