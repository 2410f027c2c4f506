"""Widgets of the train-pruned-networks notebook (SynFlow paper, Fig. 6).

- :func:`training_app`: prune at initialization with each pruner, train, and draw
  accuracy against compression as the runs finish (a progress bar, a Train button).
- :func:`shuffle_app`: the layer-wise shuffle sanity check at one compression.

The published Fig. 6 and nbkit's full-scale results are in :mod:`.fig6`.

Every trained run is cached on its configuration, so a figure that needs runs made
before only redraws.
"""

from __future__ import annotations

import copy
import html
import json
import time

import ipywidgets as W

from .. import data as _data
from .. import models, pruning, train
from .. import seed as seed_everything
from ..device import get as get_device
from ..viz import training as vt
from ..viz.style import label_for
from .app import App
from .sweeps import PRUNERS

__all__ = ["PRUNERS", "QUICK", "FULL", "config_for", "describe_config", "train_pruned",
           "sweep", "runs_table", "shuffle_check", "training_app", "shuffle_app",
           "clear_cache"]


# Quick: a 3-layer MLP (its 3072-input first layer holds 96% of the weights, so it is the
# layer that single-shot pruners empty first) for one epoch of cifar10-mini.
QUICK = {
    "model": "mlp", "model_kwargs": {"depth": 3, "width": 128}, "data": "cifar10-mini",
    "log10_rho": (1.0, 1.5, 2.0, 2.5, 3.0), "synflow_iterations": 20, "prune_samples": 100,
    "train": {"epochs": 1, "batch_size": 128, "lr": 0.05, "momentum": 0.9,
              "weight_decay": 5e-4, "schedule": "cosine", "augment": False},
}
# Full: vgg16_bn on CIFAR-10 with the paper's pruning settings and a shortened recipe
# (for a GPU; the paper trains 160 epochs, see nbkit.experiments for that sweep).
FULL = {
    "model": "vgg16_bn", "model_kwargs": {}, "data": "cifar10",
    "log10_rho": (1.0, 2.0, 3.0), "synflow_iterations": 100, "prune_samples": 100,
    "train": {"epochs": 10, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
              "weight_decay": 1e-4, "schedule": "cosine", "augment": True},
}

_CACHE: dict[str, dict] = {}
_DATASETS: dict[str, _data.Dataset] = {}


def clear_cache() -> None:
    """Forget every trained run."""
    _CACHE.clear()


def _merge(base: dict, override: dict | None) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def config_for(mode: str = "quick", **override) -> dict:
    """The run configuration of ``mode`` ("quick" or "full"), with ``override`` merged in
    (nested dicts such as ``train`` are updated, not replaced). Full mode falls back to
    cifar10-mini when no full CIFAR-10 copy is found."""
    if mode not in ("quick", "full"):
        raise ValueError(f"mode must be 'quick' or 'full', got {mode!r}")
    cfg = _merge(QUICK if mode == "quick" else FULL, override)
    if cfg["data"] == "cifar10" and not _data.find()["cifar10"]:
        cfg["data"] = "cifar10-mini"
    return cfg


def describe_config(cfg: dict) -> str:
    """One line saying what was trained, for captions."""
    kw = ", ".join(f"{k}={v}" for k, v in cfg.get("model_kwargs", {}).items())
    t = cfg["train"]
    length = f"{t['steps']} steps" if t.get("steps") else \
        f"{t['epochs']} epoch{'s' if t['epochs'] != 1 else ''}"
    return (f"{cfg['model']}{f' ({kw})' if kw else ''} on {cfg['data']}, {length}, "
            f"lr {t['lr']:g} {t['schedule']}; SynFlow {cfg['synflow_iterations']} iterations, "
            f"SNIP/GraSP on {cfg['prune_samples']} samples")


def _dataset(name: str, device) -> _data.Dataset:
    key = f"{name}:{device}"
    if key not in _DATASETS:
        _DATASETS[key] = _data.load(name, device=device)
    return _DATASETS[key]


