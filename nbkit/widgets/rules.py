"""Apps for the learning-rule notebooks.

- :func:`feedback_alignment_app` (``05_feedback_alignment``): train one small net with a
  rule chosen in a dropdown, and others for comparison, while the loss, the accuracy and
  the weight and δ angles of every layer are drawn live.
- :func:`two_routes_app` (``06_two_routes``): local rules against weight estimation over
  a precomputed grid of depth × update noise, indexed by two sliders.

The compute functions (:func:`train_rule`, :func:`compare_rules`, :func:`two_routes_grid`)
call :mod:`nbkit.rules` and :func:`nbkit.train.fit`; the figures come from
:mod:`nbkit.viz.rules`. Finished runs are cached in memory, so going back to a rule or a
grid point is instant.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import ipywidgets as W
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import data as _data
from .. import models, rules, train
from .. import seed as _seed
from ..device import cpu_threads
from ..device import get as get_device
from ..viz import rules as V
from ..viz.style import label_for
from .app import App

__all__ = ["SETTINGS", "TWO_ROUTES", "train_rule", "compare_rules", "settings_note",
           "feedback_alignment_app", "load_rule_results", "full_routes_table",
           "two_routes_grid", "two_routes_app",
           "small_images", "clear_cache"]

# Notebook 05. Quick: a 4-layer convnet of width 8 on cifar10-mini, 150 SGD steps on one
# CPU thread (about 5 s per rule). Full: resnet20 on CIFAR-10 for about eight epochs, on
# a GPU.
SETTINGS = {
    "quick": dict(model="conv", model_kwargs={"depth": 4, "width": 8}, data="cifar10-mini",
                  steps=150, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4,
                  augment=False, every=15, angle_batch=64, eval_samples=500, preset="quick",
                  sigma=0.0, seed=0, threads=1),
    "full": dict(model="resnet20", model_kwargs={}, data="cifar10", steps=3000,
                 batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, augment=True,
                 every=150, angle_batch=256, eval_samples=10000, preset="quick", sigma=0.0,
                 seed=0, threads=None),
}

# Notebook 06: the grid the depth and noise sliders index. Quick: BatchNorm MLPs on
# cifar10-mini shrunk to 8×8 pixels (54 runs, about 20 s on one CPU core). Full: CIFAR
# ResNets on CIFAR-10 for two epochs each, on a GPU (72 runs).
TWO_ROUTES = {
    "quick": dict(model="mlp", width=64, batchnorm=True, depths=(2, 4, 6),
                  data="cifar10-mini", image_size=8, steps=150, batch_size=128, lr=0.05,
                  momentum=0.9, weight_decay=5e-4, sigmas=(0.0, 0.3, 1.0), preset="quick",
                  rules=("backprop", "weight_mirror", "information_alignment",
                         "kolen_pollack", "activation_alignment", "symmetric_alignment"),
                  seed=0, threads=1),
    "full": dict(model="resnet", depths=(20, 32, 44, 56), data="cifar10", image_size=None,
                 steps=782, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4,
                 sigmas=(0.0, 0.1, 0.3), preset="quick",
                 rules=("backprop", "feedback_alignment", "weight_mirror",
                        "information_alignment", "kolen_pollack", "activation_alignment",
                        "symmetric_alignment"), seed=0, threads=None),
}

_RUNS: dict = {}


def clear_cache() -> None:
    """Forget every cached run and grid."""
    _RUNS.clear()
    _dataset.cache_clear()
    _grid.cache_clear()


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


@lru_cache(maxsize=8)
def _dataset(name: str, image_size, device: str) -> _data.Dataset:
    ds = _data.load(name)
    if image_size:
        ds = small_images(ds, image_size)
    return ds.to(device)


def small_images(ds: _data.Dataset, size: int) -> _data.Dataset:
    """``ds`` with its images average-pooled to ``size`` × ``size`` pixels (uint8 kept),
    for MLPs that should train in a fraction of a second."""
    h = ds.input_shape[1]
    if size < 1 or h % size:
        raise ValueError(f"image_size must divide the image height {h}, got {size}")

    def shrink(split):
        x = F.avg_pool2d(split.x.float(), h // size).round_().to(torch.uint8)
        return _data.Split(x, split.y)

    return _data.Dataset(f"{ds.name}-{size}px", shrink(ds.train), shrink(ds.test), ds.classes,
                         ds.mean, ds.std, ds.source, dict(ds.info, image_size=size))


# ------------------------------------------------------------------- notebook 05 ---

def train_rule(rule: str, *, model="conv", model_kwargs=None, data="cifar10-mini", steps=150,
               batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=False,
               every=15, angle_batch=64, eval_samples=500, preset="quick", sigma=0.0, seed=0,
               threads=None, device=None):
    """Train ``model`` with ``rule`` and yield the run so far every ``every`` steps.

    Each yielded run (see :mod:`nbkit.viz.rules`) holds the logged ``steps``, the mean
    training loss and accuracy since the previous log, the test loss and accuracy on
    ``eval_samples`` class-balanced test images, and the weight and δ angles of every
    layer (δ on a fixed batch of ``angle_batch`` test images), plus ``progress`` in
    [0, 1]. The first record is at step 0, before training. ``threads`` limits the CPU
    threads while it trains (None: leave torch's setting).
    """
    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be >= 1, got steps={steps}, every={every}")
    dev = get_device(device)
    with cpu_threads(threads, dev):
        yield from _train_rule(rule, model, model_kwargs, data, steps, batch_size, lr, momentum,
                               weight_decay, augment, every, angle_batch, eval_samples, preset,
                               sigma, seed, dev)


def _train_rule(rule, model, model_kwargs, data, steps, batch_size, lr, momentum, weight_decay,
                augment, every, angle_batch, eval_samples, preset, sigma, seed, dev):
    ds = _dataset(data, None, str(dev)).subset(test=eval_samples, seed=seed)
    _seed(seed)
    net = models.build(model, num_classes=ds.num_classes, input_shape=ds.input_shape,
                       device=dev, **(model_kwargs or {}))
    rules.convert(net, rule, preset=preset, seed=seed)
    opt = train.make_optimizer(net, lr, momentum, True, weight_decay, dev)
    probe = next(iter(ds.loader("test", angle_batch, shuffle=False, augment=False,
                                device=dev)))
    logger = rules.AngleLogger(every=every, batch=probe)
    callbacks = [rules.NoisyUpdates(sigma)] if sigma else []
    run = {"rule": rule, "steps": [], "train_loss": [], "train_acc": [], "test_loss": [],
           "test_acc": [], "alignment": {}, "gradient": {}, "norm_ratio": {},
           "progress": 0.0}

    def log(step, losses):
        record = logger.log(net, step)
        run["steps"].append(step)
        for k, v in losses.items():
            run[k].append(v)
        for key in ("alignment", "gradient", "norm_ratio"):
            for layer, value in record[key].items():
                run[key].setdefault(layer, []).append(value)
        run["progress"] = step / steps
        return {k: (list(v) if isinstance(v, list) else
                    {n: list(x) for n, x in v.items()} if isinstance(v, dict) else v)
                for k, v in run.items()}

    test_loss, test_acc = train.evaluate(net, ds, device=dev)
    yield log(0, {"train_loss": None, "train_acc": None, "test_loss": test_loss,
                  "test_acc": test_acc})
    done, chunk = 0, 0
    while done < steps:
        n = min(every, steps - done)
        h = train.fit(net, ds, steps=n, batch_size=batch_size, lr=lr, momentum=momentum,
                      weight_decay=weight_decay, schedule="constant", augment=augment,
                      device=dev, optimizer=opt, callbacks=callbacks, progress=False,
                      seed=seed * 100_003 + chunk)
        done, chunk = done + n, chunk + 1
        yield log(done, {k: h[k][-1] for k in ("train_loss", "train_acc", "test_loss",
                                                "test_acc")})


def compare_rules(rule_names, **settings):
    """Train every rule in ``rule_names`` (in order) with the same settings, yielding
    ``{"runs": [run, ...], "settings": ..., "coefficients": ..., "progress": p}`` as each
    run grows. Finished runs are cached, so asking again costs nothing."""
    names = list(dict.fromkeys(rule_names))
    if not names:
        raise ValueError("choose at least one learning rule")
    for r in names:
        rules.get(r)  # a clear error for an unknown name
    preset = settings.get("preset", "quick")
    coefficients = {r: rules.resolve(r, preset) for r in names}
    done: list[dict] = []
    for i, r in enumerate(names):
        key = _key({"rule": r, **settings})
        if key not in _RUNS:
            run = None
            for run in train_rule(r, **settings):
                yield {"runs": done + [run], "settings": settings,
                       "coefficients": coefficients,
                       "progress": (i + run["progress"]) / len(names)}
            _RUNS[key] = run
        done.append(_RUNS[key])
    yield {"runs": list(done), "settings": settings, "coefficients": coefficients,
           "progress": 1.0}


def _coef_text(values: dict) -> str:
    greek = {"alpha": "α", "beta": "β", "gamma": "γ"}
    return ", ".join(f"{greek.get(k, k)}={v:g}" for k, v in values.items()
                     if isinstance(v, float))


def settings_note(settings: dict, coefficients: dict) -> str:
    """The line shown under the figure: model, data, steps and the coefficients used."""
    kw = settings.get("model_kwargs") or {}
    model = settings["model"] + (f" (depth {kw['depth']}, width {kw['width']})"
                                 if "depth" in kw and "width" in kw else "")
    which = ("quick-mode coefficients (nbkit.rules.QUICK)" if settings.get("preset") == "quick"
             else "the paper's coefficients")
    coefs = "; ".join(f"{label_for(r)} {_coef_text(c)}" for r, c in coefficients.items()
                      if _coef_text(c))
    return (f"{model} on {settings['data']}, {settings['steps']} SGD steps of batch "
            f"{settings['batch_size']}, lr {settings['lr']:g}, momentum "
            f"{settings['momentum']:g}; {which}" + (f": {coefs}" if coefs else ""))


def _describe_runs(result: dict) -> str:
    parts = []
    for run in result["runs"]:
        acc = run["test_acc"][-1]
        parts.append(f"<b>{label_for(run['rule'])}</b>: step {run['steps'][-1]}, "
                     f"test accuracy {100 * acc:.1f}%, mean weight angle "
                     f"{V.mean_angle(run['alignment']):.1f}°, mean δ angle "
                     f"{V.mean_angle(run['gradient']):.1f}°")
    return "<br>".join(parts)


def feedback_alignment_app(mode: str = "quick", *, rule: str = "feedback_alignment",
                           compare=("backprop", "symmetric_alignment"), auto_start=True,
                           **overrides) -> App:
    """The live training app of notebook 05: a rule dropdown, a multi-select of rules to
    compare with, quick-mode or paper coefficients, the number of steps and a Train
    button. ``overrides`` change :data:`SETTINGS` ``[mode]`` (e.g. ``steps=60``)."""
    if mode not in SETTINGS:
        raise ValueError(f"mode must be one of {sorted(SETTINGS)}, got {mode!r}")
    base = {**SETTINGS[mode], **overrides}
    unknown = sorted(set(overrides) - set(SETTINGS[mode]) - {"device"})
    if unknown:
        raise ValueError(f"unknown settings {unknown}; valid: {sorted(SETTINGS[mode])}")
    options = [(label_for(r), r) for r in V.RULE_ORDER]
    every = base["every"]
    controls = {
        "rule": W.Dropdown(options=options, value=rule, description="rule"),
        "compare": W.SelectMultiple(options=options, value=tuple(compare), rows=4,
                                    description="compare with"),
        "coefficients": W.ToggleButtons(options=[("quick-mode", "quick"),
                                                 ("paper", "default")],
                                        value=base["preset"], description="coefficients"),
        "steps": W.IntSlider(value=base["steps"], min=every, max=max(20 * every, base["steps"]),
                             step=every, description="SGD steps", continuous_update=False),
    }

    def compute(rule, compare, coefficients, steps):
        settings = {**base, "preset": coefficients, "steps": int(steps)}
        return compare_rules([rule, *compare], **settings)

    def build(result):
        note = settings_note(result["settings"], result["coefficients"])
        title = ("Learning without weight symmetry: " +
                 " vs ".join(label_for(r["rule"]) for r in result["runs"]))
        return V.training_curves(result["runs"], title=title, note=note)

    return App(controls, compute, build, run_button="Train", describe=_describe_runs,
               auto_start=auto_start)


def load_rule_results(folder=None) -> dict | None:
    """The collected ``learning_rules`` results in ``data/results/`` (the full variant
    ``learning_rules.json`` first, then any ``learning_rules.<variant>.json``), or None
    when there are none yet."""
    if folder is None:
        from ..experiments.runner import DEFAULT_OUT as folder
    folder = Path(folder)
    files = sorted(folder.glob("learning_rules*.json"),
                   key=lambda p: (p.name != "learning_rules.json", p.name))
    for path in files:
        try:
            merged = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if merged.get("experiment") == "learning_rules" and merged.get("runs"):
            merged["path"] = str(path)
            return merged
    return None


def full_routes_table(merged: dict) -> str:
    """A plain-text table of a collected ``learning_rules`` result: per rule its route,
    final test accuracy, and the final mean weight angle, δ angle and ‖B‖/‖W‖."""
    routes = {"reference": "reference", "local": "local", "estimation": "estimation",
              "other": "signs of W"}
    rows = [f"{'rule':>22}  {'route':>10}  {'top-1':>6}  {'W vs Bᵀ':>7}  {'δ angle':>7}  "
            f"{'‖B‖/‖W‖':>7}"]
    for r, f in V.final_by_rule(merged).items():
        rows.append(f"{r:>22}  {routes[V.route_of(r)]:>10}  {100 * f['test_acc']:5.1f}%  "
                    f"{f['weight_angle']:6.1f}°  {f['delta_angle']:6.1f}°  "
                    f"{f['norm_ratio']:7.2f}")
    return "\n".join(rows)


# ------------------------------------------------------------------- notebook 06 ---

def _final_run(rule: str, depth: int, sigma: float, s: dict, dev) -> tuple[float, float]:
    """Train one grid point; (test accuracy, mean final weight angle over layers)."""
    ds = _dataset(s["data"], s.get("image_size"), str(dev))
    _seed(s["seed"])
    if s["model"] == "resnet":
        net = models.build(f"resnet{depth}", num_classes=ds.num_classes,
                           input_shape=ds.input_shape, device=dev)
    else:
        kw = {k: s[k] for k in ("width", "batchnorm") if k in s}
        net = models.build(s["model"], num_classes=ds.num_classes, input_shape=ds.input_shape,
                           device=dev, depth=depth, **kw)
    rules.convert(net, rule, preset=s["preset"], seed=s["seed"])
    h = train.fit(net, ds, steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                  momentum=s["momentum"], weight_decay=s["weight_decay"], device=dev,
                  augment=s.get("image_size") is None, progress=False, seed=s["seed"],
                  callbacks=[rules.NoisyUpdates(sigma)] if sigma else [])
    finite = all(bool(torch.isfinite(p).all()) for p in net.parameters())
    angles = rules.alignment_angles(net) if finite else {}
    return h["test_acc"][-1], V.mean_angle({k: [v] for k, v in angles.items()})


@lru_cache(maxsize=4)
def _grid(key: str, device: str, progress: bool) -> dict:
    s = json.loads(key)
    dev = get_device(device)
    points = [(r, d, sg) for d in s["depths"] for sg in s["sigmas"] for r in s["rules"]]
    acc = {r: [[math.nan] * len(s["sigmas"]) for _ in s["depths"]] for r in s["rules"]}
    ang = {r: [[math.nan] * len(s["sigmas"]) for _ in s["depths"]] for r in s["rules"]}
    with cpu_threads(s.get("threads"), dev):
        for r, d, sg in tqdm(points, desc="depth × noise grid", disable=not progress,
                             leave=False):
            i, j = s["depths"].index(d), s["sigmas"].index(sg)
            acc[r][i][j], ang[r][i][j] = _final_run(r, d, sg, s, dev)
    size = f", {s['image_size']}×{s['image_size']} px" if s.get("image_size") else ""
    model = (f"{s['model']} (width {s['width']}" + (", BatchNorm" if s.get("batchnorm") else "")
             + ")" if s["model"] != "resnet" else "CIFAR ResNets")
    note = (f"{model} on {s['data']}{size}; {s['steps']} SGD steps of batch {s['batch_size']}, "
            f"lr {s['lr']:g}; {'quick-mode' if s['preset'] == 'quick' else 'paper'} "
            "coefficients; one seed")
    depth_label = ("depth (ResNet layers)" if s["model"] == "resnet"
                   else "depth (weight layers)")
    return {"depths": list(s["depths"]), "sigmas": list(s["sigmas"]), "rules": list(s["rules"]),
            "test_acc": acc, "alignment": ang, "chance": 0.1, "note": note,
            "depth_label": depth_label, "settings": s}


def two_routes_grid(mode: str = "quick", *, device=None, progress: bool = True,
                    **overrides) -> dict:
    """Final test accuracy and mean weight angle of every rule of :data:`TWO_ROUTES`
    ``[mode]`` on every (depth, noise σ) point, as a grid for
    :func:`nbkit.viz.rules.two_routes_figure`. Cached: the same settings return at once."""
    if mode not in TWO_ROUTES:
        raise ValueError(f"mode must be one of {sorted(TWO_ROUTES)}, got {mode!r}")
    unknown = sorted(set(overrides) - set(TWO_ROUTES[mode]))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; valid: {sorted(TWO_ROUTES[mode])}")
    s = {**TWO_ROUTES[mode], **overrides}
    for k in ("depths", "sigmas", "rules"):
        s[k] = list(s[k])
    for r in s["rules"]:
        rules.get(r)
    return _grid(_key(s), str(get_device(device)), progress)


def _describe_point(grid: dict, depth, sigma) -> str:
    i, j = grid["depths"].index(depth), grid["sigmas"].index(sigma)
    bp = grid["test_acc"].get("backprop")
    parts = []
    for r in grid["rules"]:
        acc = grid["test_acc"][r][i][j]
        gap = (f" ({100 * (acc - bp[i][j]):+.1f} pts vs backprop)"
               if bp is not None and r != "backprop" else "")
        parts.append(f"{label_for(r)} {100 * acc:.1f}%{gap}")
    return f"<b>depth {depth}, σ = {sigma:g}:</b> " + "; ".join(parts)


def two_routes_app(grid: dict, *, depth=None, sigma=None) -> App:
    """Two sliders over a precomputed :func:`two_routes_grid`: depth and update noise σ.
    Moving a slider only indexes the grid."""
    depth = grid["depths"][-1] if depth is None else depth
    sigma = grid["sigmas"][0] if sigma is None else sigma
    controls = {
        "depth": W.SelectionSlider(options=grid["depths"], value=depth, description="depth",
                                   continuous_update=True),
        "sigma": W.SelectionSlider(options=grid["sigmas"], value=sigma, description="noise σ",
                                   continuous_update=True),
    }
    return App(controls, lambda depth, sigma: {"grid": grid, "depth": depth, "sigma": sigma},
               lambda r: V.two_routes_figure(r["grid"], r["depth"], r["sigma"]),
               describe=lambda r: _describe_point(r["grid"], r["depth"], r["sigma"]))
