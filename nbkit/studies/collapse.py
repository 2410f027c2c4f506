"""Fig. 1 of the SynFlow paper: prune one initialised network with every pruner at every
compression, and record each layer's density, the effective density and collapse.

>>> s = sweep("vgg16_bn/8", QUICK)              # cached per (model, settings, pruners)
>>> s["pruners"]["magnitude"]["critical"]       # largest log10 ρ with no empty layer

:func:`prune_point` is the one pruning of one grid point; :func:`iter_sweep` calls it for
the notebooks' sweeps, and the experiment runner's ``prune_at_init`` kind for the
paper-scale grid, so both give the same numbers for the same settings.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from .. import device as _device
from .. import models, pruning, seed
from . import results
from .common import StudySettings, cached, dataset, for_mode

__all__ = ["Settings", "QUICK", "FULL", "MODES", "settings", "PRUNERS", "build_model",
           "describe_model", "log10_rho_grid", "prune_point", "pruning_batches",
           "iter_sweep", "sweep", "sweep_steps", "published_fig1", "full_runs", "full_runs_table",
           "disconnected_example"]

# Registry order, with the paper's own GraSP beside today's: random, magnitude, snip, grasp,
# grasp_paper, synflow.
PRUNERS = tuple(pruning.methods(variants=True))


@dataclass(frozen=True)
class Settings(StudySettings):
    """How the pruning studies (notebooks 01 and 03) prune.

    Args:
        name: "quick" or "full", shown in the figures.
        max_iterations: at most this many iterations for a pruner that iterates (SynFlow:
            the paper's 100); None: every pruner's own count from the registry.
        prune_samples: pruning samples of the pruners that need data (the paper: 10 ×
            classes).
        step: grid step in log10 ρ (the paper: 0.25).
        max_log10_rho: the largest compression of the grid (capped at the model's ρ_max).
        critical_step: grid step of the critical-compression search of notebook 03.
        seed: seeds the model's initialisation and the random pruner.
        data: the dataset the data-driven pruners draw their samples from.
        cpu_threads: torch threads while pruning on the CPU (None: leave as is). The
            quick models are small enough that one thread is fastest: on a busy 2-core
            machine, synchronising two threads per tiny op made sweeps 10-30x slower.
        models: the models the apps offer (``"vgg16_bn/8"``: VGG-16-BN at 1/8 width).
    """

    NOT_IN_CONFIG: ClassVar[tuple] = (*StudySettings.NOT_IN_CONFIG, "models")

    max_iterations: int | None = 20
    prune_samples: int = 100
    step: float = 0.25
    max_log10_rho: float = 6.0
    critical_step: float = 0.25
    seed: int = 0
    data: str = "cifar10-mini"
    cpu_threads: int | None = None
    models: tuple = ("vgg16_bn/8", "vgg11_bn/8", "resnet20")

    def iterations_for(self, method: str) -> int:
        """How many iterations ``method`` prunes in under these settings."""
        return pruning.iterations_for(method, self.max_iterations)

    def text(self) -> str:
        how = describe_pruning(self.max_iterations, self.prune_samples, self.data)
        return f"{self.name} mode: {how}, log10 ρ step {self.step:g}"


def describe_pruning(max_iterations: int | None, prune_samples: int, data: str = "") -> str:
    """"SynFlow 20 iterations, SNIP/GraSP on 100 cifar10-mini samples": how the
    iterating pruners iterate and what the data-driven ones score with."""
    iterative = ", ".join(f"{pruning.scores.label(m)} "
                          f"{pruning.iterations_for(m, max_iterations)} iterations"
                          for m in PRUNERS if pruning.iterations_for(m) > 1)
    needs = "/".join(pruning.scores.label(m) for m in PRUNERS if pruning.needs_data(m))
    return f"{iterative}, {needs} on {prune_samples}{f' {data}' if data else ''} samples"


QUICK = Settings("quick", max_iterations=20, cpu_threads=1,
                 models=("vgg16_bn/8", "vgg11_bn/8", "resnet20"))
FULL = Settings("full", max_iterations=None, models=("vgg16_bn", "vgg19_bn", "vgg11_bn",
                                                     "resnet20"))
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL`, with ``changes``."""
    return for_mode(MODES, mode, **changes)


# --------------------------------------------------------------------------- models

def build_model(name: str, num_classes: int = 10, device=None, **kwargs):
    """An nbkit model by name, or ``"<vgg>/<k>"``: that VGG with every width divided by k
    (same depth and layer plan, k² times fewer weights), e.g. ``"vgg16_bn/8"``."""
    base, _, k = name.partition("/")
    if not k:
        return models.build(name, num_classes=num_classes, device=device, **kwargs)
    if not base.startswith("vgg") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown model {name!r}: use an nbkit model name or "
                         "'<vgg name>/<width divisor>' such as 'vgg16_bn/8'")
    return models.build(base, num_classes=num_classes, device=device, width_divisor=int(k),
                        **kwargs)


def describe_model(name: str) -> str:
    """``"vgg16_bn/8"`` -> ``"vgg16_bn at 1/8 width"``."""
    base, _, k = name.partition("/")
    return f"{base} at 1/{k} width" if k else base


def log10_rho_grid(sizes, step: float = 0.25, top: float = 6.0) -> list[float]:
    """0, step, ... up to ``top`` or the model's maximal compression log10(N/L) (one weight
    per layer left), whichever is lower."""
    hi = min(top, math.log10(sum(sizes) / len(sizes)))
    return [round(i * step, 6) for i in range(int(math.floor(hi / step + 1e-9)) + 1)]


# --------------------------------------------------------------------------- one point

def prune_point(dense, method: str, log10_rho: float, *, iterations: int, batches=None,
                seed_value: int = 0, schedule: str = "exponential", scope: str = "global",
                device=None, copy_model: bool = True) -> dict:
    """Prune (a copy of) the initialised ``dense`` net once with ``method`` to density
    10^-log10_rho, seeding torch with ``seed_value`` first (the random pruner draws from
    it), and measure it.

    Returns ``{"layers", "sizes", "layer_density" (kept fraction per layer, in order),
    "effective_density" (kept weights on an input-output path, as a fraction of all),
    "collapsed" (a layer kept nothing), "disconnected" (no path is left), "density"}``.
    """
    net = copy.deepcopy(dense) if copy_model else dense
    seed(seed_value)
    density = 10.0 ** -float(log10_rho)
    pruning.prune(net, method, density, iterations=iterations, schedule=schedule, scope=scope,
                  data=batches, num_batches=len(batches) if batches else None, device=device)
    sizes = {n: p.numel() for n, p in pruning.prunable_parameters(net).items()}
    density_of = pruning.layer_density(net)
    layers = list(density_of)
    kept = [float(density_of[n]) for n in layers]
    effective = float(pruning.effective_density(net))
    return {"density": density, "layers": layers, "sizes": [sizes[n] for n in layers],
            "layer_density": kept, "collapsed": min(kept) == 0.0,
            "effective_density": effective, "disconnected": effective == 0.0}


def pruning_batches(settings: Settings, device=None):
    """The pruning samples of the data-driven pruners under ``settings`` (cached data)."""
    ds = dataset(settings.data, device=device)
    return ds.pruning_batches(settings.prune_samples, device=ds.train.x.device,
                              seed=settings.seed)


# --------------------------------------------------------------------------- sweeps

def _critical(grid, failed) -> float | None:
    ok = [x for x, bad in zip(grid, failed) if not bad]
    return max(ok) if ok else None


def iter_sweep(model: str, settings: Settings = QUICK, *, pruners=PRUNERS,
               device=None):
    """Prune ``model`` at initialization with every pruner at every compression of the
    grid, as in Fig. 1 of the SynFlow paper: each point is a fresh copy of the same
    initialised network pruned once, globally (iterating pruners with
    ``settings.iterations_for(method)`` exponential iterations).

    Yields ``(fraction done, sweep so far)`` after each pruner. The sweep is a dict:
    ``model``, ``layers``, ``sizes``, ``log10_rho`` (the grid), ``rho_max_log10``
    (log10 N/L), ``settings`` and, per pruner in ``pruners``, ``density``
    (``[point][layer]`` kept fractions), ``effective`` (effective density),
    ``collapsed``, ``disconnected``, ``critical`` (largest log10 ρ with no empty layer),
    ``connected`` (largest log10 ρ still connected), ``iterations``, ``needs_data`` and
    ``seconds``.
    """
    unknown = [p for p in pruners if p not in PRUNERS]
    if unknown:
        raise ValueError(f"unknown pruner(s) {unknown}; choose from {list(PRUNERS)}")
    dev = _device.get(device)
    with _device.cpu_threads(settings.cpu_threads, dev):
        seed(settings.seed)
        dense = build_model(model, device=dev)
        params = pruning.prunable_parameters(dense)
        layers, sizes = list(params), [p.numel() for p in params.values()]
        dense_eff = pruning.effective_density(dense)
    grid = log10_rho_grid(sizes, settings.step, settings.max_log10_rho)
    out = {"model": model, "layers": layers, "sizes": sizes, "log10_rho": grid,
           "rho_max_log10": math.log10(sum(sizes) / len(sizes)),
           "settings": settings.as_dict(), "device": str(dev), "pruners": {}}
    batches = None
    for i, method in enumerate(pruners):
        t0 = time.perf_counter()
        if pruning.needs_data(method) and batches is None:
            batches = pruning_batches(settings, device=dev)
        its = settings.iterations_for(method)
        rows, eff = [[1.0] * len(layers)], [dense_eff]
        with _device.cpu_threads(settings.cpu_threads, dev):
            for x in grid[1:]:
                point = prune_point(dense, method, x, iterations=its,
                                    batches=batches if pruning.needs_data(method) else None,
                                    seed_value=settings.seed, device=dev)
                rows.append(point["layer_density"])
                eff.append(point["effective_density"])
        collapsed = [min(r) == 0 for r in rows]
        disconnected = [e == 0 for e in eff]
        out["pruners"][method] = {
            "density": rows, "effective": eff, "collapsed": collapsed,
            "disconnected": disconnected, "critical": _critical(grid, collapsed),
            "connected": _critical(grid, disconnected), "iterations": its,
            "needs_data": pruning.needs_data(method), "seconds": time.perf_counter() - t0}
        yield (i + 1) / len(pruners), out


@cached(maxsize=16)
def _sweep(model, settings, pruners, device) -> dict:
    (_, result), = deque(iter_sweep(model, settings, pruners=pruners, device=device),
                         maxlen=1)
    return result


def sweep_steps(model: str, settings: Settings = QUICK, *, pruners=PRUNERS,
                device=None, progress: bool = False):
    """Generator: run the sweep of :func:`iter_sweep` unless it is cached, yielding the
    fraction done after each pruner but the last (nothing when cached); it returns the
    sweep, so ``s = yield from sweep_steps(...)`` hands it on."""
    args = (model, settings, tuple(pruners), _device.get(device))
    if _sweep.is_cached(*args):
        return _sweep(*args)
    steps = iter_sweep(model, settings, pruners=args[2], device=args[3])
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, total=len(args[2]), desc=f"sweep {describe_model(model)}")
    for frac, partial in steps:  # noqa: B007 (the last partial sweep is the sweep)
        if frac < 1:
            yield frac
    _sweep.put(partial, *args)
    return partial


