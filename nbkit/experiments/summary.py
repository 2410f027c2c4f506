"""Summaries of finished runs, set beside the published numbers.

Each function takes the valid result records of one experiment (dicts with ``config``
and ``result``) and returns a small JSON-able dict. Accuracies are in percent here, as in
the papers; the published values are those of ``SCIENCE.md`` and of the SynFlow paper's
own result files (Fig. 6 values are means over its 3 seeds).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from ..pruning import scores as _scores

__all__ = ["layer_collapse", "accuracy_vs_compression", "learning_rules", "two_routes", "critical",
           "compact_history",
           "PAPER_CRITICAL", "PAPER_ACCURACY", "PAPER_RULE_ERROR"]

# Critical log10 compression, VGG-16-BN on CIFAR-100 (Fig. 1), median of 3 seeds.
PAPER_CRITICAL = {"random": 3.5, "magnitude": 2.75, "snip": 3.5, "grasp": 3.5, "synflow": 6.0}

# Top-1 (%) of VGG-16-BN on CIFAR-10 after 160 epochs (Fig. 6), mean of 3 seeds, keyed by
# log10 rho; "dense" is the paper's dense VGG-16 accuracy.
PAPER_ACCURACY = {
    "dense": 93.5,
    "synflow": {"1": 93.26, "2": 90.08, "3": 80.39},
    "snip": {"1": 92.26, "2": 89.15, "3": 76.25},
    "grasp": {"1": 91.84, "2": 87.49, "3": 70.93},
    "magnitude": {"1": 93.12, "2": 89.8, "3": 10.0},
    "random": {"1": 91.15, "2": 79.14, "3": 10.0},
}

# CIFAR-10 test error (%) of ResNet-20 from a public PyTorch benchmark (SCIENCE.md).
PAPER_RULE_ERROR = {"backprop": 8.6, "feedback_alignment": 32.2, "sign_symmetry": 10.1}


HISTORY_KEPT = ("epoch", "train_loss", "test_acc")


def compact_history(result: dict) -> dict:
    """A run's result for the collected file: the training history cut down to
    :data:`HISTORY_KEPT` (the per-run files keep all of it)."""
    if "history" not in result:
        return result
    history = {k: v for k, v in result["history"].items() if k in HISTORY_KEPT}
    return {**result, "history": history}


def _key(x: float) -> str:
    return f"{x:g}"


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def _std(xs):
    xs = [x for x in xs if x is not None]
    return statistics.pstdev(xs) if len(xs) > 1 else 0.0 if xs else None


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def critical(points) -> float | None:
    """The largest log10 rho among ``(log10_rho, failed)`` points that did not fail
    (None when all failed)."""
    ok = [r for r, failed in points if not failed]
    return max(ok) if ok else None


# ---------------------------------------------------------------------- layer collapse

def layer_collapse(records: list) -> dict:
    """Critical compression per pruner (per seed, median, and against the paper), the
    maximal critical compression log10(N/L), and the per-layer densities averaged over
    seeds (``density[method][log10_rho]``, in the order of ``layers``)."""
    by = defaultdict(lambda: defaultdict(list))
    dens = defaultdict(lambda: defaultdict(list))
    layers = sizes = None
    for r in records:
        c, res = r["config"], r["result"]
        rho = float(c["log10_rho"])
        eff = res.get("effective_density")
        by[c["method"]][c["seed"]].append((rho, bool(res["collapsed"]),
                                            eff is not None and eff <= 0))
        dens[c["method"]][_key(rho)].append(res["layer_density"])
        layers, sizes = layers or res.get("layers"), sizes or res.get("sizes")

    out = {"critical": {}, "critical_per_seed": {}, "critical_disconnected": {},
           "paper_critical_cifar100": PAPER_CRITICAL, "difference_from_paper": {},
           "layers": layers, "sizes": sizes, "density": {}}
    if sizes:
        out["maximal_log10_rho"] = math.log10(sum(sizes) / len(sizes))
    for method, seeds in sorted(by.items()):
        per_seed = {str(s): critical([(p[0], p[1]) for p in pts]) for s, pts in seeds.items()}
        disc = [critical([(p[0], p[1] or p[2]) for p in pts]) for pts in seeds.values()]
        med = _median(per_seed.values())
        out["critical_per_seed"][method] = per_seed
        out["critical"][method] = med
        out["critical_disconnected"][method] = _median(disc)
        paper = PAPER_CRITICAL.get(_scores.published_as(method))
        if paper is not None and med is not None:
            out["difference_from_paper"][method] = med - paper
        out["density"][method] = {
            rho: [_mean(col) for col in zip(*rows)]
            for rho, rows in sorted(dens[method].items(), key=lambda kv: float(kv[0]))}
    return out


# -------------------------------------------------------------- accuracy vs compression

def accuracy_vs_compression(records: list) -> dict:
    """Dense top-1 (%), and per pruner and log10 rho the mean top-1 (%), its spread over
    seeds and the ratio to dense, beside the paper's values."""
    dense, acc = [], defaultdict(lambda: defaultdict(list))
    num_classes = None
    for r in records:
        c, res = r["config"], r["result"]
        top1 = 100.0 * res["test_acc"]
        num_classes = num_classes or c.get("num_classes")
        if c["method"] == "dense":
            dense.append(top1)
        else:
            acc[c["method"]][_key(float(c["log10_rho"]))].append(top1)
    dense_mean = _mean(dense)
    out = {"dense_top1": dense_mean, "dense_top1_std": _std(dense), "dense_seeds": len(dense),
           "chance_top1": 100.0 / num_classes if num_classes else None,
           "top1": {}, "top1_std": {}, "relative_to_dense": {},
           "paper_top1": PAPER_ACCURACY,
           "paper_relative_to_dense": {
               m: {k: v / PAPER_ACCURACY["dense"] for k, v in pts.items()}
               for m, pts in PAPER_ACCURACY.items() if m != "dense"}}
    for method, pts in sorted(acc.items()):
        out["top1"][method] = {k: _mean(v) for k, v in pts.items()}
        out["top1_std"][method] = {k: _std(v) for k, v in pts.items()}
        if dense_mean:
            out["relative_to_dense"][method] = {k: _mean(v) / dense_mean
                                                for k, v in pts.items()}
    return out