def _run_key(cfg, method, log10_rho, shuffle, seed, device) -> str:
    log10_rho = 0.0 if method == "dense" else float(log10_rho)
    return json.dumps({"cfg": cfg, "method": method, "rho": log10_rho, "shuffle": bool(shuffle),
                       "seed": seed, "device": str(get_device(device))}, sort_keys=True,
                      default=str)


def train_pruned(method: str, log10_rho: float = 0.0, *, shuffle: bool = False,
                 config: dict | None = None, seed: int = 0, device=None) -> dict:
    """Build ``config["model"]``, prune it at init with ``method`` to density
    10^-log10_rho (``"dense"`` skips pruning), train it, and return (cached):

    ``{"method", "log10_rho", "shuffle", "top1" (%), "chance" (%), "layer_density"
    {name: kept fraction}, "effective_density" (kept weights on an input-output path,
    as a fraction of all), "kept", "total", "collapsed", "seconds"}``.

    ``shuffle=True`` permutes each layer's mask at random after pruning (same layer
    densities, random positions). The same seed gives the same initial weights, so a
    run and its shuffled twin differ only in where the kept weights sit.
    """
    cfg = config or config_for("quick")
    if method != "dense" and method not in PRUNERS:
        raise ValueError(f"unknown pruner {method!r}; choose one of {PRUNERS} or 'dense'")
    dev = get_device(device)
    log10_rho = 0.0 if method == "dense" else float(log10_rho)
    key = _run_key(cfg, method, log10_rho, shuffle, seed, dev)
    if key in _CACHE:
        return _CACHE[key]
    t0 = time.perf_counter()
    ds = _dataset(cfg["data"], dev)
    seed_everything(seed)
    model = models.build(cfg["model"], num_classes=ds.num_classes, input_shape=ds.input_shape,
                         device=dev, **cfg.get("model_kwargs", {}))
    if method != "dense":
        batches = (ds.pruning_batches(cfg["prune_samples"], device=dev, seed=seed)
                   if pruning.needs_data(method) else None)
        pruning.prune(model, method, 10.0 ** -log10_rho, data=batches, shuffle=shuffle,
                      iterations=cfg["synflow_iterations"] if method == "synflow" else 1,
                      device=dev)
    layer_density = {k: float(v) for k, v in pruning.layer_density(model).items()}
    effective = float(pruning.effective_density(model)) if method != "dense" else 1.0
    sizes = {n: p.numel() for n, p in pruning.prunable_parameters(model).items()}
    masks = pruning.masks(model)
    kept = sum(int(masks[n].sum()) if n in masks else sizes[n] for n in sizes)
    history = train.fit(model, ds, seed=seed, device=dev, progress=False, **cfg["train"])
    result = {"method": method, "log10_rho": log10_rho, "shuffle": shuffle,
              "top1": 100.0 * history["test_acc"][-1], "chance": 100.0 / ds.num_classes,
              "layer_density": layer_density, "effective_density": effective,
              "kept": kept, "total": sum(sizes.values()),
              "collapsed": any(v == 0 for v in layer_density.values()),
              "seconds": time.perf_counter() - t0}
    _CACHE[key] = result
    return result


def sweep(pruners=PRUNERS, log10_rhos=None, *, shuffle: bool = False,
          config: dict | None = None, seed: int = 0, device=None):
    """Train the dense net, then every pruner at every compression (and, with
    ``shuffle``, each one's layer-wise shuffled twin), lowest compression first.

    A generator: after each run it trains (and after the last) it yields ``{"runs":
    [...], "progress": fraction done, "config": cfg, "todo": runs left}``, so a figure can
    grow as the runs finish; runs found in the cache are not redrawn one by one.
    """
    cfg = config or config_for("quick")
    pruners = list(pruners)
    rhos = sorted(float(r) for r in (cfg["log10_rho"] if log10_rhos is None else log10_rhos))
    if not pruners:
        raise ValueError("choose at least one pruner")
    if not rhos:
        raise ValueError("choose at least one compression")
    unknown = [p for p in pruners if p not in PRUNERS]
    if unknown:
        raise ValueError(f"unknown pruner(s) {unknown}; choose from {PRUNERS}")
    jobs = [("dense", 0.0, False)] + [(m, r, False) for r in rhos for m in pruners]
    if shuffle:
        jobs += [(m, r, True) for r in rhos for m in pruners]
    runs = []
    for i, (method, rho, shuf) in enumerate(jobs):
        cached = _run_key(cfg, method, rho, shuf, seed, device) in _CACHE
        runs.append(train_pruned(method, rho, shuffle=shuf, config=cfg, seed=seed,
                                 device=device))
        if not cached or i == len(jobs) - 1:   # a run from the cache needs no redraw
            yield {"runs": list(runs), "progress": (i + 1) / len(jobs), "config": cfg,
                   "todo": len(jobs) - i - 1}


