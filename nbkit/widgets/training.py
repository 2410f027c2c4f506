"""Apps of the train-pruned-networks notebook (``04_train_pruned_networks``, the SynFlow
paper's Fig. 6).

- :func:`training_app`: prune at initialization with each pruner, train, and draw
  accuracy against compression as the runs finish (a progress bar, a Train button).
- :func:`shuffle_app`: the layer-wise shuffle sanity check at one compression.

The runs come from :mod:`nbkit.studies.pruned_training` (each trained run is cached on
its configuration, so a figure that needs runs made before only redraws); the
full-scale view is in :mod:`.fig6`.
"""

from __future__ import annotations

import html

import ipywidgets as W

from ..studies import pruned_training as study
from ..studies.pruned_training import PRUNERS
from ..viz import training as vt
from ..viz.style import label_for
from .app import App

__all__ = ["training_app", "shuffle_app"]


def _build_training(result: dict):
    curves, dense, chance = study.accuracy_curves(result["runs"])
    return vt.accuracy_figure(
        curves, dense=dense, chance=chance,
        title="Prune at init, then train: accuracy against compression",
        note=result["settings"].describe())


def _describe_training(result: dict) -> str:
    return html.escape(study.describe(result["runs"], result.get("todo", 0)))


def _pruner_select(pruners):
    return W.SelectMultiple(options=[(label_for(p), p) for p in PRUNERS], value=tuple(pruners),
                            description="pruners", rows=5)


def training_app(settings: study.Settings = study.QUICK, *, pruners=PRUNERS, log10_rhos=None,
                 shuffle: bool = False, device=None) -> App:
    """Accuracy against compression for the chosen pruners, trained when you press
    Train (the default run starts at once)."""
    rhos = tuple(float(r) for r in (settings.log10_rhos if log10_rhos is None else log10_rhos))
    choices = sorted({0.5, 1.0, 1.5, 2.0, 2.5, 3.0, *rhos})
    epochs = int(settings.train.get("epochs", 1))
    controls = {
        "pruners": _pruner_select(pruners),
        "log10_rhos": W.SelectMultiple(options=[(f"ρ = 10^{r:g}", r) for r in choices],
                                       value=rhos, description="compression", rows=5),
        "epochs": W.IntSlider(value=epochs, min=1, max=max(10, epochs), description="epochs"),
        "shuffle": W.Checkbox(value=shuffle, description="also layer-wise shuffled",
                              indent=False),
    }

    def compute(pruners, log10_rhos, epochs, shuffle):
        run_settings = settings.replace(train={**settings.train, "epochs": int(epochs)})
        yield from study.sweep(pruners, log10_rhos, run_settings, shuffle=shuffle,
                               device=device)

    return App(controls, compute, _build_training, run_button="Train",
               describe=_describe_training)


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


def shuffle_app(settings: study.Settings = study.QUICK, *, log10_rho: float = 2.0,
                pruners=PRUNERS, device=None) -> App:
    """The layer-wise shuffle sanity check at a chosen compression."""
    choices = sorted({0.5, 1.0, 1.5, 2.0, 2.5, 3.0, float(log10_rho)})
    controls = {
        "log10_rho": W.Dropdown(options=[(f"ρ = 10^{r:g}", r) for r in choices],
                                value=float(log10_rho), description="compression"),
        "pruners": _pruner_select(pruners),
    }

    def compute(log10_rho, pruners):
        yield from study.shuffle_check(log10_rho, pruners, settings, device=device)

    return App(controls, compute, _build_shuffle, run_button="Train", describe=_describe_shuffle)
