"""The declared experiments: the paper-scale ("full") grids and their CPU-sized ("quick")
counterparts, as plain data.

- ``layer_collapse`` (SynFlow paper, Fig. 1): every pruner at log10 ρ = 0, 0.25, ..., 6
  on vgg16_bn at initialization; per-layer densities and the critical compression.
- ``accuracy_vs_compression`` (Fig. 6): vgg16_bn pruned at ρ = 10, 100, 1000 (and
  dense), then trained on CIFAR-10; the paper's recipe ("full") or a shortened one
  ("short").
- ``learning_rules``: resnet20 trained on CIFAR-10 with every learning rule; final
  accuracy and weight and δ angles per layer over training.

A grid is {"base", "axes", "include", "per"}; see :mod:`nbkit.experiments.runner`.
"""

from __future__ import annotations

from . import summary
from .runner import Experiment

__all__ = ["EXPERIMENTS", "RECIPES", "PRUNERS", "RULES", "LOG10_RHO_FIG1", "names"]

PRUNERS = ["random", "magnitude", "snip", "grasp", "synflow"]
RULES = ["backprop", "feedback_alignment", "sign_symmetry", "weight_mirror", "kolen_pollack",
         "information_alignment", "activation_alignment", "symmetric_alignment"]
LOG10_RHO_FIG1 = [i / 4 for i in range(25)]  # 0, 0.25, ..., 6 (exact binary fractions)

