"""The pruning sweeps behind notebooks 01 and 03: how the notebooks prune
(:class:`Settings`), which models they offer, and Fig. 1's grid computed once per model.

A *sweep* prunes one initialised network with every pruner at every compression of the
grid and is cached per (model, settings, pruners, device), so that the apps in
:mod:`nbkit.widgets.pruning` only look numbers up when a slider moves.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

from .. import data as _data
from .. import device as _device
from .. import models, pruning, seed

__all__ = ["PRUNERS", "Settings", "QUICK", "FULL", "QUICK_MODELS", "FULL_MODELS",
           "build_model", "describe_model", "log10_rho_grid", "iter_sweep", "sweep",
           "sweep_steps", "prune_synflow", "clear_cache"]

PRUNERS = tuple(pruning.methods())  # random, magnitude, snip, grasp, synflow


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
    base, _, k = name.partition("/")
    if not k:
        return models.build(name, num_classes=num_classes, device=device)
    if not base.startswith("vgg") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown model {name!r}: use an nbkit model name or "
                         "'<vgg name>/<width divisor>' such as 'vgg16_bn/8'")
    return models.build(base, num_classes=num_classes, device=device, width_divisor=int(k))


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

_SWEEPS: dict = {}


def clear_cache() -> None:
    """Forget every cached sweep."""
    _SWEEPS.clear()


def _critical(grid, failed) -> float | None:
    ok = [x for x, bad in zip(grid, failed) if not bad]
    return max(ok) if ok else None


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
    with _device.cpu_threads(settings.cpu_threads, dev):
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
        if pruning.needs_data(method) and batches is None:
            batches = _data.load(settings.data).pruning_batches(
                settings.prune_samples, device=dev, seed=settings.seed)
        its = settings.synflow_iterations if method == "synflow" else 1
        rows, eff, stopped = [[1.0] * len(layers)], [dense_eff], [None]
        with _device.cpu_threads(settings.cpu_threads, dev):
            for x in grid[1:]:
                net = copy.deepcopy(dense)
                seed(settings.seed)
                if method == "synflow":
                    stopped.append(prune_synflow(net, 10.0 ** -x, its, "exponential", dev))
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
    steps = sweep_steps(model, settings, pruners=pruners, device=device)
    if progress and _key(model, settings, pruners, device) not in _SWEEPS:
        from tqdm.auto import tqdm
        steps = tqdm(steps, total=len(pruners), desc=f"sweep {model}")
    for _ in steps:
        pass
    return _SWEEPS[_key(model, settings, pruners, device)]


def sweep_steps(model: str, settings: Settings = QUICK, *, pruners=PRUNERS, device=None):
    """Run the sweep of :func:`iter_sweep` unless it is cached, yielding the fraction done
    after each pruner; once it is exhausted, :func:`sweep` returns the result at once."""
    key = _key(model, settings, pruners, device)
    if key in _SWEEPS:
        return
    for frac, partial in iter_sweep(model, settings, pruners=pruners, device=device):
        if frac >= 1:
            _SWEEPS[key] = partial
        yield frac


def prune_synflow(net, density, n, schedule, dev, history=None) -> int | None:
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
