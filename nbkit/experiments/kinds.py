"""The run kinds of the declared experiments: thin adapters ``config -> result dict`` over
the studies, so that a paper-scale run computes exactly what the notebooks compute.

- ``prune_at_init``: :func:`nbkit.studies.collapse.prune_point` (layer collapse).
- ``train_pruned``: :func:`nbkit.studies.pruned_training.train_pruned` ("dense" skips
  pruning).
- ``train_rule``: :func:`nbkit.studies.learning_rules.train_rule`, with the weight and δ
  angles per layer over training.

A run's configuration is its study's settings (``Settings.from_config``) plus the run's
own keys (``method``/``log10_rho`` or ``rule``). The runner seeds everything with
``config["seed"]`` before calling a kind.
"""

from __future__ import annotations

import math

from .. import pruning
from ..studies import collapse, learning_rules, pruned_training
from ..studies.common import dataset
from .spec import register_kind

__all__ = ["prune_at_init", "train_pruned", "train_rule"]

HISTORY_KEYS = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                "time")


def _load(config: dict, *, device) -> None:
    """Load the run's dataset (once per process), before the timed runs."""
    dataset(config["data"], device=device)


def _history(history: dict) -> dict:
    return {k: history[k] for k in HISTORY_KEYS if k in history}


@register_kind("prune_at_init", prepare=_load)
def prune_at_init(config: dict, *, device) -> dict:
    """Build ``config["model"]`` and prune it at init with ``config["method"]`` to
    density 10^-log10_rho, as one point of :func:`nbkit.studies.collapse.iter_sweep`.
    Returns per-layer densities (``layers``, ``sizes``, ``layer_density``),
    ``collapsed``, ``disconnected`` and ``effective_density``."""
    s = collapse.Settings.from_config(config)
    method = config["method"]
    dense = collapse.build_model(config["model"], num_classes=int(config.get("num_classes", 10)),
                                 device=device, **config.get("model_kwargs", {}))
    batches = collapse.pruning_batches(s, device=device) if pruning.needs_data(method) else None
    return collapse.prune_point(dense, method, float(config["log10_rho"]),
                                iterations=s.iterations_for(method), batches=batches,
                                seed_value=s.seed, device=device, copy_model=False)


_PRUNED_KEYS = ("density", "layers", "sizes", "layer_density", "collapsed",
                "effective_density", "kept", "total", "test_acc", "best_test_acc",
                "train_seconds")


@register_kind("train_pruned", prepare=_load)
def train_pruned(config: dict, *, device, compile: bool = False, checkpoint=None,
                 checkpoint_every: int = 1) -> dict:
    """Prune at init (unless ``method`` is "dense"), then train with ``config["train"]``
    (:func:`nbkit.studies.pruned_training.train_pruned`; ``compile`` and the
    ``checkpoint`` path are passed on).
    Returns the final ``test_acc`` (a fraction), its best over epochs, the training
    history and the pruning measurements."""
    s = pruned_training.Settings.from_config(config)
    run = pruned_training.train_pruned(config["method"], float(config["log10_rho"]), s,
                                       seed=s.seed, device=device, compile=compile,
                                       checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    result = {k: run[k] for k in _PRUNED_KEYS if k in run}
    result["density"] = 10.0 ** -run["log10_rho"]
    result["history"] = _history(run["history"])
    return result


@register_kind("train_rule", prepare=_load)
def train_rule(config: dict, *, device, compile: bool = False, checkpoint=None,
               checkpoint_every: int = 1) -> dict:
    """Train ``config["model"]`` with ``config["rule"]``
    (:func:`nbkit.studies.learning_rules.train_rule`) and return the final ``test_acc``,
    the history, the resolved rule ``settings``, and per layer over training
    ``weight_angles`` (W against Bᵀ), ``delta_angles`` (the global δ angle: the rule's
    δx against full backprop's, on a fixed test batch), ``local_delta_angles`` (B δy
    against Wᵀ δy) and ``norm_ratios`` (‖B‖/‖W‖), each as ``{"steps": [...],
    "layers": {layer: [value per logged step]}}``. ``compile`` and the ``checkpoint``
    path are passed on."""
    s = learning_rules.Settings.from_config(config)
    run = learning_rules.train_rule(config["rule"], s, device=device, compile=compile,
                                    checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    finite = run["finite"]
    accs = run["history"]["test_acc"]
    return {"test_acc": run["test_acc"][-1] if finite else math.nan,  # stored as null
            "best_test_acc": max(accs) if accs else math.nan,
            "diverged_at": run["diverged_at"],
            "train_seconds": run["train_seconds"], "history": _history(run["history"]),
            "settings": dict(run["coefficients"]),
            "weight_angles": learning_rules.angle_series(run, "alignment"),
            "delta_angles": learning_rules.angle_series(run, "gradient"),
            "local_delta_angles": learning_rules.angle_series(run, "gradient_local"),
            "norm_ratios": learning_rules.angle_series(run, "norm_ratio"),
            "finite": run["finite"]}
