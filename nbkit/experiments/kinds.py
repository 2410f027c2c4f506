"""The run kinds of the declared experiments: functions ``config -> result dict``.

- ``prune_at_init``: build a model, prune it at initialization, measure layer collapse.
- ``train_pruned``: the same, then train it and report the test accuracy ("dense" skips
  pruning).
- ``train_rule``: convert a model to a learning rule, train it, and log the weight and
  δ angles per layer over training.

The runner seeds everything with ``config["seed"]`` before calling a kind. Datasets are
loaded once per process and device.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from .. import data as _data
from .. import models, train
from .runner import register_kind

__all__ = ["prune_at_init", "train_pruned", "train_rule", "dataset"]


@lru_cache(maxsize=4)
def _dataset(name: str, device: str) -> _data.Dataset:
    return _data.load(name, device=device)


def dataset(name: str, device) -> _data.Dataset:
    """The dataset ``name`` on ``device``, loaded once per process."""
    return _dataset(name, str(device))


def _load(config: dict, *, device) -> None:
    """Load the run's dataset (once per process), before the timed runs."""
    dataset(config["data"], device)


def _build(config: dict, ds: _data.Dataset, device) -> nn.Module:
    return models.build(config["model"], num_classes=int(config.get("num_classes", 10)),
                        input_shape=ds.input_shape, device=device,
                        **config.get("model_kwargs", {}))


def _prune(model: nn.Module, config: dict, ds: _data.Dataset, device) -> dict:
    """Prune ``model`` in place as ``config`` says; return the collapse measurements."""
    from .. import pruning

    sizes = {name: p.numel() for name, p in model.named_parameters()}
    method, density = config["method"], 10.0 ** -float(config["log10_rho"])
    batches = None
    if pruning.needs_data(method):
        batches = ds.pruning_batches(int(config["prune_samples"]),
                                     batch_size=int(config["prune_batch_size"]),
                                     device=device, seed=int(config.get("seed", 0)))
    pruning.prune(model, method, density=density, iterations=int(config["iterations"]),
                  schedule=config["schedule"], scope=config["scope"], data=batches,
                  num_batches=len(batches) if batches else None, device=device)
    layer_density = pruning.layer_density(model)
    layers = list(layer_density)
    return {"density": density, "layers": layers, "sizes": [sizes[n] for n in layers],
            "layer_density": [float(layer_density[n]) for n in layers],
            "collapsed": bool(pruning.collapsed(model)),
            "effective_density": float(pruning.effective_density(model))}


@register_kind("prune_at_init", prepare=_load)
def prune_at_init(config: dict, *, device) -> dict:
    """Build ``config["model"]`` and prune it at init with ``config["method"]`` to
    density 10^-log10_rho. Returns per-layer densities (``layers``, ``sizes``,
    ``layer_density``), ``collapsed`` and ``effective_density``."""
    ds = dataset(config["data"], device)
    model = _build(config, ds, device)
    return _prune(model, config, ds, device)


def _history(history: dict) -> dict:
    keys = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "time")
    return {k: history[k] for k in keys if k in history}


@register_kind("train_pruned", prepare=_load)
def train_pruned(config: dict, *, device, compile: bool = False) -> dict:
    """Prune at init as :func:`prune_at_init` (unless ``method`` is "dense"), then train
    with ``config["train"]`` (keyword arguments of :func:`nbkit.train.fit`; ``compile``
    is passed to it). Returns the final ``test_acc`` (a fraction), its best over epochs,
    the training history and the pruning measurements."""
    ds = dataset(config["data"], device)
    model = _build(config, ds, device)
    result = {}
    if config["method"] != "dense":
        result.update(_prune(model, config, ds, device))
    history = train.fit(model, ds, device=device, progress=False, seed=int(config["seed"]),
                        compile=compile, **config["train"])
    result.update(test_acc=history["test_acc"][-1], best_test_acc=max(history["test_acc"]),
                  train_seconds=sum(history["time"]), history=_history(history))
    return result


def _angle_series(records: list, key: str) -> dict:
    """``{"steps": [...], "layers": {layer: [value per step]}}`` from AngleLogger records
    (steps where a value is missing, such as the gradient angle before training, are
    left out)."""
    rows = [r for r in records if r.get(key)]
    layers = list(rows[0][key]) if rows else []
    return {"steps": [r["step"] for r in rows],
            "layers": {n: [r[key].get(n) for r in rows] for n in layers}}


@register_kind("train_rule", prepare=_load)
def train_rule(config: dict, *, device, compile: bool = False) -> dict:
    """Build ``config["model"]``, convert it to ``config["rule"]`` (with ``preset``,
    ``coefficients`` and ``feedback_lr``), train it with ``config["train"]`` and return
    the final ``test_acc``, the history, the resolved rule ``settings``, and per layer
    over training ``weight_angles`` (W against Bᵀ), ``delta_angles`` (the rule's δ
    against backprop's, on a fixed test batch) and ``norm_ratios`` (‖B‖/‖W‖), each as
    ``{"steps": [...], "layers": {layer: [value per logged step]}}``. ``compile`` is
    passed to :func:`nbkit.train.fit`."""
    from .. import rules
    from ..rules import registry

    ds = dataset(config["data"], device)
    model = _build(config, ds, device)
    rule, preset = config["rule"], config.get("preset")
    coefficients = dict(config.get("coefficients", {}))
    rules.convert(model, rule, seed=int(config["seed"]), preset=preset,
                  feedback_lr=config.get("feedback_lr"), **coefficients)
    batch = next(iter(ds.loader("test", int(config["angle_batch"]), shuffle=False,
                                augment=False, device=device)))
    logger = rules.AngleLogger(every=int(config["angle_every"]), batch=batch)
    history = train.fit(model, ds, device=device, progress=False, seed=int(config["seed"]),
                        callbacks=[logger], compile=compile, **config["train"])
    if logger.records[-1]["step"] != history["step"][-1]:
        logger.log(model, history["step"][-1])
    return {"test_acc": history["test_acc"][-1], "best_test_acc": max(history["test_acc"]),
            "train_seconds": sum(history["time"]), "history": _history(history),
            "settings": dict(registry.resolve(rule, preset, **coefficients)),
            "weight_angles": _angle_series(logger.records, "alignment"),
            "delta_angles": _angle_series(logger.records, "gradient"),
            "norm_ratios": _angle_series(logger.records, "norm_ratio"),
            "finite": bool(all(torch.isfinite(p).all() for p in model.parameters()))}
