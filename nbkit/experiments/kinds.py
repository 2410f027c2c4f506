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

__all__ = ["prune_at_init", "train_pruned", "train_rule", "NEEDS_DATA", "dataset"]

# Pruners whose scores need pruning data (the others are data-free).
NEEDS_DATA = frozenset({"snip", "grasp"})


@lru_cache(maxsize=4)
def _dataset(name: str, device: str) -> _data.Dataset:
    return _data.load(name, device=device)


def dataset(name: str, device) -> _data.Dataset:
    """The dataset ``name`` on ``device``, loaded once per process."""
    return _dataset(name, str(device))


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
    if method in NEEDS_DATA:
        batches = ds.pruning_batches(int(config["prune_samples"]),
                                     batch_size=int(config["prune_batch_size"]),
                                     device=device, seed=int(config.get("seed", 0)))
    pruning.prune(model, method, density=density, iterations=int(config["iterations"]),
                  schedule=config["schedule"], scope=config["scope"], data=batches,
                  device=device)
    layer_density = pruning.layer_density(model)
    layers = list(layer_density)
    return {"density": density, "layers": layers, "sizes": [sizes[n] for n in layers],
            "layer_density": [float(layer_density[n]) for n in layers],
            "collapsed": bool(pruning.collapsed(model)),
            "effective_density": float(pruning.effective_density(model))}


@register_kind("prune_at_init")
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


@register_kind("train_pruned")
def train_pruned(config: dict, *, device) -> dict:
    """Prune at init as :func:`prune_at_init` (unless ``method`` is "dense"), then train
    with ``config["train"]`` (keyword arguments of :func:`nbkit.train.fit`). Returns the
    final ``test_acc`` (a fraction), its best over epochs, the training history and the
    pruning measurements."""
    ds = dataset(config["data"], device)
    model = _build(config, ds, device)
    result = {}
    if config["method"] != "dense":
        result.update(_prune(model, config, ds, device))
    history = train.fit(model, ds, device=device, progress=False, seed=int(config["seed"]),
                        **config["train"])
    result.update(test_acc=history["test_acc"][-1], best_test_acc=max(history["test_acc"]),
                  train_seconds=sum(history["time"]), history=_history(history))
    return result


class _AngleProbe:
    """A training callback that records, every ``every`` steps and at the end, the
    weight angle (W against Bᵀ) and the δ angle (the rule's δ against backprop's, on a
    fixed probe batch) of every layer."""

    def __init__(self, every: int, batch, loss_fn=nn.functional.cross_entropy):
        self.every, self.batch, self.loss_fn = int(every), batch, loss_fn
        self.steps, self.weight, self.delta = [], {}, {}

    def _record(self, state):
        from .. import rules

        if self.steps and self.steps[-1] == state.step:
            return
        self.steps.append(state.step)
        for store, angles in ((self.weight, rules.alignment_angles(state.model)),
                              (self.delta, rules.gradient_angles(state.model, self.batch,
                                                                 self.loss_fn))):
            for name, value in angles.items():
                store.setdefault(name, []).append(float(value))

    def on_fit_start(self, state):
        self._record(state)

    def after_step(self, state):
        if state.step % self.every == 0:
            self._record(state)

    def on_fit_end(self, state):
        self._record(state)

    def result(self) -> tuple[dict, dict]:
        return ({"steps": self.steps, "layers": self.weight},
                {"steps": self.steps, "layers": self.delta})


@register_kind("train_rule")
def train_rule(config: dict, *, device) -> dict:
    """Build ``config["model"]``, convert it to ``config["rule"]`` (with
    ``config["coefficients"]``), train it with ``config["train"]`` and return the final
    ``test_acc``, the history, and ``weight_angles`` / ``delta_angles``:
    ``{"steps": [...], "layers": {layer: [degrees per logged step]}}``."""
    from .. import rules

    ds = dataset(config["data"], device)
    model = _build(config, ds, device)
    rules.convert(model, config["rule"], **config.get("coefficients", {}))
    x, y = next(iter(ds.loader("test", int(config["angle_batch"]), shuffle=False,
                               augment=False, device=device)))
    probe = _AngleProbe(int(config["angle_every"]), (x, y))
    history = train.fit(model, ds, device=device, progress=False, seed=int(config["seed"]),
                        callbacks=[probe], **config["train"])
    weight, delta = probe.result()
    return {"test_acc": history["test_acc"][-1], "best_test_acc": max(history["test_acc"]),
            "train_seconds": sum(history["time"]), "history": _history(history),
            "weight_angles": weight, "delta_angles": delta,
            "finite": bool(all(torch.isfinite(p).all() for p in model.parameters()))}
