"""The CIFAR studies of [TR]'s claims, built from :mod:`nbkit.studies.learning_rules`
settings and run by the ``train_rule`` kind.

- ``two_routes_depth``: every rule on CIFAR ResNets of growing depth. [TR]: information
  alignment's gap to backprop widens with depth; weight estimation (SA, AA, KP) keeps up.
- ``two_routes_noise``: backprop and the weight-estimation rules under noisy updates
  (θ += lr·ξ, ξ ~ N(0, σ²) after every step). [TR]: SA and AA tolerate it.
- ``wm_sensitivity``: weight mirror and information alignment over a grid of β/α (and
  IA's ridge γ) on two architectures. [TR]: WM is fragile to its metaparameters and its
  tuning does not transfer across architectures; IA is more robust.

Variants: ``quick`` (seconds on a CPU; CI runs it), ``cpu`` (cifar10-mini at 16 × 16
pixels on half-width ResNets, about an hour on a 2-core CPU; its collected results
ship in data/results/) and ``full`` (CIFAR-10 at 32 × 32 on full-width ResNets, for a
GPU). The rules use the ``quick`` preset: [TR]'s coefficients with an Adam of B's own
for WM, IA and AA, the reference code's separate alignment optimizer; with B on the
task's SGD instead, IA and AA diverge on these convnets at lr 0.05-0.1 (see
:data:`nbkit.rules.QUICK_FEEDBACK`).
"""

from __future__ import annotations

from .. import rules
from ..studies import learning_rules
from . import summary
from .spec import Experiment, register_experiment

__all__ = ["TWO_ROUTES_DEPTH", "TWO_ROUTES_NOISE", "WM_SENSITIVITY", "RATIOS"]

WEIGHT_ESTIMATION = [r for r in rules.ordered() if rules.route(r) == "estimation"]
NOISY_RULES = rules.ordered(["backprop", *WEIGHT_ESTIMATION])
SENSITIVE_RULES = ["weight_mirror", "information_alignment"]
RATIOS = [0.001, 0.01, 0.1, 1.0]          # β/α, 1 is [TR]'s WM; IA's default is 0.5
IA_RIDGES = [1e-4, 1e-2]                   # γ beside IA's default 1e-3

_AUGMENT = {"momentum": 0.9, "nesterov": True, "schedule": "cosine", "augment": True}


def _settings(name: str, data: str, image_size, train: dict, log_every: int,
              angle_batch: int) -> dict:
    """A run configuration's shared keys: learning-rule settings with the quick preset."""
    s = learning_rules.Settings(name, data=data, image_size=image_size, train=train,
                                log_every=log_every, angle_batch=angle_batch,
                                eval_samples=None, preset="quick", num_classes=10)
    return s.config()


# quick: tiny nets and a few steps, to check the machinery in CI
_QUICK = _settings("quick", "cifar10-mini", 8, {"steps": 6, "batch_size": 32, "lr": 0.05,
                                                "weight_decay": 5e-4, **_AUGMENT}, 3, 16)
_QUICK_MODEL = {"model_kwargs": {"width_divisor": 4}}
# cpu: cifar10-mini at 16 × 16, half-width ResNets, 15 epochs (600 steps of batch 128)
_CPU_TRAIN = {"epochs": 15, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, **_AUGMENT}
_CPU = _settings("cpu", "cifar10-mini", 16, _CPU_TRAIN, 195, 128)
_CPU_MODEL = {"model_kwargs": {"width_divisor": 2}}
# the depth study at half the step: at lr 0.1 the 56-layer ResNet reached only 17 % with
# backprop in these 600 steps (33 % at 0.05), which would make every gap at depth 56 noise
_CPU_DEPTH = _settings("cpu", "cifar10-mini", 16, {**_CPU_TRAIN, "lr": 0.05}, 195, 128)
# full: CIFAR-10, full-width ResNets, 30 epochs of batch 128 (cosine), for a GPU
_FULL = _settings("full", "cifar10", None, {"epochs": 30, "batch_size": 128, "lr": 0.1,
                                             "weight_decay": 5e-4, **_AUGMENT}, 1560, 256)
_FULL_MODEL = {"model_kwargs": {}}

