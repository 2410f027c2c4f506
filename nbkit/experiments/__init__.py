"""Resumable experiment sweeps: the paper-scale runs behind the notebooks' full-mode views.

>>> from nbkit import experiments
>>> experiments.names()
['accuracy_vs_compression', 'layer_collapse', 'learning_rules']
>>> report = experiments.sweep("layer_collapse", "quick", out="runs/lc")  # resumable
>>> merged = experiments.collect("runs/lc", "layer_collapse")

From a shell: ``python -m nbkit.experiments layer_collapse --quick`` (see ``--help``).
Each run writes one JSON file atomically, with its configuration and provenance; a
rerun skips finished runs and redoes corrupt ones.
"""

from __future__ import annotations

from . import kinds  # noqa: F401  (registers the run kinds)
from .grids import EXPERIMENTS, RECIPES, names
from .runner import (
    DEFAULT_OUT,
    RUN_KINDS,
    Experiment,
    SweepReport,
    collect,
    expand,
    plan,
    register_kind,
    sweep,
)
from .store import read_record, scan, write_record

__all__ = ["EXPERIMENTS", "RECIPES", "RUN_KINDS", "DEFAULT_OUT", "Experiment", "SweepReport",
           "names", "get", "sweep", "collect", "expand", "plan", "register_kind",
           "read_record", "write_record", "scan", "default_out", "default_collect_path",
           "results"]


def get(name: str) -> Experiment:
    """The declared experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {names()}")
    return EXPERIMENTS[name]


def default_out(name: str, variant: str):
    """Where a sweep writes its per-run files unless told: data/results/raw/<name>/<variant>."""
    return DEFAULT_OUT / "raw" / name / variant


def default_collect_path(name: str, variant: str):
    """Where ``collect`` writes the merged JSON unless told: data/results/<name>.json for
    the full variant, data/results/<name>.<variant>.json for the others."""
    suffix = "" if variant == "full" else f".{variant}"
    return DEFAULT_OUT / f"{name}{suffix}.json"


def results(name: str, variant: str | None = None) -> dict | None:
    """The collected results of experiment ``name`` shipped in data/results/, or None
    when they have not been made yet. Without ``variant`` the full variant's file is
    preferred, then the short one's."""
    import json

    get(name)
    for v in [variant] if variant else ["full", "short"]:
        path = default_collect_path(name, v)
        if path.is_file():
            return json.loads(path.read_text())
    return None
