"""Small shared test data: settings cut down to seconds, and made-up collected files."""

from __future__ import annotations

import copy
import json

import torch

from nbkit import pruning
from nbkit.studies import learning_rules, pruned_training, two_routes

# Notebook 05's quick settings, cut to a few steps and small evaluation batches.
SMALL_RULES = learning_rules.settings("quick", train={"steps": 45, "batch_size": 32},
                                      log_every=15, eval_samples=200, angle_batch=32)
# Notebook 06's grid cut to 2 depths, 2 noise levels, 3 rules and 80 steps.
SMALL_TWO_ROUTES = two_routes.settings(
    "quick", depths=(2, 4), sigmas=(0.0, 1.0), train={**two_routes.QUICK.train, "steps": 80},
    rules=("backprop", "information_alignment", "symmetric_alignment"))
# Notebook 04's quick MLP at 1/8 width, pruned to 10 and 1000, one epoch.
TINY_PRUNED = pruned_training.settings("quick", model_kwargs={"depth": 3, "width": 16},
                                       max_iterations=5, log10_rhos=(1.0, 3.0),
                                       train={"epochs": 1})


def write_fig6_results(path, top1: dict, variant: str = "full") -> None:
    """A collected ``accuracy_vs_compression`` file with dense 93% and ``top1``
    ({pruner: {log10 rho: top-1}}), each with a spread of 0.5 over seeds."""
    merged = {"experiment": "accuracy_vs_compression", "variant": variant,
              "config": {"model": "vgg16_bn", "data": "cifar10", "num_classes": 10,
                         "train": {"epochs": 160}},
              "provenance": {"runs": 16, "devices": ["NVIDIA H100"], "last_date": "2026-01-02"},
              "summary": {"dense_top1": 93.0, "top1": top1,
                          "top1_std": {m: {k: 0.5 for k in v} for m, v in top1.items()}}}
    path.write_text(json.dumps(merged))


def check_compiled_gradients(model, masks: dict, x, **compile_options):
    """Compile a deep copy of the pruned ``model`` (aot_eager), run both backward on
    ``x``, and check that the copy gets eager's gradients, zero on every pruned weight.
    Returns the compiled copy's module."""
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, backend="aot_eager", **compile_options)
    model(x).square().sum().backward()
    compiled(x).square().sum().backward()
    for name, mask in masks.items():
        module, attr = pruning.locate(model, name)
        twin_module, _ = pruning.locate(twin, name)
        got = getattr(twin_module, f"{attr}_orig").grad
        torch.testing.assert_close(got, getattr(module, f"{attr}_orig").grad)
        assert (got[~mask] == 0).all(), f"{name}: a pruned weight has a gradient"
    return twin


class Stop(Exception):
    """Raised by :class:`StopAt`: a run stopped as if its machine had been taken back."""


class StopAt:
    """A callback that stops training (raises :class:`Stop`) at the end of ``epoch``,
    before that epoch's checkpoint is saved; None never stops."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if self.epoch is not None and state.epoch == self.epoch:
            raise Stop
