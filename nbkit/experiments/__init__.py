"""Resumable experiment sweeps: the paper-scale runs behind the notebooks' full-mode views.

>>> from nbkit import experiments
>>> experiments.names()
['accuracy_vs_compression', 'layer_collapse', 'learning_rules']
>>> report = experiments.sweep("layer_collapse", "quick", out="runs/lc")  # resumable
>>> merged = experiments.collect("runs/lc", "layer_collapse")

From a shell: ``python -m nbkit.experiments layer_collapse --quick`` (see ``--help``).
Each run writes one JSON file atomically, with its configuration and provenance; a
rerun skips finished runs and redoes corrupt ones. The runs themselves are computed by
:mod:`nbkit.studies` (see :mod:`.kinds`); the collected files are read back by
:mod:`nbkit.studies.results`.
"""

from __future__ import annotations

from ..studies.results import path_for
from . import grids, kinds, two_routes  # noqa: F401  (declare experiments, register kinds)
from .grids import RECIPES
from .runner import DEFAULT_OUT, SweepReport, collect, expand, plan, sweep
from .spec import EXPERIMENTS, RUN_KINDS, Experiment, get, names, register_experiment, register_kind
from .store import read_record, scan, write_record

__all__ = ["EXPERIMENTS", "RECIPES", "RUN_KINDS", "DEFAULT_OUT", "Experiment", "SweepReport",
           "names", "get", "sweep", "collect", "expand", "plan", "register_kind",
           "register_experiment", "read_record", "write_record", "scan", "default_out",
           "default_collect_path"]


def default_out(name: str, variant: str):
    """Where a sweep writes its per-run files unless told: data/results/raw/<name>/<variant>."""
    return DEFAULT_OUT / "raw" / name / variant


def default_collect_path(name: str, variant: str):
    """Where ``collect`` writes the merged JSON unless told: data/results/<name>.json for
    the full variant, data/results/<name>.<variant>.json for the others."""
    return path_for(name, variant, DEFAULT_OUT)