def sweep(model: str, settings: Settings = QUICK, *, pruners=PRUNERS, device=None,
          progress: bool = False) -> dict:
    """The whole sweep of :func:`iter_sweep`, computed once per (model, settings,
    pruners, device) and cached; ``progress`` shows a bar while it runs."""
    steps = sweep_steps(model, settings, pruners=pruners, device=device, progress=progress)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


# --------------------------------------------------------------- published and full runs

def published_fig1() -> dict:
    """The SynFlow paper's Fig. 1 (VGG-16-BN, CIFAR-100), from data/reference. A variant
    of a pruner (``grasp_paper``) is listed under its own name too, with the published
    curve of the pruner it is a variant of."""
    fig = results.published("synflow_fig1")
    pruners = dict(fig["pruners"])
    for name in pruning.methods(variants=True):
        parent = pruning.scores.published_as(name)
        if parent in pruners and name not in pruners:
            pruners[name] = pruners[parent]
    return {**fig, "pruners": pruners}


def full_runs(folder=None) -> list[dict]:
    """Collected ``layer_collapse`` runs in data/results (from ``python -m
    nbkit.experiments``), each ``{"model", "summary", "provenance", "file", "label",
    "hover"}`` (a short legend label, and the provenance for hover text), or ``{"file",
    "error"}`` for a file that could not be read; an empty list when there are none."""
    found = []
    for f in results.all_collected("layer_collapse", folder):
        if not f.ok:
            found.append({"file": f.name, "error": f.error})
            continue
        doc = f.doc
        summary, prov = doc["summary"], doc.get("provenance", {})
        devices = ", ".join(prov.get("devices", [])) or "unknown device"
        date = str(prov.get("last_date", ""))[:10]
        seeds = max((len(v) for v in summary.get("critical_per_seed", {}).values()), default=0)
        commits = ", ".join(c[:7] for c in prov.get("git_commits", []) if c)
        found.append({"model": doc.get("config", {}).get("model", "?"), "summary": summary,
                      "provenance": prov, "file": f.name,
                      "label": f"nbkit full run ({seeds} seeds, {date})" if seeds
                      else f"nbkit full run ({date})",
                      "hover": f"{f.name}: {doc.get('variant', '?')} variant, {devices}, "
                               f"{date}" + (f", git {commits}" if commits else "")})
    return found


