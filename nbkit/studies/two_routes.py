"""[TR]'s two routes (notebook 06): local rules against weight estimation as the network
gets deeper and the updates noisier. One grid trains every rule at every (depth, update
noise σ) point; the app's sliders only index it.

>>> grid = two_routes_grid(QUICK)
>>> grid["test_acc"]["information_alignment"][-1][0]    # deepest net, no noise
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .. import device as _device
from .. import rules
from . import learning_rules, results
from .common import StudySettings, cached, for_mode

__all__ = ["Settings", "QUICK", "FULL", "MODES", "settings", "point_settings",
           "two_routes_grid", "STUDIES", "shipped", "depth_of", "x_value", "gaps",
           "ratio_sweep", "ratio_spread"]


@dataclass(frozen=True)
class Settings(StudySettings):
    """The depth × noise grid.

    Args:
        model: ``"mlp"`` (BatchNorm MLPs of ``width``, depth = weight layers) or
            ``"resnet"`` (CIFAR ResNets, depth = ``resnet{depth}``).
        depths, sigmas, rules: the grid's axes.
        data, image_size: the dataset, and the size its images are pooled to.
        train: keyword arguments of :func:`nbkit.train.fit`.
        preset: the rules' coefficients (see :func:`nbkit.rules.convert`).
        seed, threads: as in :class:`nbkit.studies.learning_rules.Settings`.
    """

    model: str = "mlp"
    width: int = 64
    batchnorm: bool = True
    depths: tuple = (2, 4, 6)
    sigmas: tuple = (0.0, 0.3, 1.0)
    rules: tuple = ("backprop", "weight_mirror", "information_alignment", "kolen_pollack",
                    "activation_alignment", "symmetric_alignment")
    data: str = "cifar10-mini"
    image_size: int | None = 8
    train: dict = field(default_factory=dict)
    preset: str | None = "quick"
    seed: int = 0
    threads: int | None = None


# Quick: BatchNorm MLPs on cifar10-mini shrunk to 8×8 pixels, 80 steps each (54 runs,
# about 9 s on one CPU core; at 100 steps notebook 06 took 33 s with one core busy, and
# its three live checks hold at both). Full: CIFAR ResNets
# on CIFAR-10 for two epochs each, on a GPU (84 runs).
QUICK = Settings(
    "quick", model="mlp", width=64, batchnorm=True, depths=(2, 4, 6), sigmas=(0.0, 0.3, 1.0),
    data="cifar10-mini", image_size=8,
    train={"steps": 80, "batch_size": 128, "lr": 0.05, "momentum": 0.9,
           "weight_decay": 5e-4, "schedule": "cosine", "augment": False},
    preset="quick", threads=1)
FULL = Settings(
    "full", model="resnet", depths=(20, 32, 44, 56), sigmas=(0.0, 0.1, 0.3),
    rules=("backprop", "feedback_alignment", "weight_mirror", "information_alignment",
           "kolen_pollack", "activation_alignment", "symmetric_alignment"),
    data="cifar10", image_size=None,
    train={"steps": 782, "batch_size": 128, "lr": 0.1, "momentum": 0.9,
           "weight_decay": 1e-4, "schedule": "cosine", "augment": True},
    preset="quick")
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL`, with ``changes``."""
    return for_mode(MODES, mode, **changes)


def point_settings(s: Settings, depth: int, sigma: float) -> learning_rules.Settings:
    """The :class:`~nbkit.studies.learning_rules.Settings` of one grid point: logged only
    before and after training, with no δ angles (the grid shows final weight angles)."""
    if s.model == "resnet":
        model, kwargs = f"resnet{depth}", {}
    else:
        model, kwargs = s.model, {"depth": depth, "width": s.width, "batchnorm": s.batchnorm}
    return learning_rules.Settings(
        s.name, model=model, model_kwargs=kwargs, data=s.data, image_size=s.image_size,
        train=dict(s.train), log_every=None, angle_batch=0, eval_samples=None,
        preset=s.preset, sigma=float(sigma), seed=s.seed, threads=s.threads)


def two_routes_grid(s: Settings = QUICK, *, device=None, progress: bool = True) -> dict:
    """Final test accuracy and mean final weight angle of every rule of ``s`` at every
    (depth, σ) point, as the grid :func:`nbkit.viz.rules.two_routes_figure` draws:
    ``{"depths", "sigmas", "rules", "routes", "test_acc": {rule: [[acc per σ] per
    depth]}, "alignment": {rule: [[degrees per σ] per depth]}, "chance", "note",
    "depth_label", "settings"}``. Cached: the same settings return at once."""
    for r in s.rules:
        rules.get(r)
    return _grid(s, _device.get(device), progress=progress)


