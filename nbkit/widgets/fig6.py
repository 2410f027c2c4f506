"""Fig. 6 of the SynFlow paper at full scale, for notebook 04: a dataset/model dropdown
and an error-bar toggle over :func:`nbkit.viz.training.accuracy_figure`, drawing the
published curves beside nbkit's own full-scale results (from
:mod:`nbkit.studies.fig6`).
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as W

from ..studies import fig6 as study
from ..viz import training as vt
from .app import App

__all__ = ["full_scale_app"]


def _build_full(result: dict):
    dataset, model = result["key"].split("/")
    dataset = study.DATASET_NAMES.get(dataset, dataset)
    note = ("dashed: published (SynFlow paper Fig. 6, mean ± std of 3 seeds, 160 epochs, "
            "original dataset release)")
    if result["ours"]:
        note += "<br>solid: " + result["ours"]["caption"]
    return vt.accuracy_figure(result["curves"], dense=result["dense"], chance=result["chance"],
                              title=f"Full scale: {model} on {dataset}", note=note,
                              height=430 + 24 * len(result["dense"]))  # room for the legend


def _describe_grid(result: dict) -> str:
    found = result["found"]
    if found is None:
        return ("No full-scale nbkit results in data/results/ yet: only the published curves "
                "are drawn. Make them on a GPU with <code>python -m nbkit.experiments "
                "accuracy_vs_compression --collect</code> (see data/results/README.md).")
    if "error" in found:
        return f"<span style='color:#B00020'>{html.escape(found['error'])}</span>"
    if result["ours"] is None:
        return html.escape(f"nbkit's full-scale results ({Path(found['path']).name}) are for "
                           f"{found['key']}; choose it to see them beside the paper.")
    return html.escape(f"Solid: {found['caption']}, from {Path(found['path']).name}. Its "
                       "JPEG re-encoding of CIFAR-10 costs a little accuracy against the "
                       "original release the paper used.")


def _describe_full(result: dict) -> str:
    text = _describe_grid(result)
    extra = result.get("paper_dense")
    if extra and "error" in extra:
        text += f" <span style='color:#B00020'>{html.escape(extra['error'])}</span>"
    elif extra:
        text += html.escape(f" The line 'dense (nbkit, {extra['epochs']} ep.)': "
                            f"{extra['caption']}.")
    return text


def full_scale_app(*, key: str = "cifar10/vgg16_bn", results_dir=None) -> App:
    """The published Fig. 6 for a chosen dataset and model, with nbkit's full-scale
    results beside it when ``data/results/`` has them."""
    keys = sorted(study.published()["results"])
    controls = {
        "key": W.Dropdown(options=keys, value=key, description="paper run"),
        "error_bars": W.Checkbox(value=True, description="error bars (std of 3 seeds)",
                                 indent=False),
    }
    def compute(key, error_bars):
        return study.full_scale(key, error_bars, results_dir)

    return App(controls, compute, _build_full, describe=_describe_full)