# --------------------------------------------------------------------- learning rules

def learning_rules(records: list) -> dict:
    """Per rule: final top-1 (%) and test error (%) over seeds, the paper's error where
    published, and the last weight and δ angles per layer (mean over seeds)."""
    by = defaultdict(list)
    for r in records:
        by[r["config"]["rule"]].append(r["result"])
    out = {"top1": {}, "test_error": {}, "paper_test_error": PAPER_RULE_ERROR,
           "final_weight_angle": {}, "final_delta_angle": {}}
    for rule, results in sorted(by.items()):
        top1 = _mean([100.0 * r["test_acc"] for r in results if r["test_acc"] is not None])
        out["top1"][rule] = top1
        out["test_error"][rule] = None if top1 is None else 100.0 - top1
        for key, name in (("weight_angles", "final_weight_angle"),
                          ("delta_angles", "final_delta_angle")):
            finals = [_last(r[key]["layers"]) for r in results if r.get(key)]
            finals = [f for f in finals if f]
            if finals:
                out[name][rule] = {k: _mean([f.get(k) for f in finals]) for k in finals[0]}
    return out


def _last(layers: dict) -> dict:
    """``{layer: last logged value}`` of ``{layer: [values]}``."""
    return {k: v[-1] for k, v in layers.items() if v}


# ----------------------------------------------------------------------- two routes

def _mean_last(series: dict | None) -> float | None:
    """The mean over layers of each layer's last finite value of a logged series."""
    values = [v[-1] for v in ((series or {}).get("layers") or {}).values()
              if v and v[-1] is not None and math.isfinite(v[-1])]
    return _mean(values)


def two_routes(records: list) -> dict:
    """One row per run of the two-routes studies, ready for a table or a figure: the run's
    rule, model, update noise σ and coefficients, its final top-1 (%), and the final
    means over layers of the weight angle, the global and local δ angles and ‖B‖/‖W‖
    (None where a run diverged or logged none). Rows are sorted by model, rule, σ."""
    rows = []
    for r in records:
        c, res = r["config"], r["result"]
        finite = bool(res.get("finite", True)) and res.get("test_acc") is not None
        rows.append({
            "rule": c["rule"], "model": c.get("model"), "seed": c.get("seed"),
            "sigma": c.get("sigma", 0.0), "coefficients": c.get("coefficients") or {},
            "top1": 100.0 * res["test_acc"] if finite else None, "finite": finite,
            "weight_angle": _mean_last(res.get("weight_angles")) if finite else None,
            "delta_angle": _mean_last(res.get("delta_angles")) if finite else None,
            "local_delta_angle": _mean_last(res.get("local_delta_angles")) if finite else None,
            "norm_ratio": _mean_last(res.get("norm_ratios")) if finite else None})
    rows.sort(key=lambda row: (str(row["model"]), row["rule"], row["sigma"],
                               sorted(row["coefficients"].items())))
    return {"rows": rows}