TWO_ROUTES_DEPTH = register_experiment(Experiment(
    name="two_routes_depth",
    kind="train_rule",
    label=("seed", "model", "rule"),
    description="[TR]'s depth claim on CIFAR: every learning rule trained on CIFAR ResNets "
                "of growing depth; final accuracy and weight and delta angles per run.",
    notes="Rules use the quick preset: [TR]'s coefficients, B of WM, IA and AA trained by "
          "an Adam of its own (lr 0.005), KP alpha 0.0075 with W at the task's weight decay. "
          "Variant 'cpu': cifar10-mini at 16x16 px, ResNets at half width, 15 epochs, "
          "lr 0.05 (at 0.1 backprop's resnet56 reached 17%); "
          "'full': CIFAR-10 (JPEG copy), full width, 30 epochs, cosine, batch 128.",
    variants={
        "quick": {"base": {**_QUICK, **_QUICK_MODEL},
                  "axes": {"seed": [0], "model": ["resnet20", "resnet32"],
                           "rule": ["backprop", "feedback_alignment", "information_alignment",
                                    "symmetric_alignment"]}},
        "cpu": {"base": {**_CPU_DEPTH, **_CPU_MODEL},
                "axes": {"seed": [0], "model": ["resnet20", "resnet32", "resnet56"],
                         "rule": rules.ordered()}},
        "full": {"base": {**_FULL, **_FULL_MODEL},
                 "axes": {"seed": [0], "model": ["resnet20", "resnet32", "resnet56",
                                                 "resnet110"],
                          "rule": rules.ordered()}},
    },
    summarize=summary.two_routes,
    compact=summary.compact_history,
))

TWO_ROUTES_NOISE = register_experiment(Experiment(
    name="two_routes_noise",
    kind="train_rule",
    label=("seed", "sigma", "rule"),
    description="[TR]'s noise claim on CIFAR: backprop and the weight-estimation rules with "
                "noisy updates (every updated tensor += lr * N(0, sigma^2) after each step; "
                "for KP only B).",
    notes="Rules use the quick preset (see two_routes_depth). resnet20; variant 'cpu': "
          "cifar10-mini at 16x16 px, half width, 15 epochs; 'full': CIFAR-10, 30 epochs.",
    variants={
        "quick": {"base": {**_QUICK, **_QUICK_MODEL, "model": "resnet20"},
                  "axes": {"seed": [0], "sigma": [0.0, 1.0],
                           "rule": ["backprop", "symmetric_alignment"]}},
        "cpu": {"base": {**_CPU, **_CPU_MODEL, "model": "resnet20"},
                "axes": {"seed": [0], "sigma": [0.0, 0.1, 0.3, 1.0], "rule": NOISY_RULES}},
        "full": {"base": {**_FULL, **_FULL_MODEL, "model": "resnet20"},
                 "axes": {"seed": [0], "sigma": [0.0, 0.1, 0.3, 1.0], "rule": NOISY_RULES}},
    },
    summarize=summary.two_routes,
    compact=summary.compact_history,
))


def _sensitivity_points() -> list[dict]:
    """WM and IA at every β/α of :data:`RATIOS` ([TR]'s α kept), and IA at other ridges."""
    wm = rules.get("weight_mirror").coefficients
    ia = rules.get("information_alignment").coefficients
    points = [{"rule": "weight_mirror",
               "coefficients": {"alpha": wm["alpha"], "beta": r * wm["alpha"]}}
              for r in RATIOS]
    points += [{"rule": "information_alignment",
                "coefficients": {**ia, "beta": r * ia["alpha"]}} for r in RATIOS]
    points += [{"rule": "information_alignment", "coefficients": {**ia, "gamma": g}}
               for g in IA_RIDGES]
    return points


WM_SENSITIVITY = register_experiment(Experiment(
    name="wm_sensitivity",
    kind="train_rule",
    label=("seed", "model", "rule", "coefficients"),
    description="[TR]'s fragility claim on CIFAR: weight mirror and information alignment "
                "over a grid of beta/alpha (and IA's ridge gamma), on a plain convnet and a "
                "ResNet; which rule's accuracy and delta angle hold still.",
    notes="B of both rules is trained by an Adam of its own (lr 0.005), so only the "
          "coefficients' ratios matter. For a conv layer [TR]'s weight mirror settles at "
          "(beta P / 2 alpha) W^T (P output positions): the ratio that gives B ~ W^T "
          "differs per layer and per architecture.",
    variants={
        "quick": {"base": {**_QUICK, **_QUICK_MODEL},
                  "axes": {"seed": [0], "model": ["resnet20"]},
                  "points": _sensitivity_points()[::len(RATIOS)][:2]},  # one WM, one IA
        "cpu": {"base": {**_CPU, **_CPU_MODEL},
                "axes": {"seed": [0], "model": ["conv", "resnet20"]},
                "points": _sensitivity_points(),
                "per": {"model": {"conv": {"model_kwargs": {"depth": 4, "width": 16}}}}},
        "full": {"base": {**_FULL, **_FULL_MODEL},
                 "axes": {"seed": [0], "model": ["resnet20", "resnet56"]},
                 "points": _sensitivity_points()},
    },
    summarize=summary.two_routes,
    compact=summary.compact_history,
))