def runs_table(runs, show: str = "top1") -> str:
    """The runs of :func:`sweep` as a small text table, one row per compression and one
    column per pruner (unshuffled runs only). ``show="top1"``: test accuracy (%), with
    the dense run above the table; ``show="collapse"``: whether a layer was emptied,
    beside the number of weights every pruner kept at that compression."""
    if show not in ("top1", "collapse"):
        raise ValueError(f"show must be 'top1' or 'collapse', got {show!r}")
    pruned = [r for r in runs if r["method"] != "dense" and not r["shuffle"]]
    methods = [m for m in PRUNERS if any(r["method"] == m for r in pruned)]
    cells = {(r["log10_rho"], r["method"]): r for r in pruned}
    head = "".join(f"{label_for(m):>11}" for m in methods)
    lines = []
    if show == "top1":
        lines += [f"dense: top-1 {r['top1']:.1f}%" for r in runs if r["method"] == "dense"]
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


def _curves(runs) -> tuple[list[dict], float | None, float | None]:
    curves, dense, chance = {}, None, None
    for r in runs:
        chance = r["chance"]
        if r["method"] == "dense":
            dense = r["top1"]
            continue
        key = (r["method"], r["shuffle"])
        c = curves.setdefault(key, {"method": r["method"], "log10_rho": [], "top1": [],
                                    "kind": "shuffled" if r["shuffle"] else "live"})
        c["log10_rho"].append(r["log10_rho"])
        c["top1"].append(r["top1"])
    order = sorted(curves, key=lambda k: (k[1], PRUNERS.index(k[0])))
    return [curves[k] for k in order], dense, chance


def _build_training(result: dict):
    curves, dense, chance = _curves(result["runs"])
    return vt.accuracy_figure(
        curves, dense=dense, chance=chance,
        title="Prune at init, then train: accuracy against compression",
        note=describe_config(result["config"]))


def _describe_training(result: dict) -> str:
    runs = result["runs"]
    seconds = sum(r["seconds"] for r in runs)
    collapsed = sorted({f"{label_for(r['method'])} at 10^{r['log10_rho']:g}" for r in runs
                        if r["collapsed"] and not r["shuffle"]})
    text = f"{len(runs)} runs ({seconds:.1f} s of training)"
    if result.get("todo"):
        text += f", {result['todo']} to go"
    if collapsed:
        text += ". Layer collapse (a layer with no weight left): " + ", ".join(collapsed)
    return html.escape(text)


def training_app(*, mode: str = "quick", config: dict | None = None, pruners=PRUNERS,
                 log10_rhos=None, shuffle: bool = False, device=None) -> App:
    """Accuracy against compression for the chosen pruners, trained when you press
    Train (the default run starts at once). ``config`` overrides :func:`config_for`."""
    cfg = config_for(mode, **(config or {}))
    rhos = tuple(float(r) for r in (cfg["log10_rho"] if log10_rhos is None else log10_rhos))
    choices = sorted({0.5, 1.0, 1.5, 2.0, 2.5, 3.0, *rhos})
    epochs = int(cfg["train"].get("epochs", 1))
    controls = {
        "pruners": W.SelectMultiple(options=[(label_for(p), p) for p in PRUNERS],
                                    value=tuple(pruners), description="pruners", rows=5),
        "log10_rhos": W.SelectMultiple(options=[(f"ρ = 10^{r:g}", r) for r in choices],
                                       value=rhos, description="compression", rows=5),
        "epochs": W.IntSlider(value=epochs, min=1, max=max(10, epochs), description="epochs"),
        "shuffle": W.Checkbox(value=shuffle, description="also layer-wise shuffled",
                              indent=False),
    }

    def compute(pruners, log10_rhos, epochs, shuffle):
        run_cfg = _merge(cfg, {"train": {"epochs": int(epochs)}})
        yield from sweep(pruners, log10_rhos, shuffle=shuffle, config=run_cfg, device=device)

    return App(controls, compute, _build_training, run_button="Train",
               describe=_describe_training)


