"""The declared experiments: the paper-scale ("full") grids and their CPU-sized ("quick")
counterparts, built from the studies' own settings.

- ``layer_collapse`` (SynFlow paper, Fig. 1): every pruner at log10 ρ = 0, 0.25, ..., 6
  on vgg16_bn at initialization; per-layer densities and the critical compression
  (:mod:`nbkit.studies.collapse`).
- ``accuracy_vs_compression`` (Fig. 6): vgg16_bn pruned at ρ = 10, 100, 1000 (and
  dense), then trained on CIFAR-10; the paper's recipe ("full") or a shortened one
  ("short") (:mod:`nbkit.studies.pruned_training`).
- ``learning_rules``: resnet20 trained on CIFAR-10 with every learning rule; final
  accuracy and weight and δ angles per layer over training
  (:mod:`nbkit.studies.learning_rules`).

A run's configuration is its study's ``settings.config()`` plus the grid's axes (the
pruner or rule, the compression, the seed); its kind (:mod:`.kinds`) turns it back into
settings and calls the study. The pruners and rules come from their registries. A grid
is {"base", "axes", "include", "per"}; see :mod:`nbkit.experiments.runner`.
"""

from __future__ import annotations

from .. import pruning, rules
from ..studies import collapse, learning_rules, pruned_training
from ..train import RECIPES, steps_per_epoch
from . import summary
from .spec import Experiment, register_experiment

__all__ = ["RECIPES", "PRUNERS", "RULES", "LOG10_RHO_FIG1", "LAYER_COLLAPSE",
           "ACCURACY_VS_COMPRESSION", "LEARNING_RULES"]

PRUNERS = pruning.methods()      # registry order: random, magnitude, snip, grasp, synflow
FIG1_PRUNERS = pruning.methods(variants=True)  # and the paper's own GraSP, after grasp
RULES = rules.ordered()          # display order: backprop first
LOG10_RHO_FIG1 = [i / 4 for i in range(25)]  # 0, 0.25, ..., 6 (exact binary fractions)

# The models of the paper-scale and the CPU-sized grids.
VGG16 = {"model": "vgg16_bn", "model_kwargs": {}, "num_classes": 10}
RESNET20 = {"model": "resnet20", "model_kwargs": {}, "num_classes": 10}
TINY_CONV = {"model": "conv", "model_kwargs": {"depth": 4, "width": 8}, "num_classes": 10}
SMALL_CONV = {"model": "conv", "model_kwargs": {"depth": 4, "width": 16}, "num_classes": 10}
QUICK_TRAIN = {**RECIPES["quick"], "batch_size": 64}  # capped at a few dozen steps below


def _base(settings, model: dict) -> dict:
    """A grid's shared keys: the study settings' run configuration and the model."""
    return {**settings.config(), **model}


LAYER_COLLAPSE = register_experiment(Experiment(
    name="layer_collapse",
    kind="prune_at_init",
    label=("seed", "method", "log10_rho"),
    description="Fig. 1 of the SynFlow paper: per-layer density and layer collapse of "
                "vgg16_bn pruned at initialization, every pruner, log10 rho 0..6.",
    notes="The paper ran Fig. 1 on CIFAR-100 (num_classes=100); these runs take SNIP and "
          "GraSP pruning data from CIFAR-10 (the JPEG copy) and, unless num_classes=100 "
          "was set, a 10-class head, which changes N from 14,761,664 to 14,715,584 "
          "weights. 'grasp' is GraSP at temperature 200 (Wang et al., and the SynFlow code "
          "today); 'grasp_paper' is GraSP as the SynFlow paper's code ran it for the "
          "published figures (temperature 1, the highest -(H g) * theta kept). Critical "
          "compression: the largest log10 rho of the grid at which no prunable layer has "
          "density 0.",
    variants={
        "full": {"base": _base(collapse.FULL.replace(data="cifar10"), VGG16),
                 "axes": {"seed": [0, 1, 2], "method": FIG1_PRUNERS,
                          "log10_rho": LOG10_RHO_FIG1}},
        "quick": {"base": _base(collapse.QUICK, SMALL_CONV),
                  "axes": {"seed": [0], "method": FIG1_PRUNERS,
                           "log10_rho": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]}},
    },
    summarize=summary.layer_collapse,
))

# Highest compression first: a sweep cut short has every pruner at rho = 1000 and dense.
_AVC_AXES = {"log10_rho": [3.0, 2.0, 1.0], "method": PRUNERS}
_DENSE = [{"method": pruned_training.DENSE, "log10_rho": 0.0}]
_PAPER = pruned_training.FULL.replace(name="paper", data="cifar10", max_iterations=None,
                                      train=RECIPES["paper"])
ACCURACY_VS_COMPRESSION = register_experiment(Experiment(
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
        # the paper's grid, and GraSP as the paper's code ran it (T = 1) beside T = 200
        "full": {"base": _base(_PAPER, VGG16),
                 "axes": {"seed": [0, 1, 2], **_AVC_AXES, "method": FIG1_PRUNERS},
                 "include": _DENSE},
        "short": {"base": _base(_PAPER.replace(name="short", train=RECIPES["short"]), VGG16),
                  "axes": {"seed": [0], **_AVC_AXES}, "include": _DENSE},
        "quick": {"base": _base(pruned_training.QUICK.replace(
                      train={**QUICK_TRAIN, "steps": 40}), TINY_CONV),
                  "axes": {"seed": [0], "log10_rho": [2.0, 1.0], "method": PRUNERS},
                  "include": _DENSE},
    },
    summarize=summary.accuracy_vs_compression,
    compact=summary.compact_history,
))


def _rules_settings(name: str, recipe: dict, log_every: int) -> learning_rules.Settings:
    """resnet20 on CIFAR-10 with [TR]'s default coefficients, B updated by the task
    optimizer, δ angles on 256 test images, every test accuracy on the whole test split."""
    return learning_rules.FULL.replace(name=name, data="cifar10", train=recipe,
                                       log_every=log_every, angle_batch=256,
                                       eval_samples=None, preset=None)


LEARNING_RULES = register_experiment(Experiment(
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
        "full": {"base": _base(_rules_settings("full", RECIPES["resnet"],
                                               4 * steps_per_epoch(RECIPES["resnet"])),
                               RESNET20),
                 "axes": {"seed": [0], "rule": RULES}},
        "short": {"base": _base(_rules_settings("short", RECIPES["short_rules"],
                                                steps_per_epoch(RECIPES["short_rules"])),
                                RESNET20),
                  "axes": {"seed": [0], "rule": RULES}},
        "quick": {"base": _base(learning_rules.QUICK.replace(
                      train={**QUICK_TRAIN, "steps": 30}, log_every=10, eval_samples=None),
                      TINY_CONV),
                  "axes": {"seed": [0], "rule": RULES}},
    },
    summarize=summary.learning_rules,
    compact=summary.compact_history,
))