@cached(maxsize=4)
def _grid(s, device, *, progress=True) -> dict:
    points = [(r, d, sg) for d in s.depths for sg in s.sigmas for r in s.rules]
    acc = {r: [[math.nan] * len(s.sigmas) for _ in s.depths] for r in s.rules}
    ang = {r: [[math.nan] * len(s.sigmas) for _ in s.depths] for r in s.rules}
    for r, d, sg in tqdm(points, desc="depth × noise grid", disable=not progress, leave=False):
        i, j = s.depths.index(d), s.sigmas.index(sg)
        run = learning_rules.train_rule(r, point_settings(s, d, sg), device=device)
        acc[r][i][j] = run["test_acc"][-1] if run["finite"] else math.nan
        ang[r][i][j] = (learning_rules.mean_over_layers(run["alignment"]) if run["finite"]
                        else math.nan)
    size = f", {s.image_size}×{s.image_size} px" if s.image_size else ""
    model = ("CIFAR ResNets" if s.model == "resnet" else
             f"{s.model} (width {s.width}" + (", BatchNorm" if s.batchnorm else "") + ")")
    t = s.train
    note = (f"{model} on {s.data}{size}; {t['steps']} SGD steps of batch {t['batch_size']}, "
            f"lr {t['lr']:g}; {'quick-mode' if s.preset == 'quick' else 'paper'} "
            "coefficients; one seed")
    depth_label = "depth (ResNet layers)" if s.model == "resnet" else "depth (weight layers)"
    return {"depths": list(s.depths), "sigmas": list(s.sigmas), "rules": list(s.rules),
            "routes": {r: rules.route(r) for r in s.rules}, "test_acc": acc, "alignment": ang,
            "chance": 0.1, "note": note, "depth_label": depth_label, "settings": s.as_dict()}


# ------------------------------------------------------------------ the shipped studies

STUDIES = ("two_routes_depth", "two_routes_noise", "wm_sensitivity")


def shipped(name: str, variant: str = "cpu", folder=None):
    """The collected rows of one of [TR]'s CIFAR studies (``two_routes_depth``,
    ``two_routes_noise``, ``wm_sensitivity``) shipped in data/results/, as
    ``(rows, ResultFile)``; ``(None, None)`` when there is none, ``(None, file)`` when
    the file cannot be read (its ``error`` says why)."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose one of {list(STUDIES)}")
    found = results.collected(name, variant, folder)
    if found is None or not found.ok:
        return None, found
    return found.doc["summary"]["rows"], found


def depth_of(model: str) -> int:
    """``"resnet56"`` -> 56."""
    return int("".join(ch for ch in model if ch.isdigit()))


def x_value(row: dict, x: str) -> float:
    """A collected row's position on the axis ``x``: ``"depth"`` (from the model's name),
    ``"ratio"`` (β/α of its coefficients) or any numeric key of the row (``"sigma"``)."""
    if x == "depth":
        return float(depth_of(row["model"]))
    if x == "ratio":
        c = list(row["coefficients"].values())
        return c[1] / c[0]
    return float(row[x])


def gaps(rows: list, by: str) -> dict:
    """``{rule: {x: backprop's top-1 minus the rule's}}`` at equal model and ``by``
    (``"depth"`` or ``"sigma"``), in points; a diverged run counts as a gap of None."""
    def x_of(row):
        return x_value(row, by)

    base = {(row["model"], x_of(row)): row["top1"] for row in rows
            if rules.route(row["rule"]) == "reference"}
    out: dict = {}
    for row in rows:
        if rules.route(row["rule"]) == "reference" or (row["model"], x_of(row)) not in base:
            continue
        b = base[(row["model"], x_of(row))]
        out.setdefault(row["rule"], {})[x_of(row)] = (
            None if row["top1"] is None or b is None else b - row["top1"])
    return {r: dict(sorted(v.items())) for r, v in out.items()}


def ratio_sweep(rows: list) -> list:
    """The rows of the β/α study whose coefficients are the rule's own but for β: the
    sweep itself, without the runs that vary another coefficient (IA's ridge γ)."""
    def own(row):
        default = rules.get(row["rule"]).coefficients
        return all(v == default.get(k) for k, v in row["coefficients"].items() if k != "beta")
    return [row for row in rows if own(row)]


def ratio_spread(rows: list) -> dict:
    """Per (rule, model) of the β/α sweep (:func:`ratio_sweep` of ``rows``): the lowest
    and highest top-1 (``low``, ``high``), the ``range`` between them in points, the β/α
    of the best run (``best_ratio``) and the number of ``runs``; diverged runs count in
    ``runs`` only."""
    out: dict = {}
    for row in ratio_sweep(rows):
        out.setdefault((row["rule"], row["model"]), []).append((x_value(row, "ratio"),
                                                                 row["top1"]))
    table = {}
    for key, pts in sorted(out.items()):
        ok = [(ratio, top1) for ratio, top1 in pts if top1 is not None]
        if not ok:
            continue
        best = max(ok, key=lambda p: p[1])
        table[key] = {"low": min(t for _, t in ok), "high": best[1], "best_ratio": best[0],
                      "range": best[1] - min(t for _, t in ok), "runs": len(pts)}
    return table
