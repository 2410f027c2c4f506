"""What an experiment is, and the registries the runner looks things up in: run kinds
(``config -> result dict``) and declared experiments. The grids (:mod:`.grids`) and the
kinds (:mod:`.kinds`) register themselves here, and the runner (:mod:`.runner`) reads
from here, so none of them imports another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Experiment", "EXPERIMENTS", "RUN_KINDS", "PREPARE", "register_kind",
           "register_experiment", "get", "names"]

RUN_KINDS: dict[str, Callable[..., dict]] = {}
PREPARE: dict[str, Callable[..., None]] = {}


def register_kind(name: str, prepare: Callable[..., None] | None = None):
    """Register a run kind: ``fn(config: dict, *, device) -> JSON-able dict``. The runner
    seeds everything with ``config["seed"]`` (when present) before calling it. A kind
    that trains may also take ``compile: bool`` (see :func:`sweep`).

    ``prepare(config, *, device)``, when given, is called once before a sweep's first
    run (to load a dataset, say), so that one-off setup is not counted as the time of
    the first run."""
    def deco(fn):
        RUN_KINDS[name] = fn
        if prepare is not None:
            PREPARE[name] = prepare
        else:
            PREPARE.pop(name, None)
        return fn
    return deco


@dataclass(frozen=True)
class Experiment:
    """A named family of runs: the run kind, one grid per variant, the config keys that
    name a run's file, a function that summarises the finished records, and one that
    trims a run's result for the collected file."""

    name: str
    kind: str
    variants: dict
    label: tuple = ("seed",)
    description: str = ""
    notes: str = ""
    summarize: Callable[[list], dict] | None = None
    compact: Callable[[dict], dict] | None = None

    def grid(self, variant: str) -> dict:
        if variant not in self.variants:
            raise ValueError(f"experiment {self.name!r} has no variant {variant!r}; "
                             f"choose one of {sorted(self.variants)}")
        return self.variants[variant]


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    """Declare ``experiment`` under its name (a later declaration replaces it)."""
    if not isinstance(experiment, Experiment):
        raise ValueError(f"register_experiment takes an Experiment, got "
                         f"{type(experiment).__name__}")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def get(name: str) -> Experiment:
    """The declared experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {names()}")
    return EXPERIMENTS[name]


def names() -> list[str]:
    """The declared experiments."""
    return sorted(EXPERIMENTS)
