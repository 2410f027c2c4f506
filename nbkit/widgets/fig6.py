"""Fig. 6 of the SynFlow paper at full scale, for notebook 04: the published accuracy
curves (mean ± std of 3 seeds) beside nbkit's own full-scale results from
``data/results/`` when a GPU run has made them (``python -m nbkit.experiments
accuracy_vs_compression --collect``).

- :func:`full_scale_app`: a dataset/model dropdown and an error-bar toggle over
  :func:`nbkit.viz.training.accuracy_figure`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import ipywidgets as W

from .. import data as _data
from ..viz import training as vt
from ..viz.style import label_for
from .app import App
from .training import PRUNERS

__all__ = ["load_published", "published_curves", "load_full_results", "full_scale",
           "load_paper_recipe_dense", "comparison_table",
           "full_scale_app", "REFERENCE_FILE", "RESULTS_DIR", "RESULT_FILES", "DENSE_FILE"]

REFERENCE_FILE = _data.DATA_DIR / "reference" / "synflow_fig6.json"
RESULTS_DIR = _data.DATA_DIR / "results"
# Collected runs of ``python -m nbkit.experiments accuracy_vs_compression``, best first.
RESULT_FILES = ("accuracy_vs_compression.json", "accuracy_vs_compression.short.json")
# The paper's 160-epoch recipe run for dense vgg16_bn alone (a reference for a shortened grid).
DENSE_FILE = "accuracy_vs_compression.paper_recipe_dense.json"


def load_published(path=None) -> dict:
    """The published Fig. 6 accuracies (``data/reference/synflow_fig6.json``)."""
    path = Path(path or REFERENCE_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it ships with nbkit in data/reference/ "
                                "(restore it from the repository)")
    return json.loads(path.read_text())


def published_curves(key: str = "cifar10/vgg16_bn", reference: dict | None = None,
                     pruners=PRUNERS) -> tuple[list[dict], float]:
    """The published curves (mean ± std over 3 seeds) and dense accuracy of ``key``
    ("<dataset>/<model>")."""
    ref = reference or load_published()
    if key not in ref["results"]:
        raise ValueError(f"no published Fig. 6 numbers for {key!r}; choose one of "
                         f"{sorted(ref['results'])}")
    entry = ref["results"][key]
    curves = [{"method": p, "log10_rho": ref["log10_compression"],
               "top1": entry["pruners"][p]["mean"], "std": entry["pruners"][p]["std"],
               "kind": "published"} for p in pruners if p in entry["pruners"]]
    return curves, entry["dense"]


def _key(cfg: dict) -> str:
    """"<dataset>/<model>" of a collected file's common config."""
    dataset = "cifar100" if cfg.get("num_classes") == 100 else cfg.get("data", "cifar10")
    return f"{dataset}/{cfg.get('model', '?')}"


def _made(prov: dict, noun: str) -> str:
    """"N <noun> on <devices>, <date>" from a collected file's provenance."""
    return (f"{prov.get('runs', '?')} {noun} on {', '.join(prov.get('devices', [])) or '?'}, "
            f"{str(prov.get('last_date', '?'))[:10]}")


def load_full_results(results_dir=None) -> dict | None:
    """nbkit's own full-scale Fig. 6 results: the first of :data:`RESULT_FILES` found in
    ``results_dir`` (default ``data/results/``), as ``{"key", "curves", "dense", "path",
    "caption", "label"}``; None when there is none. A file that cannot be read gives
    ``{"error": ...}`` instead of raising, so the published curves still show."""
    folder = Path(results_dir or RESULTS_DIR)
    for name in RESULT_FILES:
        path = folder / name
        if path.is_file():
            break
    else:
        return None
    try:
        merged = json.loads(path.read_text())
        summary, cfg = merged["summary"], merged.get("config", {})
        top1, std = summary["top1"], summary.get("top1_std", {})
        variant = merged.get("variant", "?")
        tag = "nbkit, full scale" if variant == "full" else f"nbkit, {variant} recipe"
        curves = []
        for method in PRUNERS:
            if method not in top1:
                continue
            pts = sorted((float(k), v) for k, v in top1[method].items() if v is not None)
            curves.append({"method": method, "log10_rho": [p[0] for p in pts],
                           "top1": [p[1] for p in pts], "kind": "full",
                           "label": f"{label_for(method)} ({tag})",
                           "std": [std.get(method, {}).get(f"{p[0]:g}") or 0.0 for p in pts]})
        epochs = cfg.get("train", {}).get("epochs")
        caption = (f"nbkit ({variant} variant: {cfg.get('model', '?')}, {epochs} epochs, "
                   f"{_made(merged.get('provenance', {}), 'runs')}; CIFAR-10 as JPEG q75)")
        return {"key": _key(cfg), "curves": curves,
                "dense": summary.get("dense_top1"), "path": str(path), "caption": caption,
                "label": tag + (f", {epochs} ep." if epochs else "")}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return {"error": f"{path.name} could not be read ({type(e).__name__}: {e}); rerun "
                         "`python -m nbkit.experiments collect accuracy_vs_compression`",
                "path": str(path)}