# Training recipes, passed to nbkit.train.fit as keyword arguments.
RECIPES = {
    # The SynFlow paper's VGG recipe: 160 epochs, lr 0.1 x0.1 at epochs 60 and 120.
    "paper": dict(epochs=160, batch_size=128, lr=0.1, momentum=0.9, nesterov=True,
                  weight_decay=1e-4, schedule="multistep", milestones=[60, 120], gamma=0.1),
    # Shortened, sized to train all 16 vgg16_bn runs in about a quarter of an hour of
    # one GPU: 30 epochs with a cosine schedule, batch 512 (a quarter of the optimizer
    # steps, each one less dominated by per-kernel launch cost) at lr 0.2, and weight
    # decay 5e-4, the usual value for short CIFAR schedules.
    "short": dict(epochs=30, batch_size=512, lr=0.2, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", milestones=[], gamma=0.1),
    # Shortened for the learning rules: 20 epochs, cosine, batch 256 at lr 0.1; weight
    # decay as in the ResNet recipe.
    "short_rules": dict(epochs=20, batch_size=256, lr=0.1, momentum=0.9, nesterov=True,
                        weight_decay=1e-4, schedule="cosine", milestones=[], gamma=0.1),
    # The usual CIFAR ResNet recipe (He et al. 2016).
    "resnet": dict(epochs=160, batch_size=128, lr=0.1, momentum=0.9, nesterov=True,
                   weight_decay=1e-4, schedule="multistep", milestones=[80, 120], gamma=0.1),
    # CPU demo on the mini dataset (the quick variants cap it at a few dozen steps).
    "quick": dict(epochs=1, batch_size=128, lr=0.05, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", milestones=[], gamma=0.1),
}

# Small nets for quick mode.
TINY_CONV = {"model": "conv", "model_kwargs": {"depth": 4, "width": 8}}
SMALL_CONV = {"model": "conv", "model_kwargs": {"depth": 4, "width": 16}}

_PRUNE_BASE = {"num_classes": 10, "scope": "global", "schedule": "exponential",
               "iterations": 1, "prune_samples": 100, "prune_batch_size": 256}

LAYER_COLLAPSE = Experiment(
    name="layer_collapse",
    kind="prune_at_init",
    label=("seed", "method", "log10_rho"),
    description="Fig. 1 of the SynFlow paper: per-layer density and layer collapse of "
                "vgg16_bn pruned at initialization, every pruner, log10 rho 0..6.",
    notes="The paper ran Fig. 1 on CIFAR-100 (num_classes=100); these runs take SNIP and "
          "GraSP pruning data from CIFAR-10 (the JPEG copy) and, unless num_classes=100 "
          "was set, a 10-class head, which changes N from 14,761,664 to 14,715,584 "
          "weights. Critical compression: the largest log10 rho of the grid at which no "
          "prunable layer has density 0.",
    variants={
        "full": {"base": {"model": "vgg16_bn", "model_kwargs": {}, "data": "cifar10",
                          **_PRUNE_BASE},
                 "axes": {"seed": [0, 1, 2], "method": PRUNERS, "log10_rho": LOG10_RHO_FIG1},
                 "per": {"method": {"synflow": {"iterations": 100}}}},
        "quick": {"base": {**SMALL_CONV, "data": "cifar10-mini", **_PRUNE_BASE},
                  "axes": {"seed": [0], "method": PRUNERS,
                           "log10_rho": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]},
                  "per": {"method": {"synflow": {"iterations": 20}}}},
    },
    summarize=summary.layer_collapse,
)

# Highest compression first: a sweep cut short has every pruner at rho = 1000 and dense.
_AVC_AXES = {"log10_rho": [3.0, 2.0, 1.0], "method": PRUNERS}
ACCURACY_VS_COMPRESSION = Experiment(
    name="accuracy_vs_compression",
    kind="train_pruned",
    label=("seed", "method", "log10_rho"),
    description="Fig. 6 of the SynFlow paper for vgg16_bn on CIFAR-10: top-1 accuracy "
                "after training, pruned at initialization to rho = 10, 100, 1000, and "
                "dense.",
    notes="CIFAR-10 here is the JPEG (quality 75) re-encoding, which costs a little "
          "accuracy against the original release the paper used. Accuracies relative to "
          "dense divide by this run's own dense accuracy. Variant 'full' uses the paper's "
          "recipe (160 epochs, lr 0.1 x0.1 at 60 and 120, weight decay 1e-4, batch 128, "
          "Nesterov); 'short' uses 30 epochs with a cosine schedule, batch 512 at lr 0.2, "
          "weight decay 5e-4 and one seed.",
    variants={
        "full": {"base": {"model": "vgg16_bn", "model_kwargs": {}, "data": "cifar10",
                          **_PRUNE_BASE, "train": RECIPES["paper"]},
                 "axes": {"seed": [0, 1, 2], **_AVC_AXES},
                 "include": [{"method": "dense", "log10_rho": 0.0}],
                 "per": {"method": {"synflow": {"iterations": 100}}}},
        "short": {"base": {"model": "vgg16_bn", "model_kwargs": {}, "data": "cifar10",
                           **_PRUNE_BASE, "train": RECIPES["short"]},
                  "axes": {"seed": [0], **_AVC_AXES},
                  "include": [{"method": "dense", "log10_rho": 0.0}],
                  "per": {"method": {"synflow": {"iterations": 100}}}},
        "quick": {"base": {**TINY_CONV, "data": "cifar10-mini", **_PRUNE_BASE,
                           "train": {**RECIPES["quick"], "batch_size": 64, "steps": 40}},
                  "axes": {"seed": [0], "log10_rho": [2.0, 1.0], "method": PRUNERS},
                  "include": [{"method": "dense", "log10_rho": 0.0}],
                  "per": {"method": {"synflow": {"iterations": 20}}}},
    },
    summarize=summary.accuracy_vs_compression,
    compact=summary.compact_history,
)



def _steps_per_epoch(recipe: dict) -> int:
    """Optimizer steps per CIFAR-10 epoch (50,000 images, the last partial batch dropped)."""
    return 50_000 // recipe["batch_size"]


_RULE_BASE = {"num_classes": 10, "preset": None, "coefficients": {}, "feedback_lr": None,
              "angle_batch": 256}
LEARNING_RULES = Experiment(
    name="learning_rules",
    kind="train_rule",
    label=("seed", "rule"),
    description="resnet20 trained on CIFAR-10 with every learning rule of nbkit.rules: "
                "final accuracy, and the weight (W vs B^T) and delta angles per layer "
                "over training.",
    notes="CIFAR-10 here is the JPEG (quality 75) re-encoding. Rule coefficients are "
          "nbkit.rules' defaults (the [TR] values), with B updated by the task optimizer; "
          "the quick variant uses the rules' 'quick' preset. The published CIFAR-10 "
          "errors come from a public PyTorch benchmark (its sign-symmetry variant is uSF). "
          "The delta angle is measured on a fixed batch of test images. Variant 'full' uses "
          "the usual ResNet recipe (160 epochs, lr 0.1 x0.1 at 80 and 120); 'short' uses "
          "20 epochs with a cosine schedule at batch 256.",
    variants={
        "full": {"base": {"model": "resnet20", "model_kwargs": {}, "data": "cifar10",
                          **_RULE_BASE, "angle_every": 4 * _steps_per_epoch(RECIPES["resnet"]),
                          "train": RECIPES["resnet"]},
                 "axes": {"seed": [0], "rule": RULES}},
        "short": {"base": {"model": "resnet20", "model_kwargs": {}, "data": "cifar10",
                           **_RULE_BASE,
                           "angle_every": _steps_per_epoch(RECIPES["short_rules"]),
                           "train": RECIPES["short_rules"]},
                  "axes": {"seed": [0], "rule": RULES}},
        "quick": {"base": {**TINY_CONV, "data": "cifar10-mini",
                           **_RULE_BASE, "preset": "quick", "angle_every": 10,
                           "angle_batch": 64,
                           "train": {**RECIPES["quick"], "batch_size": 64, "steps": 30}},
                  "axes": {"seed": [0], "rule": RULES}},
    },
    summarize=summary.learning_rules,
    compact=summary.compact_history,
)

EXPERIMENTS = {e.name: e for e in (LAYER_COLLAPSE, ACCURACY_VS_COMPRESSION, LEARNING_RULES)}


def names() -> list[str]:
    """The declared experiments."""
    return sorted(EXPERIMENTS)
