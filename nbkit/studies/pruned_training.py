"""Fig. 6 of the SynFlow paper, live: prune at initialization, train, and compare the
accuracy of every pruner across compressions; and the layer-wise shuffle sanity check.

>>> run = train_pruned("synflow", 2.0, QUICK)       # one run, cached
>>> for partial in sweep(["magnitude", "synflow"], [1.0, 2.0], QUICK):
...     print(partial["progress"])                  # the figure grows as runs finish

:func:`train_pruned` is the one way nbkit trains a pruned network: notebook 04's apps
call it, and so does the experiment runner's ``train_pruned`` kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .. import data as _data
from .. import device as _device
from .. import models, pruning, train
from .. import seed as seed_everything
from .collapse import describe_pruning
from .common import StudySettings, cached, dataset, for_mode

__all__ = ["Settings", "QUICK", "FULL", "MODES", "settings", "DENSE", "PRUNERS", "METHODS",
           "train_pruned", "sweep", "shuffle_check", "runs_table", "accuracy_curves",
           "pair_up", "describe"]

DENSE = "dense"  # the unpruned reference run, trained like the others
PRUNERS = tuple(pruning.methods())  # the paper's five pruners, the app's choices
# what train_pruned takes: the five and their named variants (GraSP as the paper ran it)
METHODS = tuple(pruning.methods(variants=True))


@dataclass(frozen=True)
class Settings(StudySettings):
    """How notebook 04 (and the ``accuracy_vs_compression`` experiment) prunes and trains.

    Args:
        model, model_kwargs: :func:`nbkit.models.build` arguments.
        data: the dataset (full mode falls back to cifar10-mini without a CIFAR-10 copy).
        num_classes: the model's classes (None: the dataset's).
        log10_rhos: the compressions the app trains by default.
        max_iterations: at most this many iterations for a pruner that iterates (SynFlow:
            the paper's 100); None: every pruner's own count from the registry.
        prune_samples, prune_batch_size: the pruning data of SNIP and GraSP.
        schedule, scope: of :func:`nbkit.pruning.prune`.
        train: keyword arguments of :func:`nbkit.train.fit` (the recipe).
        seed: seeds the initial weights, the pruning data and the batch order.
        threads: torch threads while pruning and training on the CPU (None: leave as
            is). Quick mode uses one: on a 2-core machine with one core busy (a browser,
            say), two threads made notebook 04 about 15 times slower, waiting at every
            op for the thread that the busy core had descheduled.
    """

    model: str = "mlp"
    model_kwargs: dict = field(default_factory=dict)
    data: str = "cifar10-mini"
    num_classes: int | None = None
    log10_rhos: tuple = (1.0, 1.5, 2.0, 2.5, 3.0)
    max_iterations: int | None = 20
    prune_samples: int = 100
    prune_batch_size: int = 256
    schedule: str = "exponential"
    scope: str = "global"
    train: dict = field(default_factory=dict)
    seed: int = 0
    threads: int | None = None

    def iterations_for(self, method: str) -> int:
        return pruning.iterations_for(method, self.max_iterations)

    def describe(self) -> str:
        """One line saying what is trained, for captions."""
        kw = ", ".join(f"{k}={v}" for k, v in self.model_kwargs.items())
        t = self.train
        length = (f"{t['steps']} steps" if t.get("steps") else
                  f"{t['epochs']} epoch{'s' if t['epochs'] != 1 else ''}")
        return (f"{self.model}{f' ({kw})' if kw else ''} on {self.data}, {length}, "
                f"lr {t['lr']:g} {t['schedule']}; "
                f"{describe_pruning(self.max_iterations, self.prune_samples)}")


# Quick: a 3-layer MLP (its 3072-input first layer holds 96% of the weights, so it is the
# layer that single-shot pruners empty first) for one epoch of cifar10-mini.
QUICK = Settings(
    "quick", model="mlp", model_kwargs={"depth": 3, "width": 128}, data="cifar10-mini",
    log10_rhos=(1.0, 1.5, 2.0, 2.5, 3.0), max_iterations=20,
    train={"epochs": 1, "batch_size": 128, "lr": 0.05, "momentum": 0.9,
           "weight_decay": 5e-4, "schedule": "cosine", "augment": False}, threads=1)
# Full: vgg16_bn on CIFAR-10 with the paper's pruning settings and a shortened recipe
# (for a GPU; the paper trains 160 epochs, see nbkit.experiments for that sweep).
FULL = Settings(
    "full", model="vgg16_bn", data="cifar10", log10_rhos=(1.0, 2.0, 3.0),
    max_iterations=None,
    train={"epochs": 10, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
           "weight_decay": 1e-4, "schedule": "cosine", "augment": True})
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL` with ``changes`` (``train`` is merged, not
    replaced). Full mode falls back to cifar10-mini when no CIFAR-10 copy is found."""
    if "train" in changes:
        changes = {**changes, "train": {**MODES.get(mode, QUICK).train, **changes["train"]}}
    s = for_mode(MODES, mode, **changes)
    if s.data == "cifar10" and not _data.find()["cifar10"]:
        s = s.replace(data="cifar10-mini")
    return s


# ------------------------------------------------------------------ one run

def train_pruned(method: str, log10_rho: float = 0.0, settings: Settings = QUICK, *,
                 shuffle: bool = False, seed: int | None = None, device=None,
                 compile: bool = False, checkpoint=None, checkpoint_every: int = 1) -> dict:
    """Build ``settings.model``, prune it at init with ``method`` to density
    10^-log10_rho (``"dense"`` skips pruning), train it with ``settings.train``, and
    return (cached):

    ``{"method", "log10_rho", "shuffle", "top1" (%), "test_acc" (fraction),
    "best_test_acc", "chance" (%), "layers", "sizes", "layer_density" (kept fraction per
    layer, in order), "effective_density" (kept weights on an input-output path, as a
    fraction of all), "kept", "total", "collapsed", "history" (of fit), "train_seconds",
    "seconds"}``.

    ``shuffle=True`` permutes each layer's mask at random after pruning (same layer
    densities, random positions). The same seed gives the same initial weights, so a
    run and its shuffled twin differ only in where the kept weights sit. ``compile``
    trains with ``torch.compile`` (an execution setting: not part of the cache key).
    ``checkpoint``, a file path, saves the training there after each epoch and resumes
    from it when it exists (:func:`nbkit.train.iter_fit`); the result is the same.
    """
    if method != DENSE and method not in METHODS:
        raise ValueError(f"unknown pruner {method!r}; choose one of {list(METHODS)} or "
                         f"{DENSE!r}")
    log10_rho = 0.0 if method == DENSE else float(log10_rho)
    seed = settings.seed if seed is None else int(seed)
    return _train_pruned(method, log10_rho, settings, bool(shuffle), seed, _device.get(device),
                         compile=compile, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every)


@cached(maxsize=256, ignore=("compile", "checkpoint", "checkpoint_every"))
def _train_pruned(method, log10_rho, settings, shuffle, seed, dev, *, compile=False,
                  checkpoint=None, checkpoint_every: int = 1) -> dict:
    with _device.cpu_threads(settings.threads, dev):
        return _prune_and_train(method, log10_rho, settings, shuffle, seed, dev, compile,
                                checkpoint, checkpoint_every)


def _prune_and_train(method, log10_rho, settings, shuffle, seed, dev, compile,
                     checkpoint=None, checkpoint_every: int = 1) -> dict:
    t0 = time.perf_counter()
    ds = dataset(settings.data, device=dev)
    num_classes = settings.num_classes or ds.num_classes
    seed_everything(seed)
    model = models.build(settings.model, num_classes=num_classes, input_shape=ds.input_shape,
                         device=dev, **settings.model_kwargs)
    sizes = {n: p.numel() for n, p in pruning.prunable_parameters(model).items()}
    iterations = settings.iterations_for(method) if method != DENSE else None
    if method != DENSE:
        batches = (ds.pruning_batches(settings.prune_samples,
                                      batch_size=settings.prune_batch_size, device=dev,
                                      seed=seed)
                   if pruning.needs_data(method) else None)
        pruning.prune(model, method, 10.0 ** -log10_rho, iterations=iterations,
                      schedule=settings.schedule, scope=settings.scope, data=batches,
                      num_batches=len(batches) if batches else None, shuffle=shuffle,
                      device=dev)
    layer_density = pruning.layer_density(model)
    layers = list(sizes)
    masks = pruning.masks(model)
    kept = sum(int(masks[n].sum()) if n in masks else sizes[n] for n in sizes)
    effective = float(pruning.effective_density(model)) if method != DENSE else 1.0
    history = train.fit(model, ds, seed=seed, device=dev, progress=False, compile=compile,
                        checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                        **settings.train)
    test_acc = history["test_acc"][-1]
    return {"method": method, "log10_rho": log10_rho, "shuffle": shuffle, "seed": seed,
            "iterations": iterations, "top1": 100.0 * test_acc, "test_acc": test_acc,
            "best_test_acc": max(history["test_acc"]), "chance": 100.0 / num_classes,
            "layers": layers, "sizes": [sizes[n] for n in layers],
            "layer_density": [float(layer_density.get(n, 1.0)) for n in layers],
            "effective_density": effective, "kept": kept, "total": sum(sizes.values()),
            "collapsed": any(layer_density.get(n, 1.0) == 0 for n in layers),
            "history": history, "train_seconds": sum(history["time"]),
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------ sweeps

def sweep(pruners=PRUNERS, log10_rhos=None, settings: Settings = QUICK, *,
          shuffle: bool = False, seed: int | None = None, device=None):
    """Train the dense net, then every pruner at every compression (and, with
    ``shuffle``, each one's layer-wise shuffled twin), lowest compression first.

    A generator: after each run it trains (and after the last) it yields ``{"runs":
    [...], "progress": fraction done, "settings": settings, "todo": runs left}``, so a
    figure can grow as the runs finish; runs found in the cache are not redrawn one by
    one.
    """
    pruners = list(pruners)
    rhos = sorted(float(r) for r in (settings.log10_rhos if log10_rhos is None
                                     else log10_rhos))
    if not pruners:
        raise ValueError("choose at least one pruner")
    if not rhos:
        raise ValueError("choose at least one compression")
    unknown = [p for p in pruners if p not in PRUNERS]
    if unknown:
        raise ValueError(f"unknown pruner(s) {unknown}; choose from {list(PRUNERS)}")
    seed = settings.seed if seed is None else int(seed)
    dev = _device.get(device)
    jobs = [(DENSE, 0.0, False)] + [(m, r, False) for r in rhos for m in pruners]
    if shuffle:
        jobs += [(m, r, True) for r in rhos for m in pruners]
    runs = []
    for i, (method, rho, shuf) in enumerate(jobs):
        known = _train_pruned.is_cached(method, rho, settings, shuf, seed, dev)
        runs.append(train_pruned(method, rho, settings, shuffle=shuf, seed=seed, device=dev))
        if not known or i == len(jobs) - 1:   # a run from the cache needs no redraw
            yield {"runs": list(runs), "progress": (i + 1) / len(jobs), "settings": settings,
                   "todo": len(jobs) - i - 1}


def shuffle_check(log10_rho: float = 2.0, pruners=PRUNERS, settings: Settings = QUICK, *,
                  seed: int | None = None, device=None):
    """Each pruner at ``log10_rho`` with its own mask and with that mask shuffled within
    every layer. A generator like :func:`sweep`; each result also holds :func:`pair_up`'s
    ``original``/``shuffled`` {pruner: top-1 %} and ``same_density`` {pruner: bool}."""
    pruners = list(pruners)
    if not pruners:
        raise ValueError("choose at least one pruner")
    for item in sweep(pruners, [log10_rho], settings, shuffle=True, seed=seed, device=device):
        yield {**item, **pair_up(item["runs"], log10_rho)}


def pair_up(runs, log10_rho) -> dict:
    """Each pruner's run at ``log10_rho`` beside its shuffled twin: ``original`` and
    ``shuffled`` top-1, ``effective`` and ``effective_shuffled`` density, and
    ``same_density`` (the shuffled mask keeps every layer's density exactly)."""
    by = {(r["method"], r["shuffle"]): r for r in runs if r["method"] != DENSE}
    dense = next((r["top1"] for r in runs if r["method"] == DENSE), None)
    chance = runs[0]["chance"] if runs else None
    both = [m for m in PRUNERS if (m, False) in by and (m, True) in by]
    pick = lambda key, shuf: {m: by[m, shuf][key] for m in both}  # noqa: E731
    return {"log10_rho": log10_rho, "dense": dense, "chance": chance,
            "original": pick("top1", False), "shuffled": pick("top1", True),
            "effective": pick("effective_density", False),
            "effective_shuffled": pick("effective_density", True),
            "same_density": {m: by[m, False]["layer_density"] == by[m, True]["layer_density"]
                             for m in both}}


def accuracy_curves(runs) -> tuple[list[dict], float | None, float | None]:
    """``(curves, dense top-1, chance)`` of :func:`sweep`'s runs, one curve per pruner
    (and per shuffled pruner), in registry order, unshuffled first."""
    curves, dense, chance = {}, None, None
    for r in runs:
        chance = r["chance"]
        if r["method"] == DENSE:
            dense = r["top1"]
            continue
        key = (r["method"], r["shuffle"])
        c = curves.setdefault(key, {"method": r["method"], "log10_rho": [], "top1": [],
                                    "kind": "shuffled" if r["shuffle"] else "live"})
        c["log10_rho"].append(r["log10_rho"])
        c["top1"].append(r["top1"])
    order = sorted(curves, key=lambda k: (k[1], PRUNERS.index(k[0])))
    return [curves[k] for k in order], dense, chance


def runs_table(runs, show: str = "top1") -> str:
    """The runs of :func:`sweep` as a small text table, one row per compression and one
    column per pruner (unshuffled runs only). ``show="top1"``: test accuracy (%), with
    the dense run above the table; ``show="collapse"``: whether a layer was emptied,
    beside the number of weights every pruner kept at that compression."""
    if show not in ("top1", "collapse"):
        raise ValueError(f"show must be 'top1' or 'collapse', got {show!r}")
    pruned = [r for r in runs if r["method"] != DENSE and not r["shuffle"]]
    methods = [m for m in PRUNERS if any(r["method"] == m for r in pruned)]
    cells = {(r["log10_rho"], r["method"]): r for r in pruned}
    head = "".join(f"{pruning.scores.label(m):>11}" for m in methods)
    lines = []
    if show == "top1":
        lines += [f"dense: top-1 {r['top1']:.1f}%" for r in runs if r["method"] == DENSE]
        lines.append(f"{'rho':<8}" + head)
    else:
        lines.append(f"{'rho':<8}{'kept':>8}" + head)
    for x in sorted({r["log10_rho"] for r in pruned}):
        row = [cells.get((x, m)) for m in methods]
        if show == "top1":
            vals = ["" if r is None else f"{r['top1']:.1f}%" for r in row]
            lines.append(f"10^{x:<5g}" + "".join(f"{v:>11}" for v in vals))
        else:
            kept = {r["kept"] for r in row if r is not None}
            vals = ["" if r is None else "collapsed" if r["collapsed"] else "ok" for r in row]
            lines.append(f"10^{x:<5g}{', '.join(f'{k:,}' for k in sorted(kept)):>8}"
                         + "".join(f"{v:>11}" for v in vals))
    if show == "collapse" and pruned:
        lines.append(f"(kept weights of {pruned[0]['total']:,}; collapsed: a layer kept none)")
    return "\n".join(lines)


def describe(runs, todo: int = 0) -> str:
    """What a sweep has done so far: runs, training time, and which ones collapsed."""
    seconds = sum(r["seconds"] for r in runs)
    collapsed = sorted({f"{pruning.scores.label(r['method'])} at 10^{r['log10_rho']:g}"
                        for r in runs
                        if r["collapsed"] and not r["shuffle"]})
    text = f"{len(runs)} runs ({seconds:.1f} s of training)"
    if todo:
        text += f", {todo} to go"
    if collapsed:
        text += ". Layer collapse (a layer with no weight left): " + ", ".join(collapsed)
    return text