def full_runs_table(run: dict) -> str:
    """One entry of :func:`full_runs` as text: where, when and how long it ran, then per
    pruner the critical compression (median over seeds, and per seed), the largest
    compression at which the network is still connected, and the paper's value."""
    if "error" in run:
        return run["error"]
    summary, prov = run["summary"], run["provenance"]
    published = published_fig1()["pruners"]
    minutes = float(prov.get("total_seconds") or 0) / 60
    devices = ", ".join(prov.get("devices", [])) or "an unknown device"
    lines = [f"{run['file']}: {run['model']}, {prov.get('runs', '?')} prunings on "
             f"{devices}, {str(prov.get('last_date', ''))[:10]}, {minutes:.0f} min of "
             "pruning in all",
             f"{'pruner':<12} {'critical log10 rho':>18} {'per seed':>16} "
             f"{'still connected':>16} {'published':>10}"]

    def show(x):
        return "none" if x is None else f"{x:.2f}"

    for method in [m for m in PRUNERS if m in summary.get("critical", {})]:
        seeds = summary.get("critical_per_seed", {}).get(method, {})
        per_seed = " ".join("none" if v is None else f"{v:g}" for v in seeds.values())
        pub = published.get(method, {}).get("critical_log10_rho")
        lines.append(f"{method:<12} {show(summary['critical'][method]):>18} {per_seed:>16} "
                     f"{show(summary.get('critical_disconnected', {}).get(method)):>16} "
                     f"{show(pub):>10}")
    if summary.get("maximal_log10_rho") is not None:
        lines.append(f"{'rho_max':<12} {summary['maximal_log10_rho']:>18.2f}")
    return "\n".join(lines)