def load_paper_recipe_dense(results_dir=None) -> dict | None:
    """nbkit's dense vgg16_bn trained with the paper's full recipe (:data:`DENSE_FILE`),
    as ``{"key", "top1", "epochs", "caption"}``; None when the file is absent or holds
    no dense run, ``{"error": ...}`` when it cannot be read."""
    path = Path(results_dir or RESULTS_DIR) / DENSE_FILE
    if not path.is_file():
        return None
    try:
        merged = json.loads(path.read_text())
        cfg = merged.get("config", {})
        top1 = merged["summary"]["dense_top1"]
        if top1 is None:
            return None
        epochs = cfg.get("train", {}).get("epochs")
        return {"key": _key(cfg), "top1": float(top1), "epochs": epochs,
                "caption": (f"dense {top1:.1f}% with the paper's recipe ({epochs} epochs, "
                            f"{_made(merged.get('provenance', {}), 'run')})")}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return {"error": f"{path.name} could not be read ({type(e).__name__}: {e})"}


def full_scale(key: str = "cifar10/vgg16_bn", error_bars: bool = True,
               results_dir=None) -> dict:
    """Published curves of ``key`` plus nbkit's full-scale ones when they exist for it."""
    curves, dense = published_curves(key)
    if not error_bars:
        for c in curves:
            c.pop("std", None)
    found = load_full_results(results_dir)
    denses = {"dense (published)": dense}
    ours = None
    if found and "error" not in found and found["key"] == key:
        ours = found
        own = [dict(c) for c in found["curves"]]
        if not error_bars:
            for c in own:
                c.pop("std", None)
        curves = own + curves
        if found["dense"] is not None:
            denses["dense (nbkit)"] = found["dense"]
    paper_dense = load_paper_recipe_dense(results_dir)
    if paper_dense and "error" not in paper_dense:
        if paper_dense["key"] == key:
            denses[f"dense (nbkit, {paper_dense['epochs']} ep.)"] = paper_dense["top1"]
        else:
            paper_dense = None  # for another dataset or model: not drawn, not described
    chance = 1.0 if key.startswith("cifar100") else 0.5 if key.startswith("tiny") else 10.0
    return {"key": key, "curves": curves, "dense": denses, "chance": chance, "found": found,
            "ours": ours, "paper_dense": paper_dense}


def comparison_table(key: str = "cifar10/vgg16_bn", results_dir=None) -> str:
    """Top-1 at ρ = 10, 100, 1000 for every pruner, published beside nbkit's own
    full-scale results (when ``data/results/`` has them for ``key``), each with its
    accuracy relative to its own dense network, as plain text."""
    result = full_scale(key, results_dir=results_dir)
    rhos = (1.0, 2.0, 3.0)
    tables = [("paper, Fig. 6, 160 ep.", result["dense"]["dense (published)"],
               [c for c in result["curves"] if c["kind"] == "published"])]
    if result["ours"]:
        tables.append((result["ours"]["label"], result["dense"].get("dense (nbkit)"),
                       [c for c in result["curves"] if c["kind"] == "full"]))

    def cell(curve, rho, dense):
        at = dict(zip(curve["log10_rho"], curve["top1"]))
        if rho not in at:
            return f"{'-':>11}"
        rel = f" {at[rho] / dense:.2f}" if dense else ""
        return f"{at[rho]:5.1f}{rel:>6}"

    head = f"{'':9}" + "".join(f"  {f'{name} (dense {dense:.1f}%)':<35}"
                               for name, dense, _ in tables)
    sub = f"{'pruner':9}" + "".join("  " + " ".join(f"{f'ρ = 10^{r:g}':>11}" for r in rhos)
                                    for _ in tables)
    rows = [f"top-1 % on {key} (and relative to dense)", head, sub]
    for method in PRUNERS:
        line = f"{method:9}"
        for _, dense, curves in tables:
            curve = next((c for c in curves if c["method"] == method), None)
            line += "  " + " ".join(cell(curve, r, dense) if curve else f"{'-':>11}"
                                    for r in rhos)
        rows.append(line)
    extra = result["paper_dense"]
    if extra and "error" not in extra:
        rows.append(f"nbkit {extra['caption']}")
    return "\n".join(row.rstrip() for row in rows)


DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "tinyimagenet": "Tiny ImageNet"}


def _build_full(result: dict):
    dataset, model = result["key"].split("/")
    dataset = DATASET_NAMES.get(dataset, dataset)
    note = ("dashed: published (SynFlow paper Fig. 6, mean ± std of 3 seeds, 160 epochs, "
            "original dataset release)")
    if result["ours"]:
        note += "<br>solid: " + result["ours"]["caption"]
    return vt.accuracy_figure(result["curves"], dense=result["dense"], chance=result["chance"],
                              title=f"Full scale: {model} on {dataset}", note=note,
                              height=520 + 30 * len(result["dense"]))  # room for the legend


def _describe_grid(result: dict) -> str:
    found = result["found"]
    if found is None:
        return ("No full-scale nbkit results in data/results/ yet: only the published curves "
                "are drawn. Make them on a GPU with <code>python -m nbkit.experiments "
                "accuracy_vs_compression --collect</code> (see data/results/README.md).")
    if "error" in found:
        return f"<span style='color:#B00020'>{html.escape(found['error'])}</span>"
    if result["ours"] is None:
        return html.escape(f"nbkit's full-scale results ({found['path']}) are for "
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
    keys = sorted(load_published()["results"])
    controls = {
        "key": W.Dropdown(options=keys, value=key, description="paper run"),
        "error_bars": W.Checkbox(value=True, description="error bars (std of 3 seeds)",
                                 indent=False),
    }
    return App(controls, lambda key, error_bars: full_scale(key, error_bars, results_dir),
               _build_full, describe=_describe_full)
