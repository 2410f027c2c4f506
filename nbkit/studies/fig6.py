"""Fig. 6 of the SynFlow paper at full scale (notebook 04): the published accuracy curves
(mean ± std of 3 seeds) beside nbkit's own full-scale results in data/results/, when a
GPU run has made them (``python -m nbkit.experiments accuracy_vs_compression
--collect``).

>>> result = full_scale("cifar10/vgg16_bn")       # curves, dense lines, chance, captions
>>> print(comparison_table("cifar10/vgg16_bn"))
"""

from __future__ import annotations

from pathlib import Path

from .. import pruning
from . import results
from .pruned_training import METHODS, PRUNERS

__all__ = ["EXPERIMENT", "DENSE_FILE", "DATASET_NAMES", "published", "published_curves",
           "full_results", "paper_recipe_dense", "full_scale", "comparison_table"]

EXPERIMENT = "accuracy_vs_compression"
# The paper's 160-epoch recipe run of dense vgg16_bn alone (a reference for a shortened
# grid); its own name keeps it from being taken for the full grid.
DENSE_FILE = "accuracy_vs_compression.paper_recipe_dense.json"
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
                 "tinyimagenet": "Tiny ImageNet"}


def published(folder=None) -> dict:
    """The published Fig. 6 accuracies (``data/reference/synflow_fig6.json``)."""
    return results.published("synflow_fig6", folder)


def published_curves(key: str = "cifar10/vgg16_bn", reference: dict | None = None,
                     pruners=PRUNERS) -> tuple[list[dict], float]:
    """The published curves (mean ± std over 3 seeds) and dense accuracy of ``key``
    ("<dataset>/<model>")."""
    ref = reference or published()
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


def full_results(results_dir=None) -> dict | None:
    """nbkit's own full-scale Fig. 6 results: the best collected variant in
    ``results_dir`` (default data/results/), as ``{"key", "curves", "dense", "path",
    "caption", "label"}``; None when there is none; ``{"error", "path"}`` when the file
    cannot be read (so the published curves still show)."""
    found = results.collected(EXPERIMENT, folder=results_dir,
                              variants=results.VARIANT_ORDER)  # a quick grid is no Fig. 6
    if found is None:
        return None
    if not found.ok:
        return {"error": found.error, "path": str(found.path)}
    merged = found.doc
    try:
        summary, cfg = merged["summary"], merged.get("config", {})
        top1, std = summary["top1"], summary.get("top1_std", {})
        variant = merged.get("variant", "?")
        tag = "nbkit, full scale" if variant == "full" else f"nbkit, {variant} recipe"
        curves = []
        for method in METHODS:  # the five, and GraSP as the paper ran it where trained
            if method not in top1:
                continue
            pts = sorted((float(k), v) for k, v in top1[method].items() if v is not None)
            curves.append({"method": method, "log10_rho": [p[0] for p in pts],
                           "top1": [p[1] for p in pts], "kind": "full",
                           "label": f"{pruning.scores.label(method)} ({tag})",
                           "std": [std.get(method, {}).get(f"{p[0]:g}") or 0.0 for p in pts]})
        epochs = cfg.get("train", {}).get("epochs")
        caption = (f"nbkit ({variant} variant: {cfg.get('model', '?')}, {epochs} epochs, "
                   f"{results.made_text(merged.get('provenance', {}))}; CIFAR-10 as JPEG q75)")
        return {"key": _key(cfg), "curves": curves, "dense": summary.get("dense_top1"),
                "path": str(found.path), "caption": caption,
                "label": tag + (f", {epochs} ep." if epochs else "")}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return {"error": f"{found.name} could not be read ({type(e).__name__}: {e}); rerun "
                         f"`python -m nbkit.experiments collect {EXPERIMENT}`",
                "path": str(found.path)}