def disconnected_example() -> dict:
    """A real pruned network that is disconnected although every layer keeps weights.

    An MLP of 4 inputs, two hidden layers of 4 units and 3 outputs, masked so that layer
    1 feeds only hidden unit 1, while layer 2 reads only hidden units 2 and 3: each layer
    keeps 3 or 4 weights, and no path runs from input to output. nbkit's own metrics
    measure it: ``{"masks", "effective"}`` (per layer, for
    :func:`nbkit.viz.diagrams.network_diagram`), ``"densities"``, ``"disconnected"``."""
    import torch

    model = models.build("mlp", input_shape=(1, 2, 2), depth=3, width=4, num_classes=3,
                         bias=False, batchnorm=False)
    plan = {"layers.0.weight": [(0, 0), (0, 1), (0, 2), (0, 3)],  # all into hidden unit 1
            "layers.2.weight": [(0, 1), (1, 2), (1, 1), (0, 2)],  # from hidden units 2, 3
            "fc.weight": [(0, 0), (1, 1), (2, 0)]}
    masks = {}
    for name, p in model.named_parameters():
        m = torch.zeros_like(p)
        for j, i in plan[name]:
            m[j, i] = 1.0
        masks[name] = m
    pruning.apply_masks(model, masks)
    effective = pruning.effective_masks(model)
    density = pruning.layer_density(model)
    return {"masks": [masks[n].numpy() for n in plan],
            "effective": [effective[n].float().numpy() for n in plan],
            "densities": [density[n] for n in plan],
            "disconnected": pruning.disconnected(model)}