# ------------------------------------------------------------------- shuffle check

def shuffle_check(log10_rho: float = 2.0, pruners=PRUNERS, *, config: dict | None = None,
                  seed: int = 0, device=None):
    """Each pruner at ``log10_rho`` with its own mask and with that mask shuffled within
    every layer. A generator like :func:`sweep`; the last result also holds
    ``original``/``shuffled`` {pruner: top-1 %} and ``same_density`` {pruner: bool}."""
    cfg = config or config_for("quick")
    pruners = list(pruners)
    if not pruners:
        raise ValueError("choose at least one pruner")
    runs = []
    for item in sweep(pruners, [log10_rho], shuffle=True, config=cfg, seed=seed,
                      device=device):
        runs = item["runs"]
        yield {**item, **_pair_up(runs, log10_rho)}


def _pair_up(runs, log10_rho) -> dict:
    by = {(r["method"], r["shuffle"]): r for r in runs if r["method"] != "dense"}
    dense = next((r["top1"] for r in runs if r["method"] == "dense"), None)
    chance = runs[0]["chance"] if runs else None
    both = [m for m in PRUNERS if (m, False) in by and (m, True) in by]
    pick = lambda key, shuf: {m: by[m, shuf][key] for m in both}  # noqa: E731
    return {"log10_rho": log10_rho, "dense": dense, "chance": chance,
            "original": pick("top1", False), "shuffled": pick("top1", True),
            "effective": pick("effective_density", False),
            "effective_shuffled": pick("effective_density", True),
            "same_density": {m: by[m, False]["layer_density"] == by[m, True]["layer_density"]
                             for m in both}}


def _build_shuffle(result: dict):
    if not result["original"]:  # nothing paired up yet: an empty, titled figure
        return vt.accuracy_figure([], dense=result["dense"], chance=result["chance"],
                                  title="Layer-wise shuffle: training…")
    return vt.shuffle_figure(result["original"], result["shuffled"],
                             log10_rho=result["log10_rho"], dense=result["dense"],
                             chance=result["chance"])


def _describe_shuffle(result: dict) -> str:
    same = result["same_density"]
    if not same:
        return "training…"
    ok = all(same.values())
    text = ("every shuffled mask keeps exactly its pruner's per-layer densities" if ok else
            "per-layer densities differ for: " + ", ".join(m for m, v in same.items() if not v))
    return html.escape(text)


def shuffle_app(*, mode: str = "quick", config: dict | None = None, log10_rho: float = 2.0,
                pruners=PRUNERS, device=None) -> App:
    """The layer-wise shuffle sanity check at a chosen compression."""
    cfg = config_for(mode, **(config or {}))
    choices = sorted({0.5, 1.0, 1.5, 2.0, 2.5, 3.0, float(log10_rho)})
    controls = {
        "log10_rho": W.Dropdown(options=[(f"ρ = 10^{r:g}", r) for r in choices],
                                value=float(log10_rho), description="compression"),
        "pruners": W.SelectMultiple(options=[(label_for(p), p) for p in PRUNERS],
                                    value=tuple(pruners), description="pruners", rows=5),
    }

    def compute(log10_rho, pruners):
        yield from shuffle_check(log10_rho, pruners, config=cfg, device=device)

    return App(controls, compute, _build_shuffle, run_button="Train", describe=_describe_shuffle)
