"""[TR]'s fragility claim, live (notebook 06): weight mirror and information alignment
trained at every β/α of a grid on two architectures, so that a slider shows which rule's
accuracy and δ angles hold still as β/α moves, and whether the best β/α of one
architecture is the best of the other.

>>> grid = sensitivity_grid(QUICK)
>>> grid["test_acc"]["weight_mirror"]["conv"]        # one accuracy per β/α

β/α is the ratio of a rule's second coefficient to its first, at [TR]'s first: for WM
amp over decay (its B settles at (β/2α) E[x xᵀ] Wᵀ, times a conv's output positions),
for IA null over amp (with [TR]'s decay γ kept). B is trained by its own Adam, as in the
quick preset, so only these ratios matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .. import device as _device
from .. import rules
from . import learning_rules
from .common import StudySettings, cached, for_mode

__all__ = ["Settings", "QUICK", "FULL", "MODES", "settings", "coefficients_at",
           "sensitivity_grid"]


@dataclass(frozen=True)
class Settings(StudySettings):
    """The β/α grid.

    Args:
        rules: the rules compared (each has at least two coefficients).
        ratios: the values of β/α.
        architectures: ``{label: (model, model_kwargs)}``.
        data, image_size, train, preset, seed, threads: as in
            :class:`nbkit.studies.learning_rules.Settings`.
    """

    rules: tuple = ("weight_mirror", "information_alignment")
    ratios: tuple = (0.001, 0.01, 0.1, 1.0, 10.0)
    architectures: dict = field(default_factory=lambda: {
        "MLP": ("mlp", {"depth": 4, "width": 64, "batchnorm": True}),
        "conv": ("conv", {"depth": 4, "width": 8})})
    data: str = "cifar10-mini"
    image_size: int | None = 8
    train: dict = field(default_factory=lambda: {
        "steps": 100, "batch_size": 128, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
        "schedule": "cosine", "augment": False})
    preset: str = "quick"
    seed: int = 0
    threads: int | None = 1


# Quick: three values of β/α around [TR]'s, not five, so that notebook 06 stays under 30 s
# on a slow or busy 2-core machine (it measured 30 s with five); both of its live checks
# hold with three, four and five. Full keeps five.
QUICK = Settings("quick", ratios=(0.1, 1.0, 10.0))
FULL = Settings(
    "full", architectures={"resnet20": ("resnet20", {}), "resnet56": ("resnet56", {})},
    data="cifar10", image_size=None, threads=None,
    train={"epochs": 10, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
           "schedule": "cosine", "augment": True})
MODES = {"quick": QUICK, "full": FULL}


def settings(mode: str = "quick", **changes) -> Settings:
    """:data:`QUICK` or :data:`FULL`, with ``changes``."""
    return for_mode(MODES, mode, **changes)


def coefficients_at(rule: str, ratio: float) -> dict:
    """The rule's [TR] coefficients with the second one set to ``ratio`` times the first."""
    coefficients = rules.get(rule).coefficients
    first, second = list(coefficients)[:2]
    return {**coefficients, second: ratio * coefficients[first]}


def sensitivity_grid(s: Settings = QUICK, *, device=None, progress: bool = True) -> dict:
    """Every rule of ``s`` at every β/α on every architecture (cached):
    ``{"rules", "ratios", "architectures", "test_acc", "weight_angle", "delta_angle",
    "local_delta_angle", "norm_ratio"}``, each metric ``{rule: {architecture: [value per
    ratio]}}`` (the final means over layers; NaN where a run diverged), and ``"note"``."""
    for r in s.rules:
        if len(rules.get(r).coefficients) < 2:
            raise ValueError(f"rule {r!r} has fewer than two coefficients: no β/α to vary")
    if not s.ratios or any(not (isinstance(x, (int, float)) and x > 0) for x in s.ratios):
        raise ValueError(f"ratios must be positive numbers, got {s.ratios!r}")
    return _grid(s, _device.get(device), progress=progress)


METRICS = {"weight_angle": "alignment", "delta_angle": "gradient",
           "local_delta_angle": "gradient_local", "norm_ratio": "norm_ratio"}


@cached(maxsize=4)
def _grid(s, dev, *, progress=True) -> dict:
    out = {key: {r: {a: [] for a in s.architectures} for r in s.rules}
           for key in ("test_acc", *METRICS)}
    points = [(r, a, x) for r in s.rules for a in s.architectures for x in s.ratios]
    for rule, arch, ratio in tqdm(points, desc="β/α grid", disable=not progress, leave=False):
        model, kwargs = s.architectures[arch]
        point = learning_rules.Settings(
            s.name, model=model, model_kwargs=dict(kwargs), data=s.data,
            image_size=s.image_size, train=dict(s.train), log_every=None, angle_batch=128,
            eval_samples=None, preset=s.preset, coefficients=coefficients_at(rule, ratio),
            seed=s.seed, threads=s.threads)
        run = learning_rules.train_rule(rule, point, device=dev)
        ok = run["finite"]
        out["test_acc"][rule][arch].append(run["test_acc"][-1] if ok else math.nan)
        for key, logged in METRICS.items():
            value = learning_rules.mean_over_layers(run[logged]) if ok else math.nan
            out[key][rule][arch].append(value)
    t = s.train
    length = f"{t['steps']} steps" if t.get("steps") else f"{t['epochs']} epochs"
    size = f" at {s.image_size}×{s.image_size} px" if s.image_size else ""
    note = (f"{', '.join(s.architectures)} on {s.data}{size}; {length} of batch "
            f"{t['batch_size']}, lr {t['lr']:g}; [TR]'s coefficients but β, B trained by "
            "its own Adam; one seed")
    return {"rules": list(s.rules), "ratios": list(s.ratios),
            "architectures": list(s.architectures), **out, "note": note,
            "settings": s.as_dict()}