def paper_recipe_dense(results_dir=None) -> dict | None:
    """nbkit's dense vgg16_bn trained with the paper's full recipe (:data:`DENSE_FILE`),
    as ``{"key", "top1", "epochs", "caption"}``; None when the file is absent or holds
    no dense run, ``{"error": ...}`` when it cannot be read."""
    path = Path(results_dir or results.RESULTS_DIR) / DENSE_FILE
    if not path.is_file():
        return None
    found = results.read(path, EXPERIMENT)
    if not found.ok:
        return {"error": found.error}
    try:
        cfg = found.doc.get("config", {})
        top1 = found.doc["summary"]["dense_top1"]
        if top1 is None:
            return None
        epochs = cfg.get("train", {}).get("epochs")
        made = results.made_text(found.doc.get("provenance", {}), "run")
        return {"key": _key(cfg), "top1": float(top1), "epochs": epochs,
                "caption": f"dense {top1:.1f}% with the paper's recipe ({epochs} epochs, {made})"}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return {"error": f"{path.name} could not be read ({type(e).__name__}: {e})"}


def full_scale(key: str = "cifar10/vgg16_bn", error_bars: bool = True,
               results_dir=None) -> dict:
    """Published curves of ``key`` plus nbkit's full-scale ones when they exist for it:
    ``{"key", "curves", "dense" {line label: top-1}, "chance", "found" (see
    :func:`full_results`), "ours" (found, when it is for ``key``), "paper_dense"}``."""
    curves, dense = published_curves(key)
    if not error_bars:
        for c in curves:
            c.pop("std", None)
    found = full_results(results_dir)
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
    extra = paper_recipe_dense(results_dir)
    if extra and "error" not in extra:
        if extra["key"] == key:
            denses[f"dense (nbkit, {extra['epochs']} ep.)"] = extra["top1"]
        else:
            extra = None  # for another dataset or model: not drawn, not described
    chance = 1.0 if key.startswith("cifar100") else 0.5 if key.startswith("tiny") else 10.0
    return {"key": key, "curves": curves, "dense": denses, "chance": chance, "found": found,
            "ours": ours, "paper_dense": extra}


def comparison_table(key: str = "cifar10/vgg16_bn", results_dir=None) -> str:
    """Top-1 at ρ = 10, 100, 1000 for every pruner, published beside nbkit's own
    full-scale results (when data/results/ has them for ``key``), each with its
    accuracy relative to its own dense network, as plain text."""
    result = full_scale(key, results_dir=results_dir)
    rhos = (1.0, 2.0, 3.0)
    # (title, dense, curves, how a row's method is named there): the paper's GraSP row
    # serves both nbkit GraSPs (scores.published_as)
    tables = [("paper, Fig. 6, 160 ep.", result["dense"]["dense (published)"],
               [c for c in result["curves"] if c["kind"] == "published"],
               pruning.scores.published_as)]
    if result["ours"]:
        tables.append((result["ours"]["label"], result["dense"].get("dense (nbkit)"),
                       [c for c in result["curves"] if c["kind"] == "full"], str))

    def cell(curve, rho, dense):
        at = dict(zip(curve["log10_rho"], curve["top1"]))
        if rho not in at:
            return f"{'-':>11}"
        rel = f" {at[rho] / dense:.2f}" if dense else ""
        return f"{at[rho]:5.1f}{rel:>6}"

    shown = [m for m in METHODS if m in PRUNERS or any(
        c["method"] == m for _, _, curves, _ in tables for c in curves)]
    width = max(9, *map(len, shown))
    head = f"{'':{width}}" + "".join(f"  {f'{name} (dense {dense:.1f}%)':<35}"
                               for name, dense, _, _ in tables)
    sub = f"{'pruner':{width}}" + "".join("  " + " ".join(f"{f'ρ = 10^{r:g}':>11}" for r in rhos)
                                    for _ in tables)
    rows = [f"top-1 % on {key} (and relative to dense)", head, sub]
    for method in shown:
        line = f"{method:{width}}"
        for _, dense, curves, named in tables:
            curve = next((c for c in curves if c["method"] == named(method)), None)
            line += "  " + " ".join(cell(curve, r, dense) if curve else f"{'-':>11}"
                                    for r in rhos)
        rows.append(line)
    if result["found"] and "error" in result["found"]:
        rows.append(result["found"]["error"])
    extra = result["paper_dense"]
    if extra and "error" not in extra:
        rows.append(f"nbkit {extra['caption']}")
    return "\n".join(row.rstrip() for row in rows)
